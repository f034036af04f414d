"""Stats function: GET /stats - the scene funnel and servicer figures per day (IAM-authorized)."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response

from kefu import observability
from kefu.config import Settings, load
from kefu.stats import day_of
from kefu.stats_report import StatsQueryError, parse_query, report
from kefu.store.stats import StatsStore

if TYPE_CHECKING:  # the type only: no import at cold start
    from aws_lambda_powertools.utilities.typing import LambdaContext

SERVICE = "stats"
settings = load(Settings)
logger = observability.logger(SERVICE)
app = APIGatewayHttpResolver()
store = StatsStore(settings.state_table)


@app.get("/stats")
def get_stats() -> Response:
    query = dict(app.current_event.query_string_parameters or {})
    days, account, scene = parse_query(query, day_of(time.time(), settings.stats_timezone))
    body = report(store, days, account, scene, settings.stats_timezone)
    return Response(status_code=200, content_type="application/json",
                    body=json.dumps(body, ensure_ascii=False), headers={"Cache-Control": "no-store"})


@app.exception_handler(StatsQueryError)
def bad_query(exc: StatsQueryError) -> Response:
    return exc.response()


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> Any:
    if settings.mode == "provider":  # the figures of the corp whose API key the caller sent
        from kefu.corp_auth import resolve_as_caller

        return resolve_as_caller(event, settings.state_table, lambda: app.resolve(event, context))
    return app.resolve(event, context)
