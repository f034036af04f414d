"""The media worker's decisions (kefu.media) on in-memory ports: newest first, within the time
budget, a final "expired" mark instead of retrying forever."""

from __future__ import annotations

from dataclasses import dataclass, field

from kefu.media import MediaPolicy, download_account
from kefu.store.media import MEDIA_LIFETIME, PendingMedia
from kefu.wecom.errors import WeComError

NOW = 1_800_000_000
K = "wkMEDIA"


@dataclass
class Ports:
    items: dict[str, PendingMedia] = field(default_factory=dict)
    broken: set[str] = field(default_factory=set)  # media_ids WeCom refuses
    stored: set[str] = field(default_factory=set)  # msgids of stored messages
    downloads: list[str] = field(default_factory=list)
    uploads: dict[str, bytes] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    expired: dict[str, str] = field(default_factory=dict)

    def add(self, msgid: str, age: int, attempts: int = 0) -> None:
        self.items[msgid] = PendingMedia(K, msgid, f"media-{msgid}", f"media/{K}/c/{msgid}", attempts, NOW - age)
        self.stored.add(msgid)

    def pending(self, open_kfid: str, limit: int) -> list[PendingMedia]:
        return list(self.items.values())[:limit]

    def download(self, media_id: str) -> tuple[bytes, str]:
        self.downloads.append(media_id)
        if media_id in self.broken:
            raise WeComError("media/get", -1, "system busy")
        return media_id.encode(), "image/jpeg"

    def upload(self, key: str, data: bytes, content_type: str) -> None:
        self.uploads[key] = data

    def attach(self, msgid: str, key: str) -> bool:
        if msgid not in self.stored:
            return False
        self.keys[msgid] = key
        return True

    def give_up(self, msgid: str, reason: str) -> None:
        self.expired[msgid] = reason

    def done(self, open_kfid: str, msgid: str) -> None:
        self.items.pop(msgid, None)

    def failed(self, open_kfid: str, msgid: str) -> int:
        item = self.items[msgid]
        self.items[msgid] = PendingMedia(item.open_kfid, msgid, item.media_id, item.object_key, item.attempts + 1,
                                         item.send_time)
        return item.attempts + 1


def test_downloads_go_newest_first_and_attach_their_object() -> None:
    ports = Ports()
    for msgid, age in (("old", 7200), ("new", 10), ("mid", 600)):
        ports.add(msgid, age)
    run = download_account(ports, K, NOW, lambda: 60_000)
    assert ports.downloads == ["media-new", "media-mid", "media-old"]
    assert run.saved == 3 and ports.items == {} and ports.keys["new"] == f"media/{K}/c/new"


def test_the_time_budget_stops_the_run_and_leaves_the_rest_pending() -> None:
    ports = Ports()
    for n in range(5):
        ports.add(f"m{n}", age=n)
    budget = iter([60_000, 60_000, 1_000, 1_000, 1_000])
    run = download_account(ports, K, NOW, lambda: next(budget), MediaPolicy(reserve_ms=5_000))
    assert run.saved == 2 and run.left == 3 and len(ports.items) == 3


def test_media_past_wecoms_three_days_is_marked_expired_not_asked_for() -> None:
    ports = Ports()
    ports.add("ancient", age=MEDIA_LIFETIME - 60)
    run = download_account(ports, K, NOW, lambda: 60_000)
    assert run.expired == 1 and ports.downloads == [] and "three days" in ports.expired["ancient"]
    assert ports.items == {}


def test_a_failing_download_stays_pending_then_gives_up_after_the_last_attempt() -> None:
    ports = Ports(broken={"media-bad"})
    ports.add("bad", age=60)
    first = download_account(ports, K, NOW, lambda: 60_000, MediaPolicy(max_attempts=2))
    assert first.failed == 1 and "bad" in ports.items and not ports.expired
    second = download_account(ports, K, NOW, lambda: 60_000, MediaPolicy(max_attempts=2))
    assert second.expired == 1 and second.failed == 0 and "2 times" in ports.expired["bad"] and ports.items == {}


def test_media_of_a_message_not_stored_yet_stays_pending() -> None:
    ports = Ports()
    ports.add("early", age=5)
    ports.stored.discard("early")  # the sync crashed between its two writes
    run = download_account(ports, K, NOW, lambda: 60_000)
    assert run.saved == 0 and "early" in ports.items
