"""Links function: GET /links -> a scene-tagged contact URL (JSON) or its QR code (SVG, PNG).

Cached requests (a URL stored for the account and scene) touch only DynamoDB: the WeCom client
(httpx, the SSM secrets) is built on the first request that needs WeCom, and segno is imported
on the first QR request, so a cold start serving JSON pays for neither.
"""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, CORSConfig, Response

from kefu import observability
from kefu.accounts import AccountDirectory
from kefu.config import LinksSettings, load
from kefu.errors import error_response
from kefu.links import FORMATS, LinkConfig, LinkError, LinkService, parse_request
from kefu.qr import render_qr
from kefu.store.links import LinkStore

if TYPE_CHECKING:  # the type only: no import at cold start
    from aws_lambda_powertools.utilities.typing import LambdaContext

SERVICE = "links"
PREFLIGHT_MAX_AGE = 600  # seconds a browser may reuse a preflight answer
settings = load(LinksSettings)
config = LinkConfig.from_settings(settings)
logger = observability.logger(SERVICE)
CACHE_CONTROL = f"public, max-age={config.cache_seconds}" if config.cache_seconds else "no-cache"
_cors = (CORSConfig(allow_origin=config.origins[0], extra_origins=list(config.origins[1:]), max_age=PREFLIGHT_MAX_AGE)
         if config.origins else None)
app = APIGatewayHttpResolver(cors=_cors)

_client: Any = None
_client_lock = threading.Lock()


def _wecom() -> Any:
    global _client
    with _client_lock:
        if _client is None:
            from kefu.wecom.connect import connect

            _client = connect(settings, on_error=observability.wecom_error_counter(SERVICE))
        return _client


def _add_contact_way(open_kfid: str, scene: str) -> str:
    from kefu.wecom import kf

    return kf.add_contact_way(_wecom(), open_kfid, scene)


def _account_list() -> list[dict[str, Any]]:
    from kefu.wecom import kf

    return kf.account_list(_wecom())


def _count_failed(exc: Exception) -> None:
    logger.warning("funnel count not recorded", extra={"error": f"{type(exc).__name__}: {exc}"})
    observability.count(SERVICE, "FunnelCountFailed")


service = LinkService(LinkStore(settings.state_table), _add_contact_way, AccountDirectory(_account_list),
                      on_count_failed=_count_failed, timezone=settings.stats_timezone,
                      daily_new_limit=settings.link_daily_new_limit)


@app.get("/links", cache_control=CACHE_CONTROL)
def get_link() -> Response:
    request = parse_request(app.current_event.query_string_parameters, config)
    link = service.issue(request)
    logger.info("link issued", extra={"open_kfid": link.open_kfid, "scene": link.scene, "format": request.format,
                                      "link_created": link.created})
    observability.count(SERVICE, "LinksIssued")
    if link.created:
        observability.count(SERVICE, "LinksCreated")
    headers = {"Vary": "Origin"}  # the CORS headers depend on it; keeps shared caches honest
    if request.format == "json":
        body: str | bytes = json.dumps(link.body(settings.corp_id), ensure_ascii=False)
    else:
        image = render_qr(link.url, request.format, request.size)
        body = image.decode("utf-8") if request.format == "svg" else image  # bytes go out base64-encoded
    return Response(status_code=200, content_type=FORMATS[request.format], body=body, headers=headers)


if _cors is None:
    @app.route("/links", method="OPTIONS")
    def preflight_without_origins() -> Response:
        """No origin is configured: answer preflight without CORS headers, so browsers refuse."""
        return Response(status_code=204, content_type=None, body="")


@app.exception_handler(LinkError)
def refused(exc: LinkError) -> Response:
    logger.info("link refused", extra={"status": exc.status, "error": exc.error})
    observability.count(SERVICE, "LinksRefused", error=exc.error)
    return exc.response()


@app.exception_handler(Exception)
def failed(exc: Exception) -> Response:
    """DynamoDB or anything else down: still JSON (with CORS headers, so a page can tell)."""
    logger.exception("link failed")
    observability.count(SERVICE, "LinksFailed")
    return error_response(503, "unavailable", "Kefu could not answer just now; try again shortly")


@logger.inject_lambda_context(clear_state=True)
@observability.metrics(SERVICE).log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> Any:
    return app.resolve(event, context)
