"""Callback function: WeCom's URL verification (GET) and event callbacks (POST) -> sync queue."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response

from kefu import callback, observability
from kefu.config import CallbackSettings, load
from kefu.crypto import WXBizMsgCrypt
from kefu.queues import enqueue_sync
from kefu.secrets import load_callback_secrets

if TYPE_CHECKING:  # the type only: no import at cold start
    from aws_lambda_powertools.utilities.typing import LambdaContext

SERVICE = "callback"
UNVERIFIED_METRIC = "CallbackUnverified"  # the CallbackUnverifiedAlarm watches it
settings = load(CallbackSettings)
logger = observability.logger(SERVICE)
app = APIGatewayHttpResolver()


def _crypto() -> WXBizMsgCrypt:
    secrets = load_callback_secrets(settings.secrets_prefix)  # cached per container by Powertools
    return WXBizMsgCrypt(secrets.callback_token, secrets.encoding_aes_key, settings.corp_id)


def _query() -> dict[str, str]:
    return dict(app.current_event.query_string_parameters or {})


def _raw_body() -> bytes:
    """The body as bytes; API Gateway base64-encodes bodies it does not take for UTF-8 text."""
    body = app.current_event.body or ""
    if app.current_event.is_base64_encoded:
        try:
            return base64.b64decode(body)
        except ValueError:
            raise callback.CallbackRejected(400, "bad_body", "body is not valid base64 transport encoding") from None
    return body.encode("utf-8")


@app.get("/callback")
def verify_url() -> Response:
    plaintext = callback.verify_url(_crypto(), _query())
    logger.info("callback URL verified")
    observability.count(SERVICE, "CallbackVerified")
    return Response(status_code=200, content_type="text/plain; charset=utf-8", body=plaintext)


@app.post("/callback")
def receive_event() -> Response:
    event = callback.read_event(_crypto(), _query(), _raw_body(), settings.max_body_bytes)
    job = callback.sync_job(event)
    if job is None:
        logger.info("callback acknowledged, not queued", extra={"event": event.event, "open_kfid": event.open_kfid})
        observability.count(SERVICE, "CallbackIgnored")
    else:
        message_id = enqueue_sync(settings.sync_queue_url, job)
        logger.info(
            "callback queued for sync",
            extra={"open_kfid": job.open_kfid, "create_time": job.create_time, "sqs_message_id": message_id},
        )
        observability.count(SERVICE, "CallbackQueued")
    return Response(status_code=200, content_type="text/plain; charset=utf-8", body="success")


@app.exception_handler(callback.CallbackRejected)
def rejected(exc: callback.CallbackRejected) -> Response:
    logger.warning("callback rejected", extra={"status": exc.status, "error": exc.error, "path": app.current_event.path})
    observability.count(SERVICE, "CallbackRejected")
    if isinstance(exc, callback.CallbackUnverified):  # wrong Token/EncodingAESKey/CorpID, or a forgery
        observability.count(SERVICE, UNVERIFIED_METRIC)
    return exc.response()


@logger.inject_lambda_context(clear_state=True)
@observability.metrics(SERVICE).log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> Any:
    return app.resolve(event, context)
