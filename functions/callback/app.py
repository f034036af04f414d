"""Callback function: WeCom's URL verification (GET) and event callbacks (POST) -> sync queue.

The HTTP API (payload 2.0) event is read directly and the response built as a dict: two routes
need no HTTP framework, and this function's cold start is what WeCom waits for. Logs and
metrics are the lines Powertools would write (kefu.observability.JsonLogger and EmfCounter).
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

from kefu import callback, observability
from kefu.config import CallbackSettings, load
from kefu.crypto import WXBizMsgCrypt
from kefu.errors import error_body
from kefu.queues import enqueue_sync
from kefu.secrets import CallbackSecrets, load_callback_secrets

if TYPE_CHECKING:  # the type only: no import at cold start
    from aws_lambda_powertools.utilities.typing import LambdaContext

SERVICE = "callback"
PATH = "/callback"
UNVERIFIED_METRIC = "CallbackUnverified"  # the CallbackUnverifiedAlarm watches it
TEXT = "text/plain; charset=utf-8"
JSON = "application/json"
settings = load(CallbackSettings)
logger = observability.JsonLogger(SERVICE)
metrics = observability.EmfCounter(SERVICE)
_built: tuple[CallbackSecrets, WXBizMsgCrypt] | None = None


def _crypto() -> WXBizMsgCrypt:
    """The crypto for the current secrets (kefu.secrets keeps them for five minutes)."""
    global _built
    secrets = load_callback_secrets(settings.secrets_prefix)
    if _built is None or _built[0] is not secrets:
        _built = (secrets, WXBizMsgCrypt(secrets.callback_token, secrets.encoding_aes_key, settings.corp_id))
    return _built[1]


def _response(status: int, content_type: str, body: str) -> dict[str, Any]:
    return {"statusCode": status, "body": body, "isBase64Encoded": False, "headers": {"Content-Type": content_type},
            "cookies": []}


def _raw_body(event: dict[str, Any]) -> bytes:
    """The body as bytes; API Gateway base64-encodes bodies it does not take for UTF-8 text."""
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        try:
            return base64.b64decode(body)
        except ValueError:  # binascii.Error: bad padding
            raise callback.CallbackRejected(400, "bad_body", "body is not valid base64 transport encoding") from None
    return body.encode("utf-8")


def verify_url(query: dict[str, str]) -> dict[str, Any]:
    plaintext = callback.verify_url(_crypto(), query)
    logger.info("callback URL verified")
    metrics.add("CallbackVerified")
    return _response(200, TEXT, plaintext)


def receive_event(query: dict[str, str], event: dict[str, Any]) -> dict[str, Any]:
    received = callback.read_event(_crypto(), query, _raw_body(event), settings.max_body_bytes)
    job = callback.sync_job(received)
    if job is None:
        logger.info("callback acknowledged, not queued", extra={"event": received.event, "open_kfid": received.open_kfid})
        metrics.add("CallbackIgnored")
    else:
        message_id = enqueue_sync(settings.sync_queue_url, job)
        # DEBUG: one line per callback tells an operator nothing the CallbackQueued metric and
        # the sync's "account synced" line do not; at INFO it was a fifth of the log volume.
        logger.debug(
            "callback queued for sync",
            extra={"open_kfid": job.open_kfid, "create_time": job.create_time, "sqs_message_id": message_id},
        )
        metrics.add("CallbackQueued")
    return _response(200, TEXT, "success")


def rejected(exc: callback.CallbackRejected, path: str) -> dict[str, Any]:
    logger.warning("callback rejected", extra={"status": exc.status, "error": exc.error, "path": path})
    metrics.add("CallbackRejected")
    if isinstance(exc, callback.CallbackUnverified):  # wrong Token/EncodingAESKey/CorpID, or a forgery
        metrics.add(UNVERIFIED_METRIC)
    return _response(exc.status, JSON, error_body(exc.error, exc.message))


def handler(event: dict[str, Any], context: LambdaContext) -> Any:
    logger.start(context)
    try:
        http = (event.get("requestContext") or {}).get("http") or {}
        method, path = str(http.get("method", "")).upper(), event.get("rawPath") or http.get("path") or ""
        if path != PATH or method not in ("GET", "POST"):
            return _response(404, JSON, '{"statusCode":404,"message":"Not found"}')
        query = dict(event.get("queryStringParameters") or {})
        try:
            return verify_url(query) if method == "GET" else receive_event(query, event)
        except callback.CallbackRejected as exc:
            return rejected(exc, path)
    finally:
        metrics.flush()
