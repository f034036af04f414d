"""Provider mode: each corp's own routing rules, one document per corp in the media bucket at
``<corp_id>/routing.yaml``. A corp without one is routed by the deployment's rules (the shipped
file or its SSM parameter). The document is looked at again at most once a minute, with a
conditional GET, and parsed again only when it changed (kefu.s3_documents); a document that does
not parse fails that corp's work (retried, then the dead-letter queue) and no other corp's."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from kefu import tenancy
from kefu.routing.rules import Rules, parse_rules
from kefu.routing.source import RulesSource
from kefu.s3_documents import S3Documents

DOCUMENT = "routing.yaml"


def document_key(corp_id: str) -> str:
    return f"{corp_id}{tenancy.SEPARATOR}{DOCUMENT}"


class CorpRulesSource:
    def __init__(self, default: RulesSource, bucket: str, corp_id: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._default, self._corp = default, corp_id
        self._documents: S3Documents[Rules] | None = (
            S3Documents(bucket, lambda text, source: parse_rules(text, source=source), missing_ok=True, clock=clock)
            if bucket else None)

    @property
    def base_dir(self) -> Path | None:
        return self._default.base_dir

    def __call__(self) -> Rules:
        own = self._documents.get(document_key(self._corp)) if self._documents is not None else None
        return own if own is not None else self._default()
