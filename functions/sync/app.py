"""Sync function: one SQS record {open_kfid, token, create_time} -> pull and store that account."""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.batch import process_partial_response

from kefu import observability, tenancy
from kefu.batch import LoggedFifoProcessor
from kefu.config import SyncSettings, load
from kefu.queues import enqueue_media, send_batch
from kefu.store.cursors import CursorStore
from kefu.store.customers import CustomerStore
from kefu.store.media import MediaStore
from kefu.store.messages import MessageStore
from kefu.store.routing_state import RosterStore
from kefu.sync import PullResult, SyncDeps, SyncPolicy, pull_account
from kefu.wecom.connect import connect

if TYPE_CHECKING:  # the type only: no import at cold start
    from aws_lambda_powertools.utilities.typing import LambdaContext

SERVICE = "sync"
settings = load(SyncSettings)
logger = observability.logger(SERVICE)
processor = LoggedFifoProcessor(logger)
policy = SyncPolicy(handoff_max_age=settings.handoff_max_age_hours * 3600,
                    catchup_grace=settings.catchup_grace_seconds,
                    retention_days=settings.message_retention_days)
_deps: SyncDeps | None = None
_pulled: set[tuple[str | None, str]] = set()  # (corp, account) drained during the current invocation
PROVIDER = settings.mode == "provider"


def deps() -> SyncDeps:
    global _deps
    if _deps is None:
        _deps = SyncDeps(
            # provider mode: each record's corp gets its own client (corp_deps)
            wecom=None if PROVIDER else connect(settings, on_error=observability.wecom_error_counter(SERVICE)),  # type: ignore[arg-type]
            messages=MessageStore(settings.messages_table),
            cursors=CursorStore(settings.state_table),
            customers=CustomerStore(settings.state_table),
            media=MediaStore(settings.state_table, settings.media_bucket),
            hand_on=lambda messages: send_batch(settings.route_queue_url, messages),
            servicer_status=RosterStore(settings.state_table).set_servicer,
            queue_media=lambda open_kfid: enqueue_media(settings.media_queue_url, open_kfid, "stored"),
            log=lambda message, **fields: logger.warning(message, extra=fields),
        )
    return _deps


def _provider():  # noqa: ANN202 - kefu.provider.Provider, imported in provider mode only
    from kefu.provider import provider

    return provider(settings, on_error=observability.wecom_error_counter(SERVICE))


def record_handler(record) -> None:  # noqa: ANN001 - Powertools SQSRecord
    job = json.loads(record.body)
    if not PROVIDER:
        _pull(deps(), None, job)
        return
    from kefu.callback import KF_ACCOUNT_AUTH_CHANGE
    from kefu.provider import COMMAND, CorpNotServed

    if COMMAND in job:
        command = job[COMMAND]
        if command.get("info_type") == KF_ACCOUNT_AUTH_CHANGE:
            _pull_granted(str(command.get("auth_corp_id") or ""), int(command.get("timestamp") or 0))
        else:
            _provider().run_command(command, lambda message, **fields: logger.info(message, extra=fields))
        return
    corp = str(job.get("corp") or "")
    try:
        tenant = _provider().tenant(corp)
    except CorpNotServed as exc:
        logger.warning("record dropped: corp not served", extra={"corp": corp, "reason": str(exc)})
        return
    with tenancy.serving(corp):
        _pull(dataclasses.replace(deps(), wecom=_provider().client(tenant)), corp, job)


def _pull_granted(corp: str, at: int) -> None:
    """The corp's kf accounts changed: note the ones the app manages now, and pull each."""
    from kefu.provider import CorpNotServed
    from kefu.wecom import kf

    try:
        tenant = _provider().tenant(corp)
    except CorpNotServed as exc:
        logger.warning("accounts change dropped: corp not served", extra={"corp": corp, "reason": str(exc)})
        return
    client = _provider().client(tenant)
    with tenancy.serving(corp):
        managed = sorted(str(a["open_kfid"]) for a in kf.account_list(client) if a.get("manage_privilege", True))
        _provider().tenants.grant_accounts(corp, managed, sorted(tenant.accounts - set(managed)))
        logger.info("kf accounts of the corp", extra={"corp": corp, "accounts": managed})
        corp_deps = dataclasses.replace(deps(), wecom=client)
        for open_kfid in managed:
            _pull(corp_deps, corp, {"open_kfid": open_kfid, "token": None, "create_time": at})  # nosec B105 - no callback token


def _pull(deps: SyncDeps, corp: str | None, job: dict[str, Any]) -> None:
    open_kfid = str(job["open_kfid"])
    if (corp, open_kfid) in _pulled:
        return  # an earlier record of this batch already drained the account past this callback
    result = pull_account(deps, open_kfid, job.get("token"), job.get("create_time"), policy)
    _pulled.add((corp, open_kfid))
    _report(result)


def _report(result: PullResult) -> None:
    logger.info("account synced", extra={
        "open_kfid": result.open_kfid, "pages": result.pages, "stored": result.stored,
        "duplicates": result.duplicates, "handed_on": result.handed_on, "catching_up": result.first_pull,
        "history": result.history,
        "media_pending": result.media_pending, "errors": result.errors,
    })
    m = observability.metrics(SERVICE)
    from aws_lambda_powertools.metrics import MetricUnit

    m.add_metric(name="PagesPulled", unit=MetricUnit.Count, value=result.pages)
    m.add_metric(name="MessagesStored", unit=MetricUnit.Count, value=result.stored)
    m.add_metric(name="DuplicatesSkipped", unit=MetricUnit.Count, value=result.duplicates)
    m.add_metric(name="ItemsHandedOn", unit=MetricUnit.Count, value=result.handed_on)
    if result.stored:
        m.add_metric(name="StorageLag", unit=MetricUnit.Seconds, value=result.max_lag)


@logger.inject_lambda_context(clear_state=True)
@observability.log_metrics(SERVICE)
def handler(event: dict[str, Any], context: LambdaContext) -> Any:
    _pulled.clear()
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
