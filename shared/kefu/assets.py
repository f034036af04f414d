"""The routing rules' assets (images, videos, files, thumbnails) as WeCom media ids.

WeCom takes media in a message only as a media_id from media/upload, which lives three days. An
asset is uploaded once, its media_id kept in the StateTable under the digest of its content and
reused by every function instance until six hours before it dies; then the next send uploads it
again. A file asset ships beside the rules file; an S3 asset lives under ``assets/`` in the
stack's media bucket and is re-read when its ETag changes (checked at most every five minutes).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kefu import aws, tenancy
from kefu.routing.outbound import Asset, AssetError, check_asset, content_type
from kefu.store import keys
from kefu.store.dynamo import TableStore
from kefu.wecom import kf

MEDIA_LIFETIME = 3 * 86400
RENEW_BEFORE = 6 * 3600  # an id this close to its end is not sent any more: a fresh upload replaces it
S3_RECHECK = 300.0


class Assets(TableStore):
    def __init__(self, table_name: str, wecom: kf.Uploader, base_dir: Path | None, bucket: str = "",
                 clock: Callable[[], float] = time.time, table: Any = None) -> None:
        super().__init__(table_name, table)
        self._wecom, self._base_dir, self._bucket, self._clock = wecom, base_dir, bucket, clock
        self._known: dict[str, tuple[str, float]] = {}  # digest -> (media_id, uploaded_at)
        self._files: dict[str, tuple[str, bytes]] = {}  # path -> (digest, bytes)
        self._etags: dict[str, tuple[str, float]] = {}  # s3 key -> (etag, checked at)

    def __call__(self, kind: str, asset: Asset) -> str:
        return self.media_id(kind, asset)

    def media_id(self, kind: str, asset: Asset) -> str:
        """A live media_id for ``asset`` sent as ``kind``, uploading it when none is."""
        now = self._clock()
        digest = self._digest(kind, asset, now)
        known = self._known.get(digest)
        if known and now - known[1] < MEDIA_LIFETIME - RENEW_BEFORE:
            return known[0]
        item = self._table.get_item(Key=keys.upload(digest), ConsistentRead=True).get("Item") or {}
        if item.get("media_id") and now - float(item.get("uploaded_at", 0)) < MEDIA_LIFETIME - RENEW_BEFORE:
            self._known[digest] = (str(item["media_id"]), float(item["uploaded_at"]))
            return str(item["media_id"])
        data = self._read(asset)
        problem = check_asset(kind, data, asset.name)
        if problem:
            raise AssetError(problem)
        media_id, _created = kf.media_upload(self._wecom, kind, asset.name, data, content_type(kind, asset.name))
        self._table.put_item(Item={**keys.upload(digest), "media_id": media_id, "uploaded_at": int(now),
                                   "asset": asset.key(), "expires_at": int(now) + MEDIA_LIFETIME})
        self._known[digest] = (media_id, now)
        return media_id

    def _digest(self, kind: str, asset: Asset, now: float) -> str:
        if asset.path is not None:
            digest, _ = self._file(asset.path)
            version = digest
        else:
            version = self._etag(str(asset.s3), now)
        return hashlib.sha256(f"{kind}\n{asset.key()}\n{version}".encode()).hexdigest()[:40]

    def _file(self, path: str) -> tuple[str, bytes]:
        if path not in self._files:
            if self._base_dir is None:
                raise AssetError(f"{path}: file assets need a rules file to be relative to")
            file = self._base_dir / path
            try:
                data = file.read_bytes()
            except OSError as exc:
                raise AssetError(f"{path}: cannot read it ({exc.strerror})") from None
            self._files[path] = (hashlib.sha256(data).hexdigest(), data)
        return self._files[path]

    def _etag(self, key: str, now: float) -> str:
        key = tenancy.qualify(key)  # a corp's assets are under its own prefix (provider mode)
        held = self._etags.get(key)
        if held and now - held[1] < S3_RECHECK:
            return held[0]
        if not self._bucket:
            raise AssetError(f"s3 {key}: no media bucket is configured (KEFU_MEDIA_BUCKET)")
        try:
            etag = str(aws.client("s3").head_object(Bucket=self._bucket, Key=key)["ETag"])
        except Exception as exc:  # NoSuchKey, AccessDenied: the send fails and its decision says why
            raise AssetError(f"s3 {key}: {type(exc).__name__}") from None
        self._etags[key] = (etag, now)
        return etag

    def _read(self, asset: Asset) -> bytes:
        if asset.path is not None:
            return self._file(asset.path)[1]
        try:
            body = aws.client("s3").get_object(Bucket=self._bucket, Key=tenancy.qualify(str(asset.s3)))["Body"]
            return bytes(body.read())
        except Exception as exc:
            raise AssetError(f"s3 {asset.s3}: {type(exc).__name__}") from None
