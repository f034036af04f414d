"""Where the answerer's knowledge files are read: beside the routing rules (read once per
container, as the rules are) or in the stack's media bucket under knowledge/ (looked at again at
most once a minute, and read again only when it changed: one conditional GET)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kefu import aws, tenancy
from kefu.knowledge import Knowledge, parse_knowledge, read_file
from kefu.routing.rules import KnowledgeFile

S3_CHECK_SECONDS = 60


@dataclass
class _Held:
    knowledge: Knowledge
    etag: str
    checked: float


class KnowledgeFiles:
    def __init__(self, base_dir: Callable[[], Path | None], bucket: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._base_dir = base_dir
        self._bucket = bucket
        self._clock = clock
        self._held: dict[str, _Held] = {}

    def __call__(self, ref: KnowledgeFile) -> Knowledge:
        if ref.s3 is not None:
            return self._from_s3(ref.s3)
        held = self._held.get(ref.key())
        if held is None:
            base = self._base_dir()
            if base is None:
                raise ValueError("rules from an SSM parameter name knowledge in S3 only")
            held = _Held(read_file(str(base / str(ref.path))), "", 0.0)
            self._held[ref.key()] = held
        return held.knowledge

    def _from_s3(self, key: str) -> Knowledge:
        key = tenancy.qualify(key)  # a corp's knowledge is under its own prefix (provider mode)
        held = self._held.get(f"s3:{key}")
        now = self._clock()
        if held is not None and now - held.checked < S3_CHECK_SECONDS:
            return held.knowledge
        if not self._bucket:
            raise ValueError("no media bucket (KEFU_MEDIA_BUCKET) to read it from")
        args = {"Bucket": self._bucket, "Key": key, **({"IfNoneMatch": held.etag} if held else {})}
        from botocore.exceptions import ClientError

        try:
            response = aws.client("s3").get_object(**args)
        except ClientError as exc:
            if held is not None and exc.response.get("Error", {}).get("Code") in ("304", "NotModified"):
                held.checked = now
                return held.knowledge
            raise
        text = response["Body"].read().decode("utf-8")
        knowledge = parse_knowledge(text, f"s3://{self._bucket}/{key}")
        self._held[f"s3:{key}"] = _Held(knowledge, str(response.get("ETag") or ""), now)
        return knowledge
