"""Route function: one item from the route queue -> the enterprise's routing rules."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.batch import process_partial_response

from kefu import observability
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


def record_handler(record) -> None:  # noqa: ANN001 - Powertools SQSRecord
    """One queue record: a customer's item, or a task the sweep queued (each step is safe to repeat)."""
    body = json.loads(record.body)
    if "task" in body:
        engine().run_task(body)
        return
    for entry in body["items"]:
        engine().handle(parse_item(entry["item"]))


@logger.inject_lambda_context(clear_state=True)
@observability.log_metrics(SERVICE)
def handler(event: dict[str, Any], context: LambdaContext) -> Any:
    observability.count(SERVICE, "RouteRecords", len(event.get("Records") or []))  # never an empty metrics blob
    _deadline[0] = time.monotonic() + context.get_remaining_time_in_millis() / 1000
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
