"""Links function: GET /links -> a scene-tagged contact URL (JSON) or its QR code (SVG, PNG).

Cached requests (a URL stored for the account and scene) touch only DynamoDB: the WeCom client
(its connection pool, the SSM secrets) is built on the first request that needs WeCom, and segno is imported
on the first QR request, so a cold start serving JSON pays for neither. A warm container answers
a link it has answered before from memory (kefu.links.LinkMemory), and writes the link's funnel
count after the answer has gone out (AfterAnswer): such an answer waits for no round trip.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, CORSConfig, Response

from kefu import observability, tenancy
from kefu.accounts import AccountDirectory
from kefu.config import LinksSettings, load
from kefu.errors import error_response
from kefu.links import FORMATS, LinkConfig, LinkError, LinkMemory, LinkService, parse_request
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
                      daily_new_limit=settings.link_daily_new_limit, memory=LinkMemory(), defer_counts=True)
PROVIDER = settings.mode == "provider"
_corp_services: dict[str, tuple[Any, LinkService]] = {}  # provider mode: corp -> (its WeCom client, its service)
_corp_settings: Any = None  # provider mode: kefu.corp_links.CorpLinkSettings


def _for_corp(query: dict[str, str] | None) -> tuple[str, LinkService, LinkConfig]:
    """Provider mode: the corp a request names (``corp``), if it is served, with its own service
    (its WeCom client, account directory, memory) and its link settings."""
    global _corp_settings
    from kefu.corp_links import CorpLinkSettings, corp_link_service
    from kefu.provider import CorpNotServed, provider

    corp = (query or {}).get("corp", "")
    if not tenancy.valid_corp_id(corp):
        raise LinkError(400, "invalid_corp", "corp is required: the corp id (wwxxxx) of the enterprise")
    try:
        corp_service = provider(settings, on_error=observability.wecom_error_counter(SERVICE)).for_corp(
            corp, _corp_services, lambda client: corp_link_service(settings, client, _count_failed))
    except CorpNotServed:
        raise LinkError(404, "unknown_corp", "no enterprise with this corp id is served here") from None
    if _corp_settings is None:
        _corp_settings = CorpLinkSettings(settings.media_bucket, config)
    return corp, corp_service, _corp_settings.config(corp)


class AfterAnswer:
    """Runs ``work`` after each answer has gone out, within the same invocation (deployed).

    Lambda hands the handler's answer to the caller as soon as the handler returns, but keeps the
    execution environment running until the runtime and every registered extension have asked
    for their next event. This is an internal extension: a thread of this process, registered
    with the Extensions API for INVOKE events while the module loads (Lambda's init phase), that
    asks for its next event only after the handler has finished and ``work`` has run. So the work
    is done before the environment can be frozen or shut down, as if the handler had done it, but
    the caller does not wait for it (Lambda bills it, as it billed the handler doing it).

    Outside Lambda (no AWS_LAMBDA_RUNTIME_API: the local stack, tests), with the environment
    variable KEFU_LINKS_COUNT_AFTER_ANSWER=0, or if registering fails, ``start`` gives None and
    the handler does the work itself before answering.
    """

    NAME = "kefu-links-after-answer"
    MARGIN = 0.5  # seconds before the invocation's deadline when work starts without the handler's word

    def __init__(self, runtime_api: str, work: Callable[[], None]) -> None:
        self._api = runtime_api
        self._work = work
        self._id = ""
        self._done: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._stopped = False

    @classmethod
    def start(cls, work: Callable[[], None]) -> AfterAnswer | None:
        runtime_api = os.environ.get("AWS_LAMBDA_RUNTIME_API")
        if not runtime_api or os.environ.get("KEFU_LINKS_COUNT_AFTER_ANSWER", "1") == "0":
            return None  # KEFU_LINKS_COUNT_AFTER_ANSWER=0: count before each answer, as outside Lambda
        after = cls(runtime_api, work)
        try:
            after._register()
        except Exception as exc:
            logger.warning("after-answer extension not registered: counting before each answer",
                           extra={"error": f"{type(exc).__name__}: {exc}"})
            return None
        threading.Thread(target=after._run, name=cls.NAME, daemon=True).start()
        return after

    def handler_done(self, request_id: str) -> None:
        """The handler has returned (called once per invocation, whatever its outcome)."""
        self._done.put(request_id)

    def stop(self) -> None:
        """Leave the event loop once the current wait ends (tests; Lambda never stops it)."""
        self._stopped = True

    def _call(self, method: str, path: str, headers: dict[str, str], body: str | None = None,
              timeout: float | None = None) -> tuple[Any, Any]:
        import http.client

        connection = http.client.HTTPConnection(self._api, timeout=timeout)  # next: none, it waits for an invoke
        try:
            connection.request(method, f"/2020-01-01/extension/{path}", body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
            if response.status != 200:
                raise RuntimeError(f"extension {path}: HTTP {response.status} {data[:200]!r}")
            return (json.loads(data) if data else {}), response.headers
        finally:
            connection.close()

    def _register(self) -> None:
        _, headers = self._call("POST", "register", {"Lambda-Extension-Name": self.NAME,
                                                     "Content-Type": "application/json"},
                                json.dumps({"events": ["INVOKE"]}), timeout=5.0)
        self._id = str(headers["Lambda-Extension-Identifier"])

    def _run(self) -> None:
        failures = 0
        while not self._stopped:
            try:
                event, _ = self._call("GET", "event/next", {"Lambda-Extension-Identifier": self._id})
                failures = 0
            except Exception as exc:
                failures += 1
                if not self._stopped:
                    logger.warning("after-answer extension: next event failed",
                                   extra={"error": f"{type(exc).__name__}: {exc}", "failures": failures})
                time.sleep(min(1.0, 0.01 * 2 ** failures))
                continue
            if event.get("eventType") == "INVOKE":
                self._after(event)

    def _after(self, event: dict[str, Any]) -> None:
        """Wait for the handler to finish (its one handler_done per invocation), then work."""
        deadline = float(event.get("deadlineMs") or 0) / 1000
        try:
            done = self._done.get(timeout=max(0.0, deadline - time.time() - self.MARGIN) if deadline else 10.0)
            if done != event.get("requestId"):
                logger.warning("after-answer extension: another invocation finished",
                               extra={"expected": event.get("requestId"), "finished": done})
        except queue.Empty:
            logger.warning("after-answer extension: the handler did not finish before the deadline")
        try:
            self._work()
        except Exception:
            logger.exception("after-answer work failed")


def _count_after_answer() -> None:
    if service.flush_counts():  # a count failed: its metric now, not with the next invocation's
        observability.metrics(SERVICE).flush_metrics()


after_answer = AfterAnswer.start(_count_after_answer)


@app.get("/links", cache_control=CACHE_CONTROL)
def get_link() -> Response:
    if PROVIDER:
        corp, corp_service, corp_config = _for_corp(app.current_event.query_string_parameters)
        with tenancy.serving(corp):
            return _answer(corp_service, parse_request(app.current_event.query_string_parameters, corp_config), corp)
    return _answer(service, parse_request(app.current_event.query_string_parameters, config), settings.corp_id)


def _answer(service: LinkService, request: Any, corp_id: str) -> Response:
    link = service.issue(request)
    logger.info("link issued", extra={"open_kfid": link.open_kfid, "scene": link.scene, "format": request.format,
                                      "link_created": link.created})
    observability.count(SERVICE, "LinksIssued")
    if link.created:
        observability.count(SERVICE, "LinksCreated")
    headers = {"Vary": "Origin"}  # the CORS headers depend on it; keeps shared caches honest
    if request.format == "json":
        body: str | bytes = json.dumps(link.body(corp_id), ensure_ascii=False)
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
@observability.log_metrics(SERVICE)
def _handle(event: dict[str, Any], context: LambdaContext) -> Any:
    answer = app.resolve(event, context)
    if after_answer is None:
        service.flush_counts()  # no extension to count after the answer: count before it
    return answer


def handler(event: dict[str, Any], context: LambdaContext) -> Any:
    try:
        return _handle(event, context)
    finally:  # after the metrics are out: the extension's work may add its own
        if after_answer is not None:
            after_answer.handler_done(context.aws_request_id)
