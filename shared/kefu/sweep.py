"""The sweep: a scheduled run that keeps Kefu true to WeCom when nothing tells it otherwise.

WeCom does not tell Kefu everything: a callback can be lost for good, a session can end or move
with no event, a pool can wait for working hours to open, a customer can leave a session open for
days. Per kf account, each run:

- pulls the account (a sync job with no callback token) when its cursor has not moved for
  ``resync_after`` seconds, so a lost callback costs minutes, not messages (WeCom keeps them 3 days);
- asks the route function to drain the account's pool when it is not empty (the drain itself
  respects working hours and capacity);
- queues a media job for an account with downloads still pending (kefu.media), so a media job
  that failed for good loses nothing;
- asks the route function to look at each open session quiet for a while: it ends sessions idle
  past the rules' ``idle_end_minutes`` with the closing message, and makes sessions nobody has
  checked for ``reconcile_after`` seconds say what WeCom says (design rule 13).

The sweep decides nothing about a session itself: its tasks travel the route queue in the
customer's FIFO group, behind that customer's items, so the route function acts on each customer
in order as always. Every message of a run carries the run's time in its deduplication id, so a
retried run queues nothing twice.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from kefu.callback import SyncJob
from kefu.queues import ACCOUNT_GROUP, QueueMessage
from kefu.routing.engine import DRAIN_TASK, SESSION_TASK
from kefu.store.active_sessions import QuietSession
from kefu.store.cursors import CursorState


@dataclass(frozen=True)
class SweepPolicy:
    resync_after: int  # seconds without a cursor move before the account is pulled anyway
    reconcile_after: int  # seconds a quiet open session goes unchecked before WeCom is asked


class SweepPorts(Protocol):
    def accounts(self) -> list[str]: ...
    def cursor(self, open_kfid: str) -> CursorState: ...
    def pool_waiting(self, open_kfid: str) -> bool: ...
    def quiet_sessions(self, open_kfid: str, since: int) -> list[QuietSession]: ...
    def idle_end_seconds(self, open_kfid: str, scene: str | None) -> int | None: ...
    def shortest_idle_end_seconds(self, open_kfid: str) -> int | None: ...
    def queue_sync(self, jobs: Sequence[SyncJob]) -> None: ...
    def queue_route(self, messages: Sequence[QueueMessage]) -> None: ...
    def media_waiting(self, open_kfid: str) -> bool: ...
    def queue_media(self, open_kfid: str) -> None: ...


@dataclass
class SweepReport:
    accounts: int = 0
    pulled: list[str] = field(default_factory=list)
    drained: list[str] = field(default_factory=list)
    media: list[str] = field(default_factory=list)
    sessions: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # open_kfid -> the error

    def fields(self) -> dict[str, Any]:
        return {"accounts": self.accounts, "pulled": len(self.pulled), "drains": len(self.drained),
                "media_jobs": len(self.media),
                "sessions_checked": self.sessions, "failed_accounts": sorted(self.failed)}


def needs_pull(cursor: CursorState, now: int, policy: SweepPolicy) -> bool:
    """Never pulled, or the cursor has not moved for resync_after seconds."""
    return cursor.updated_at is None or now - cursor.updated_at >= policy.resync_after


def session_due(session: QuietSession, idle_end: int | None, now: int, policy: SweepPolicy) -> bool:
    """Idle past its rules' idle end, or unchecked with WeCom for reconcile_after seconds."""
    if idle_end is not None and now - session.active_at >= idle_end:
        return True
    return now - max(session.active_at, session.checked_at or 0) >= policy.reconcile_after


def _dedup(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()


def session_task(open_kfid: str, euid: str, run_at: int, policy: SweepPolicy) -> QueueMessage:
    body = {"task": SESSION_TASK, "open_kfid": open_kfid, "external_userid": euid,
            "reconcile_after": policy.reconcile_after}
    return QueueMessage(json.dumps(body, separators=(",", ":")), f"{open_kfid}#{euid}",
                        _dedup("sweep", SESSION_TASK, open_kfid, euid, str(run_at)))


def drain_task(open_kfid: str, run_at: int) -> QueueMessage:
    body = {"task": DRAIN_TASK, "open_kfid": open_kfid}
    return QueueMessage(json.dumps(body, separators=(",", ":")), f"{open_kfid}#{ACCOUNT_GROUP}",
                        _dedup("sweep", DRAIN_TASK, open_kfid, str(run_at)))


def sweep_account(ports: SweepPorts, open_kfid: str, run_at: int, policy: SweepPolicy, report: SweepReport) -> None:
    if needs_pull(ports.cursor(open_kfid), run_at, policy):
        ports.queue_sync([SyncJob(open_kfid, None, run_at)])
        report.pulled.append(open_kfid)
    tasks: list[QueueMessage] = []
    if ports.pool_waiting(open_kfid):
        tasks.append(drain_task(open_kfid, run_at))
        report.drained.append(open_kfid)
    # Quiet for at least the shortest reason; the route function checks again before acting.
    shortest = ports.shortest_idle_end_seconds(open_kfid)
    quiet = ports.quiet_sessions(open_kfid, run_at - min(policy.reconcile_after, shortest or policy.reconcile_after))
    due = [s for s in quiet if session_due(s, ports.idle_end_seconds(open_kfid, s.scene), run_at, policy)]
    tasks += [session_task(open_kfid, s.external_userid, run_at, policy) for s in due]
    report.sessions += len(due)
    if tasks:
        ports.queue_route(tasks)
    if ports.media_waiting(open_kfid):  # downloads a failed or dead-lettered media job left
        ports.queue_media(open_kfid)
        report.media.append(open_kfid)


def run(ports: SweepPorts, run_at: int, policy: SweepPolicy,
        log: Callable[..., None] = lambda *_a, **_k: None) -> SweepReport:
    """One sweep over every account WeCom lists; an account that fails does not stop the others."""
    report = SweepReport()
    for open_kfid in ports.accounts():
        report.accounts += 1
        try:
            sweep_account(ports, open_kfid, run_at, policy, report)
        except Exception as exc:  # noqa: BLE001 - reported per account, and the run goes on
            report.failed[open_kfid] = f"{type(exc).__name__}: {exc}"
            log("sweep of an account failed", open_kfid=open_kfid, error=report.failed[open_kfid])
    return report
