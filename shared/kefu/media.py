"""Media downloads, off the sync's path: the media worker (functions/media) saves to S3 what
customers sent as images, voice, video and files, per account.

The sync stores a message and its pending download in the same page write, then queues a media
job for the account; the pull itself never waits for a download, so an account syncs in well
under a second whatever its media. The worker:

- downloads newest first (what a servicer is looking at now), within a time budget: what is left
  when the invocation's time runs short goes on in a new job;
- gives up on an item for good, marking the message ``media_state`` = ``expired``, once WeCom's
  media_id is about to die (three days after the message) or after ``max_attempts`` failures, so
  nothing is retried forever;
- leaves a failed download pending and fails the job (the queue retries it later); the sweep also
  queues a job for any account with pending media, so a dead-lettered job loses nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from kefu.store.media import MEDIA_LIFETIME, PendingMedia
from kefu.wecom.errors import WeComError

PENDING_PER_RUN = 100  # pending items read per job; more are taken by the next job


@dataclass(frozen=True)
class MediaPolicy:
    max_attempts: int = 5
    # Give up this long before WeCom forgets the media_id: more than the sweep's period, so a job
    # marks the message before the pending item's TTL deletes it unmarked.
    expiry_margin: int = 3600
    reserve_ms: int = 5000  # time kept back from the invocation's budget for one more download


class MediaPorts(Protocol):
    def pending(self, open_kfid: str, limit: int) -> list[PendingMedia]: ...
    def download(self, media_id: str) -> tuple[bytes, str]: ...
    def upload(self, key: str, data: bytes, content_type: str) -> None: ...
    def attach(self, msgid: str, key: str) -> bool: ...  # False: the message is not stored yet
    def give_up(self, msgid: str, reason: str) -> None: ...
    def done(self, open_kfid: str, msgid: str) -> None: ...
    def failed(self, open_kfid: str, msgid: str) -> int: ...  # the attempts so far


@dataclass
class MediaRun:
    open_kfid: str
    saved: int = 0
    expired: int = 0
    failed: int = 0  # left pending for a later job
    left: int = 0  # not tried: the time budget ran out
    errors: list[str] = field(default_factory=list)

    def fields(self) -> dict[str, Any]:
        return {"open_kfid": self.open_kfid, "media_saved": self.saved, "media_expired": self.expired,
                "media_failed": self.failed, "media_left": self.left, "errors": self.errors}


def download_account(ports: MediaPorts, open_kfid: str, now: float, remaining_ms: Callable[[], int],
                     policy: MediaPolicy = MediaPolicy()) -> MediaRun:
    run = MediaRun(open_kfid)
    pending = sorted(ports.pending(open_kfid, PENDING_PER_RUN), key=lambda p: p.send_time, reverse=True)
    for index, item in enumerate(pending):
        if remaining_ms() < policy.reserve_ms:
            run.left = len(pending) - index
            break
        if now >= item.send_time + MEDIA_LIFETIME - policy.expiry_margin:
            _give_up(ports, run, item, "WeCom keeps media three days; this media_id has expired")
            continue
        try:
            data, content_type = ports.download(item.media_id)
        except WeComError as exc:
            run.errors.append(f"media/get: {exc.metric_code}")
            if ports.failed(open_kfid, item.msgid) >= policy.max_attempts:
                _give_up(ports, run, item, f"media/get failed {policy.max_attempts} times (last errcode {exc.metric_code})")
            else:
                run.failed += 1
            continue
        ports.upload(item.object_key, data, content_type)
        if ports.attach(item.msgid, item.object_key):
            ports.done(open_kfid, item.msgid)
            run.saved += 1
        # else: the message is not stored yet (a crash between the sync's two writes); the retried
        # page stores it, and a later job attaches the object uploaded again.
    return run


def _give_up(ports: MediaPorts, run: MediaRun, item: PendingMedia, reason: str) -> None:
    ports.give_up(item.msgid, reason)
    ports.done(item.open_kfid, item.msgid)
    run.expired += 1
