"""Sweep function: a schedule's run over every kf account (kefu.sweep). It ships with the route
function's code (the same routing rules) and only queues work: sync jobs for accounts whose
callbacks may have been lost, and pool drains and session checks for the route function."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kefu import observability, sweep, tenancy
from kefu.callback import SyncJob
from kefu.config import SweepSettings, load
from kefu.queues import QueueMessage, enqueue_media, send_batch
from kefu.routing.source import RulesSource
from kefu.schedule import scheduled_at
from kefu.store.active_sessions import ActiveSessions, QuietSession
from kefu.store.cursors import CursorState, CursorStore
from kefu.store.media import MediaStore
from kefu.store.routing_state import PoolStore
from kefu.wecom import kf
from kefu.wecom.client import WeComClient
from kefu.wecom.connect import connect

if TYPE_CHECKING:  # the type only: no import at cold start
    from aws_lambda_powertools.utilities.typing import LambdaContext

SERVICE = "sweep"
settings = load(SweepSettings)
logger = observability.logger(SERVICE)
rules = RulesSource(settings, Path(__file__).with_name("routing.yaml"))
rules.load()
_wecom: WeComClient | None = None
_corp_ports: dict[str, tuple[WeComClient, Ports]] = {}  # provider mode, per corp: (its WeCom client, its ports)


class Ports:
    """kefu.sweep's view of WeCom, the state table and the two queues."""

    def __init__(self, wecom: WeComClient, corp_rules: Any = None) -> None:
        self.wecom = wecom
        self.rules = corp_rules or rules  # provider mode: the corp's (kefu.routing.corp_rules)
        self.cursors = CursorStore(settings.state_table)
        self.pool = PoolStore(settings.state_table)
        self.active = ActiveSessions(settings.state_table)
        self.media = MediaStore(settings.state_table, "")

    def accounts(self) -> list[str]:
        return [str(a["open_kfid"]) for a in kf.account_list(self.wecom)]

    def cursor(self, open_kfid: str) -> CursorState:
        return self.cursors.read(open_kfid)

    def pool_waiting(self, open_kfid: str) -> bool:
        return bool(self.pool.oldest(open_kfid, limit=1))

    def quiet_sessions(self, open_kfid: str, since: int) -> list[QuietSession]:
        return self.active.quiet(open_kfid, since)

    def idle_end_seconds(self, open_kfid: str, scene: str | None) -> int | None:
        minutes = self.rules().policy(open_kfid, scene).idle_end_minutes
        return round(minutes * 60) if minutes is not None else None

    def shortest_idle_end_seconds(self, open_kfid: str) -> int | None:
        found = [s for s in (self.idle_end_seconds(open_kfid, scene)
                             for scene in (None, *self.rules().scenes_of(open_kfid))) if s is not None]
        return min(found) if found else None

    def queue_sync(self, jobs: Sequence[SyncJob]) -> None:
        send_batch(settings.sync_queue_url, [QueueMessage(j.body(), j.group_id, j.deduplication_id) for j in jobs])

    def queue_route(self, messages: Sequence[QueueMessage]) -> None:
        send_batch(settings.route_queue_url, list(messages))

    def media_waiting(self, open_kfid: str) -> bool:
        return self.media.waiting(open_kfid)

    def queue_media(self, open_kfid: str) -> None:
        enqueue_media(settings.media_queue_url, open_kfid, "sweep")



@logger.inject_lambda_context(clear_state=True)
@observability.log_metrics(SERVICE)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    global _wecom
    policy = sweep.SweepPolicy(resync_after=round(settings.resync_minutes * 60),
                               reconcile_after=round(settings.reconcile_minutes * 60))
    if settings.mode == "provider":
        return _sweep_corps(event, policy)
    if _wecom is None:
        _wecom = connect(settings, on_error=observability.wecom_error_counter(SERVICE))
    return _sweep(Ports(_wecom), event, policy)


def _corp_ports_of(corp: str, client: WeComClient) -> Ports:
    from kefu.routing.corp_rules import CorpRulesSource

    return Ports(client, CorpRulesSource(rules, settings.media_bucket, corp))


def _sweep_corps(event: dict[str, Any], policy: sweep.SweepPolicy) -> dict[str, Any]:
    """Provider mode: each corp served, in turn, as its own sweep; one corp's failure is logged
    and the others are swept all the same."""
    from kefu.provider import CorpNotServed, provider

    p = provider(settings, on_error=observability.wecom_error_counter(SERVICE))
    swept: dict[str, Any] = {}
    for corp in p.tenants.active():
        with tenancy.serving(corp):
            try:
                ports = p.for_corp(corp, _corp_ports, functools.partial(_corp_ports_of, corp))
                swept[corp] = _sweep(ports, event, policy)
            except CorpNotServed:
                continue
            except Exception as exc:
                logger.exception("sweep of a corp failed", extra={"corp": corp, "error": f"{type(exc).__name__}: {exc}"})
                observability.count(SERVICE, "SweepCorpFailures")
    return {"corps": swept}


def _sweep(ports: Ports, event: dict[str, Any], policy: sweep.SweepPolicy) -> dict[str, Any]:
    report = sweep.run(ports, scheduled_at(event), policy, log=lambda msg, **fields: logger.warning(msg, extra=fields))
    logger.info("sweep done", extra=report.fields())
    observability.count(SERVICE, "SweepPulls", len(report.pulled))
    observability.count(SERVICE, "SweepSessionChecks", report.sessions)
    if report.failed:
        observability.count(SERVICE, "SweepAccountFailures", len(report.failed))
    return report.fields()
