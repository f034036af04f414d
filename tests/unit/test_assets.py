"""The rules' assets as WeCom media ids (kefu.assets): uploaded once, reused by every instance
through the table, renewed before WeCom's three days end, checked before upload."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kefu.assets import MEDIA_LIFETIME, RENEW_BEFORE, Assets
from kefu.routing.outbound import Asset, AssetError
from tests.unit.fakes import Clock

ROOT = Path(__file__).resolve().parents[2]
CARD = ROOT / "config" / "assets" / "card.png"


class Table:
    """The StateTable's get_item / put_item, in memory (shared by the 'instances' of a test)."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], dict[str, Any]] = {}

    def get_item(self, Key: dict[str, str], **_: Any) -> dict[str, Any]:  # noqa: N803 - boto3's names
        item = self.items.get((Key["pk"], Key["sk"]))
        return {"Item": dict(item)} if item else {}

    def put_item(self, Item: dict[str, Any]) -> None:  # noqa: N803
        self.items[(Item["pk"], Item["sk"])] = dict(Item)


class Uploads:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, int]] = []

    def upload(self, path: str, params: dict[str, str], filename: str, data: bytes, content_type: str) -> dict[str, Any]:
        self.calls.append((params["type"], filename, len(data)))
        return {"errcode": 0, "type": params["type"], "media_id": f"media{len(self.calls)}", "created_at": "1"}


def instance(table: Table, uploads: Uploads, clock: Clock, base: Path = CARD.parent) -> Assets:
    return Assets("state", uploads, base, "", clock, table)


def test_an_asset_is_uploaded_once_and_reused_by_another_instance_until_shortly_before_it_dies() -> None:
    table, uploads, clock = Table(), Uploads(), Clock()
    first = instance(table, uploads, clock)
    assert first.media_id("image", Asset(path="card.png")) == "media1"
    assert first.media_id("image", Asset(path="card.png")) == "media1"
    assert instance(table, uploads, clock).media_id("image", Asset(path="card.png")) == "media1"  # a cold start
    assert uploads.calls == [("image", "card.png", CARD.stat().st_size)]
    clock.now += MEDIA_LIFETIME - RENEW_BEFORE  # six hours before WeCom's three days end: renewed
    assert first.media_id("image", Asset(path="card.png")) == "media2"
    assert instance(table, uploads, clock).media_id("image", Asset(path="card.png")) == "media2"
    assert len(uploads.calls) == 2


def test_the_same_file_as_another_kind_is_its_own_media() -> None:
    table, uploads, clock = Table(), Uploads(), Clock()
    assets = instance(table, uploads, clock)
    assert assets.media_id("image", Asset(path="card.png")) != assets.media_id("file", Asset(path="card.png"))


def test_an_unreadable_or_unsuitable_asset_is_an_asset_error_and_nothing_is_uploaded(tmp_path: Path) -> None:
    (tmp_path / "clip.mp4").write_bytes(b"not really a video")
    table, uploads, clock = Table(), Uploads(), Clock()
    assets = instance(table, uploads, clock, tmp_path)
    with pytest.raises(AssetError, match="cannot read it"):
        assets.media_id("image", Asset(path="gone.png"))
    with pytest.raises(AssetError, match="a video must be an MP4 file"):
        assets.media_id("video", Asset(path="clip.mp4"))
    with pytest.raises(AssetError, match="no media bucket"):
        assets.media_id("image", Asset(s3="assets/x.png"))
    assert not uploads.calls
