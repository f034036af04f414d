"""The sweep's plan per account (kefu.sweep), on in-memory ports: what it queues, and when."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from kefu.callback import SyncJob
from kefu.queues import QueueMessage
from kefu.store.active_sessions import QuietSession
from kefu.store.cursors import CursorState
from kefu.sweep import SweepPolicy, run

NOW = 1_800_000_000
POLICY = SweepPolicy(resync_after=600, reconcile_after=3600)


@dataclass
class Ports:
    cursors: dict[str, CursorState] = field(default_factory=dict)
    pools: set[str] = field(default_factory=set)
    sessions: dict[str, list[QuietSession]] = field(default_factory=dict)
    idle: dict[str, int] = field(default_factory=dict)  # scene -> seconds
    broken: set[str] = field(default_factory=set)
    synced: list[SyncJob] = field(default_factory=list)
    routed: list[QueueMessage] = field(default_factory=list)
    media: set[str] = field(default_factory=set)
    media_jobs: list[str] = field(default_factory=list)

    def accounts(self) -> list[str]:
        return sorted({*self.cursors, *self.pools, *self.sessions, *self.broken})

    def cursor(self, open_kfid: str) -> CursorState:
        if open_kfid in self.broken:
            raise RuntimeError("throttled")
        return self.cursors.get(open_kfid, CursorState())

    def pool_waiting(self, open_kfid: str) -> bool:
        return open_kfid in self.pools

    def quiet_sessions(self, open_kfid: str, since: int) -> list[QuietSession]:
        return [s for s in self.sessions.get(open_kfid, []) if s.active_at <= since]

    def idle_end_seconds(self, open_kfid: str, scene: str | None) -> int | None:
        return self.idle.get(scene or "")

    def shortest_idle_end_seconds(self, open_kfid: str) -> int | None:
        return min(self.idle.values()) if self.idle else None

    def queue_sync(self, jobs: Sequence[SyncJob]) -> None:
        self.synced += jobs

    def queue_route(self, messages: Sequence[QueueMessage]) -> None:
        self.routed += messages

    def media_waiting(self, open_kfid: str) -> bool:
        return open_kfid in self.media

    def queue_media(self, open_kfid: str) -> None:
        self.media_jobs.append(open_kfid)


def test_an_account_whose_cursor_has_not_moved_is_pulled_without_a_token() -> None:
    ports = Ports(cursors={"a": CursorState("c1", None, NOW - 601), "b": CursorState("c2", None, NOW - 30),
                           "new": CursorState()})
    report = run(ports, NOW, POLICY)
    assert sorted(j.open_kfid for j in ports.synced) == ["a", "new"]
    assert all(j.token is None and j.create_time == NOW for j in ports.synced)
    assert report.pulled == ["a", "new"]


def test_a_waiting_pool_gets_a_drain_in_the_accounts_group() -> None:
    ports = Ports(cursors={"a": CursorState("c", None, NOW)}, pools={"a"})
    run(ports, NOW, POLICY)
    (drain,) = ports.routed
    assert json.loads(drain.body) == {"task": "drain", "open_kfid": "a"} and drain.group_id == "a#_account"


def test_sessions_are_checked_when_idle_past_their_rules_or_unchecked_for_long() -> None:
    quiet = [
        QuietSession("idle", "shop", NOW - 1900, None),  # idle end after 30 min in scene "shop"
        QuietSession("fresh", "shop", NOW - 600, None),  # quiet, but neither idle nor unchecked long
        QuietSession("stale", None, NOW - 4000, None),  # nobody asked WeCom for over an hour
        QuietSession("checked", None, NOW - 4000, NOW - 100),  # asked recently
    ]
    ports = Ports(cursors={"a": CursorState("c", None, NOW)}, sessions={"a": quiet}, idle={"shop": 1800})
    report = run(ports, NOW, POLICY)
    tasks = [json.loads(m.body) for m in ports.routed]
    assert [t["external_userid"] for t in tasks] == ["idle", "stale"]
    assert all(t == {"task": "session", "open_kfid": "a", "external_userid": t["external_userid"],
                     "reconcile_after": 3600} for t in tasks)
    assert [m.group_id for m in ports.routed] == ["a#idle", "a#stale"]  # behind each customer's own items
    assert report.sessions == 2


def test_a_retried_run_queues_the_same_deduplication_ids_and_a_later_run_new_ones() -> None:
    def ids(run_at: int) -> list[str]:
        ports = Ports(cursors={"a": CursorState("c", None, 0)}, pools={"a"},
                      sessions={"a": [QuietSession("x", None, 0, None)]})
        run(ports, run_at, POLICY)
        return [m.deduplication_id for m in ports.routed] + [j.deduplication_id for j in ports.synced]

    assert ids(NOW) == ids(NOW)
    assert not set(ids(NOW)) & set(ids(NOW + 600))


def test_one_failing_account_does_not_stop_the_others() -> None:
    ports = Ports(cursors={"a": CursorState("c", None, 0), "c": CursorState("c", None, 0)}, broken={"b"})
    logged: list[str] = []
    report = run(ports, NOW, POLICY, log=lambda msg, **f: logged.append(f["open_kfid"]))
    assert sorted(j.open_kfid for j in ports.synced) == ["a", "c"]
    assert list(report.failed) == ["b"] and logged == ["b"]


def test_an_account_with_downloads_pending_gets_a_media_job() -> None:
    ports = Ports(cursors={"a": CursorState("c", None, NOW), "b": CursorState("c", None, NOW)}, media={"b"})
    report = run(ports, NOW, POLICY)
    assert ports.media_jobs == ["b"] and report.media == ["b"]
