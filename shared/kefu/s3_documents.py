"""Documents a warm container keeps parsed from the media bucket: each is looked at again at most
once a minute, with one conditional GET (If-None-Match), and parsed again only when it changed.
The knowledge files (kefu.knowledge_files) and, in provider mode, each corp's routing rules and
link settings (kefu.routing.corp_rules, kefu.corp_links) are read this way."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from kefu import aws

T = TypeVar("T")
CHECK_SECONDS = 60
_NOT_MODIFIED = ("304", "NotModified")
_MISSING = ("NoSuchKey", "404")


@dataclass
class _Held(Generic[T]):
    value: T | None  # None: the object did not exist
    etag: str
    checked: float


class S3Documents(Generic[T]):
    def __init__(self, bucket: str, parse: Callable[[str, str], T], *, missing_ok: bool = False,
                 clock: Callable[[], float] = time.monotonic, check_seconds: float = CHECK_SECONDS) -> None:
        """``parse(text, source)`` makes the document's value (and raises on a bad one: nothing is
        kept, so the next call reads it again). ``missing_ok``: a key with no object gives None
        (looked at again like any other) instead of raising."""
        self._bucket, self._parse, self._missing_ok = bucket, parse, missing_ok
        self._clock, self._check = clock, check_seconds
        self._held: dict[str, _Held[T]] = {}

    def get(self, key: str) -> T | None:
        from botocore.exceptions import ClientError

        held = self._held.get(key)
        now = self._clock()
        if held is not None and now - held.checked < self._check:
            return held.value
        if not self._bucket:
            raise ValueError("no media bucket (KEFU_MEDIA_BUCKET) to read it from")
        args = {"Bucket": self._bucket, "Key": key, **({"IfNoneMatch": held.etag} if held and held.etag else {})}
        try:
            response = aws.client("s3").get_object(**args)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if held is not None and code in _NOT_MODIFIED:
                held.checked = now
                return held.value
            if self._missing_ok and code in _MISSING:
                self._held[key] = _Held(None, "", now)
                return None
            raise
        value = self._parse(response["Body"].read().decode("utf-8"), f"s3://{self._bucket}/{key}")
        self._held[key] = _Held(value, str(response.get("ETag") or ""), now)
        return value
