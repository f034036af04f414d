"""Callback function: WeCom's URL verification (GET) and event callbacks (POST) -> sync queue.

The HTTP API (payload 2.0) event is read directly and the response built as a dict: two routes
need no HTTP framework, and this function's cold start is what WeCom waits for. Logs and
metrics are the lines Powertools would write (kefu.observability.JsonLogger and EmfCounter).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import time
from typing import TYPE_CHECKING, Any

from kefu import callback, observability, tenancy
from kefu.config import CallbackSettings, load
from kefu.crypto import WXBizMsgCrypt
from kefu.errors import error_body
from kefu.queues import enqueue_command, enqueue_sync
from kefu.secrets import CallbackSecrets, load_callback_secrets

if TYPE_CHECKING:  # the type only: no import at cold start
    from aws_lambda_powertools.utilities.typing import LambdaContext

SERVICE = "callback"
PATH = "/callback"
SERVED_CACHE_SECONDS = 10  # how long this container trusts "corp X is served" (sync and route re-check)
UNVERIFIED_METRIC = "CallbackUnverified"  # the CallbackUnverifiedAlarm watches it
TEXT = "text/plain; charset=utf-8"
JSON = "application/json"
settings = load(CallbackSettings)
logger = observability.JsonLogger(SERVICE)
metrics = observability.EmfCounter(SERVICE)
_built: tuple[CallbackSecrets, WXBizMsgCrypt] | None = None
PROVIDER = settings.mode == "provider"
if PROVIDER:
    settings.require_provider()
_served: dict[str, tuple[float, bool]] = {}  # corp -> (monotonic expiry, True): corps seen served lately


def _crypto() -> WXBizMsgCrypt:
    """The crypto for the current secrets (kefu.secrets keeps them for five minutes). In provider
    mode the suite's Token and EncodingAESKey, for the suite (receiveid = suite id)."""
    global _built
    secrets = load_callback_secrets(settings.secrets_prefix)
    if _built is None or _built[0] is not secrets:
        receiver = settings.suite_id if PROVIDER else settings.corp_id
        _built = (secrets, WXBizMsgCrypt(secrets.callback_token, secrets.encoding_aes_key, receiver))
    return _built[1]


@functools.cache
def _tenants():  # noqa: ANN202 - kefu.store.tenants.TenantStore, imported in provider mode only
    from kefu.store.tenants import TenantStore

    return TenantStore(settings.state_table)


def _is_served(corp_id: str) -> bool:
    """Provider mode: the corp authorized the suite and has not cancelled (kept a few seconds)."""
    if not tenancy.valid_corp_id(corp_id):
        return False
    now = time.monotonic()
    held = _served.get(corp_id)
    if held is not None and now < held[0]:
        return True
    tenant = _tenants().get(corp_id)
    if tenant is None or not tenant.active:  # not kept: a corp that authorizes is served at once
        _served.pop(corp_id, None)
        return False
    _served[corp_id] = (now + SERVED_CACHE_SECONDS, True)
    return True


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


def _for_suite(event: dict[str, Any]) -> bool:
    """Provider mode: one URL takes both of WeCom's callbacks; the suite's commands (指令回调) are
    addressed to the suite id, a corp's events (数据回调) to the corp (checked after decryption)."""
    return callback.envelope_to(_raw_body(event), settings.max_body_bytes) == settings.suite_id


def verify_url(query: dict[str, str]) -> dict[str, Any]:
    # A provider's URLs are verified for the suite (in the console) or for a corp it serves.
    accept = (lambda rid: rid == settings.suite_id or _is_served(rid)) if PROVIDER else None
    plaintext = callback.verify_url(_crypto(), query, accept)
    logger.info("callback URL verified")
    metrics.add("CallbackVerified")
    return _response(200, TEXT, plaintext)


def receive_event(query: dict[str, str], event: dict[str, Any]) -> dict[str, Any]:
    received = callback.read_event(_crypto(), query, _raw_body(event), settings.max_body_bytes,
                                   accept=_is_served if PROVIDER else None)
    with tenancy.serving(received.to_user_name) if PROVIDER else contextlib.nullcontext():
        if PROVIDER and received.event == callback.CallbackEvent.KF_ACCOUNT_AUTH_CHANGE:
            _accounts_changed(received)
            return _response(200, TEXT, "success")
        job = callback.sync_job(received)
        if job is None:
            logger.info("callback acknowledged, not queued",
                        extra={"event": received.event, "open_kfid": received.open_kfid})
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


def _accounts_changed(received: callback.CallbackEvent) -> None:
    """A corp granted (or took back) kf accounts: the sync function lists the corp's accounts
    and pulls each (a new one's first pull is a catch-up: its history is stored, not answered).
    WeCom may name several accounts in repeated elements, so the event is a signal only."""
    corp = received.to_user_name
    enqueue_command(settings.sync_queue_url, callback.SuiteCommand(
        callback.KF_ACCOUNT_AUTH_CHANGE, settings.suite_id, received.create_time, auth_corp_id=corp))
    logger.info("kf accounts granted or taken back", extra={"corp": corp})
    metrics.add("CallbackAccountsChanged")


def receive_command(query: dict[str, str], event: dict[str, Any]) -> dict[str, Any]:
    """The suite's command callback: a ticket is stored here; a cancellation stops the corp being
    served at once; the rest (and the cancellation's clean-up) goes to the sync queue, since
    WeCom wants its answer within a second and no WeCom call is made here."""
    command = callback.read_command(_crypto(), query, _raw_body(event), settings.max_body_bytes, settings.suite_id)
    if command.info_type == callback.SUITE_TICKET:
        _tenants().save_ticket(str(command.suite_ticket), command.timestamp)
    else:
        if command.info_type == callback.CANCEL_AUTH:
            _tenants().cancel(str(command.auth_corp_id), int(time.time()))
            _served.pop(str(command.auth_corp_id), None)
        enqueue_command(settings.sync_queue_url, command)
    logger.info("suite command received", extra={"info_type": command.info_type, "corp": command.auth_corp_id})
    metrics.add("SuiteCommand")
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
            if method == "GET":
                return verify_url(query)
            if PROVIDER and _for_suite(event):  # the suite's command callback: same URL, its own envelope
                return receive_command(query, event)
            return receive_event(query, event)
        except callback.CallbackRejected as exc:
            return rejected(exc, path)
    finally:
        metrics.flush()
