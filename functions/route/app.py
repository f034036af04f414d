"""Route function: one item from the route queue -> the enterprise's routing rules."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.batch import process_partial_response

from kefu import observability, tenancy
from kefu.batch import LoggedFifoProcessor
from kefu.config import RouteSettings, load
from kefu.routing.deployed import build_engine
from kefu.routing.engine import Decision, RoutingEngine
from kefu.routing.source import RulesSource
from kefu.wecom.models import parse_item

if TYPE_CHECKING:  # the type only: no import at cold start
    from aws_lambda_powertools.utilities.typing import LambdaContext

SERVICE = "route"
settings = load(RouteSettings)
logger = observability.logger(SERVICE)
processor = LoggedFifoProcessor(logger)
rules = RulesSource(settings, Path(__file__).with_name("routing.yaml"))
rules.load()
_engine: RoutingEngine | None = None
PROVIDER = settings.mode == "provider"
_engines: dict[str, tuple[Any, RoutingEngine]] = {}  # provider mode, per corp: (its WeCom client, engine)
_deadline = [0.0]  # when the current invocation must have finished (time.monotonic()), for the AI answerer


def _time_left() -> float:
    return _deadline[0] - time.monotonic()


def _record(decision: Decision) -> None:
    logger.info("route decision", extra=decision.fields())
    observability.count(SERVICE, "RouteDecision", outcome=str(decision.outcome))


def engine() -> RoutingEngine:
    global _engine
    if _engine is None:
        _engine = build_engine(settings, rules, _record, SERVICE, time_left=_time_left)
    return _engine


def corp_engine(corp: str) -> RoutingEngine | None:
    """Provider mode: the corp's engine, or None when the corp is not served (any more)."""
    from kefu.provider import CorpNotServed, provider
    from kefu.routing.corp_rules import CorpRulesSource

    try:
        return provider(settings, on_error=observability.wecom_error_counter(SERVICE)).for_corp(
            corp, _engines, lambda client: build_engine(settings, CorpRulesSource(rules, settings.media_bucket, corp),
                                                        _record, SERVICE, time_left=_time_left, wecom=client))
    except CorpNotServed as exc:
        logger.warning("record dropped: corp not served", extra={"corp": corp, "reason": str(exc)})
        return None


def record_handler(record) -> None:  # noqa: ANN001 - Powertools SQSRecord
    """One queue record: a customer's item, or a task the sweep queued (each step is safe to repeat)."""
    body = json.loads(record.body)
    if not PROVIDER:
        _run(engine(), body)
        return
    corp = str(body.get("corp") or "")
    if not tenancy.valid_corp_id(corp):
        logger.warning("record dropped: no corp", extra={"corp": corp})
        return
    with tenancy.serving(corp):
        corp_route = corp_engine(corp)
        if corp_route is not None:
            _run(corp_route, body)


def _run(route: RoutingEngine, body: dict[str, Any]) -> None:
    if "task" in body:
        route.run_task(body)
        return
    for entry in body["items"]:
        route.handle(parse_item(entry["item"]))


@logger.inject_lambda_context(clear_state=True)
@observability.log_metrics(SERVICE)
def handler(event: dict[str, Any], context: LambdaContext) -> Any:
    observability.count(SERVICE, "RouteRecords", len(event.get("Records") or []))  # never an empty metrics blob
    _deadline[0] = time.monotonic() + context.get_remaining_time_in_millis() / 1000
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
