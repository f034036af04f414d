"""Provider mode: each corp's own routing rules, one document per corp in the media bucket at
``<corp_id>/routing.yaml``. A corp without one is routed by the deployment's rules (the shipped
file or its SSM parameter). The document is looked at again at most once a minute, with a
conditional GET, and parsed again only when it changed; a document that does not parse fails that
corp's work (retried, then the dead-letter queue) and no other corp's."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from kefu import aws, tenancy
from kefu.routing.rules import Rules, parse_rules
from kefu.routing.source import RulesSource

DOCUMENT = "routing.yaml"
CHECK_SECONDS = 60


def document_key(corp_id: str) -> str:
    return f"{corp_id}{tenancy.SEPARATOR}{DOCUMENT}"


class CorpRulesSource:
    def __init__(self, default: RulesSource, bucket: str, corp_id: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._default, self._bucket, self._corp = default, bucket, corp_id
        self._clock = clock
        self._rules: Rules | None = None  # the corp's own, while it has a document
        self._etag: str | None = None
        self._checked = float("-inf")

    @property
    def base_dir(self) -> Path | None:
        return self._default.base_dir

    def __call__(self) -> Rules:
        now = self._clock()
        if now - self._checked >= CHECK_SECONDS:
            self._refresh()
            self._checked = now
        return self._rules if self._rules is not None else self._default()

    def _refresh(self) -> None:
        from botocore.exceptions import ClientError

        if not self._bucket:
            return
        args = {"Bucket": self._bucket, "Key": document_key(self._corp)}
        if self._etag:
            args["IfNoneMatch"] = self._etag
        try:
            response = aws.client("s3").get_object(**args)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in ("304", "NotModified"):
                return
            if code in ("NoSuchKey", "404"):
                self._rules, self._etag = None, None
                return
            raise
        text = response["Body"].read().decode("utf-8")
        self._rules = parse_rules(text, source=f"s3://{self._bucket}/{document_key(self._corp)}")
        self._etag = str(response.get("ETag") or "") or None
