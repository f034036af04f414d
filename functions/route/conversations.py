"""Conversation API (IAM-authorized): the enterprise's own systems read conversations and customers,
and send, transfer and end on an account's behalf (kefu.conversations reads, kefu.routing.operator
acts). It ships with the route function's code and rules: it acts through the same engine.

Every call is one log line - method, route, account, customer, status, and for a send its msgid
and outcome - and never the message's text."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response

from kefu import aws, observability, tenancy
from kefu.config import RouteSettings, load
from kefu.conversations import ConversationReader, account_of, bad, page_size
from kefu.errors import HttpError, error_body
from kefu.ids import IDEMPOTENCY_KEY_RE, is_external_userid
from kefu.routing.deployed import build_engine
from kefu.routing.engine import Decision
from kefu.routing.operator import Operator, Refused
from kefu.routing.source import RulesSource
from kefu.store.customers import CustomerStore
from kefu.store.messages import MessageStore
from kefu.store.routing_state import SessionStore

if TYPE_CHECKING:  # the type only: no import at cold start
    from aws_lambda_powertools.utilities.typing import LambdaContext

    from kefu.routing.outbound import Message

SERVICE = "conversations"
settings = load(RouteSettings)
logger = observability.logger(SERVICE)
rules = RulesSource(settings, Path(__file__).with_name("routing.yaml"))
rules.load()
app = APIGatewayHttpResolver()
messages = MessageStore(settings.messages_table)
customers = CustomerStore(settings.state_table)
MAX_BODY = 64 * 1024
TRANSFER_TARGETS = ("servicer", "pool", "bot")
_operator: Operator | None = None
PROVIDER = settings.mode == "provider"
_operators: dict[str, tuple[Any, Operator]] = {}  # provider mode, per corp: (its WeCom client, operator)


def _record(decision: Decision) -> None:
    logger.info("route decision", extra=decision.fields())


def operator() -> Operator:
    global _operator
    if PROVIDER:
        return _corp_operator(tenancy.require())
    if _operator is None:
        _operator = Operator(build_engine(settings, rules, _record, SERVICE), messages)
    return _operator


def _corp_operator(corp: str) -> Operator:
    """The corp's operator: its engine with its rules and WeCom client (rebuilt with a new client)."""
    from kefu.provider import CorpNotServed, provider
    from kefu.routing.corp_rules import CorpRulesSource

    try:
        return provider(settings, on_error=observability.wecom_error_counter(SERVICE)).for_corp(
            corp, _operators, lambda client: Operator(build_engine(
                settings, CorpRulesSource(rules, settings.media_bucket, corp), _record, SERVICE, wecom=client), messages))
    except CorpNotServed:
        from kefu.corp_auth import not_served

        raise not_served() from None


def media_url(key: str) -> str:
    return str(aws.client("s3").generate_presigned_url(
        "get_object", Params={"Bucket": settings.media_bucket, "Key": key}, ExpiresIn=300))


reader = ConversationReader(messages, customers, SessionStore(settings.state_table), customers.by_unionid, media_url)


def _json(body: Any, status: int = 200) -> Response:
    return Response(status_code=status, content_type="application/json", body=json.dumps(body, ensure_ascii=False),
                    headers={"Cache-Control": "no-store"})


def _query() -> dict[str, str]:
    return dict(app.current_event.query_string_parameters or {})


def _customer(euid: str) -> str:
    if not is_external_userid(euid):
        raise bad("external_userid", "the customer is an external_userid (wm...)")
    return euid


def _body() -> dict[str, Any]:
    raw = app.current_event.decoded_body or ""
    if len(raw.encode()) > MAX_BODY:
        raise HttpError(413, "body_too_large", f"the body is limited to {MAX_BODY} bytes")
    try:
        body = json.loads(raw) if raw.strip() else {}
    except ValueError:
        raise bad("body", "the body is not JSON") from None
    if not isinstance(body, dict):
        raise bad("body", "the body is a JSON object")
    return body


def _since(query: dict[str, str]) -> int | None:
    text = query.get("since")
    if text is None:
        return None
    if not text.isdigit() or len(text) > 10:
        raise bad("since", "since is a unix time in seconds")
    return int(text)


@app.get("/conversations")
def recent() -> Response:
    query = _query()
    return _json(reader.recent(account_of(query), _since(query), page_size(query, 20), query.get("cursor")))


@app.get("/conversations/<external_userid>")
def conversation(external_userid: str) -> Response:
    query = _query()
    return _json(reader.conversation(account_of(query), _customer(external_userid), page_size(query, 50),
                                     query.get("cursor")))


def _message(body: dict[str, Any]) -> Message:
    from pydantic import ValidationError

    from kefu.routing.outbound import Message

    if "message" not in body:
        raise bad("message", 'the body is {"message": <a text, or one message kind>}')
    try:
        message = Message.model_validate(body["message"])
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in ("message", *err["loc"]))
        raise bad("message", f"{where}: {str(err['msg']).removeprefix('Value error, ')}") from None
    if any(asset.path is not None for _kind, asset in message.assets()):
        raise bad("message", "the API sends assets from the media bucket only: {s3: assets/<key>}")
    return message


@app.post("/conversations/<external_userid>/messages")
def send(external_userid: str) -> Response:
    account, euid = account_of(_query()), _customer(external_userid)
    key = app.current_event.get_header_value("Idempotency-Key") or ""
    if not IDEMPOTENCY_KEY_RE.fullmatch(key):
        raise bad("idempotency_key", "an Idempotency-Key header (1-128 printable ASCII characters) names the send: "
                                     "a retried request with the same key never sends twice")
    message = _message(_body())
    result = operator().send(account, euid, message, key)
    logger.info("api send", extra={"open_kfid": account, "external_userid": euid, "msgtype": message.kind, **result})
    return _json(result)


@app.post("/conversations/<external_userid>/transfer")
def transfer(external_userid: str) -> Response:
    account, euid = account_of(_query()), _customer(external_userid)
    body = _body()
    to, servicer = body.get("to"), body.get("servicer")
    if to not in TRANSFER_TARGETS:
        raise bad("to", f"to is one of {', '.join(TRANSFER_TARGETS)}")
    if to == "servicer" and not (isinstance(servicer, str) and 0 < len(servicer) <= 64):
        raise bad("servicer", "a transfer to a servicer names the servicer's userid")
    result = operator().transfer(account, euid, str(to), servicer if to == "servicer" else None)
    logger.info("api transfer", extra={"open_kfid": account, "external_userid": euid, "to": to, **result})
    return _json(result)


@app.post("/conversations/<external_userid>/end")
def end(external_userid: str) -> Response:
    account, euid = account_of(_query()), _customer(external_userid)
    result = operator().end(account, euid)
    logger.info("api end", extra={"open_kfid": account, "external_userid": euid})
    return _json(result)


@app.get("/customers/<external_userid>")
def customer(external_userid: str) -> Response:
    euid = _customer(external_userid)
    query = _query()
    accounts = [account_of(query)] if query.get("account") else accounts_of_corp()
    found = reader.customer(euid, accounts)
    if found["profile"] is None and not any(a["entries"] or a["session"] for a in found["accounts"]):
        raise HttpError(404, "not_found", f"nothing stored of {euid}")
    return _json({"external_userid": euid, **found})


@app.get("/customers")
def customers_by_unionid() -> Response:
    unionid = _query().get("unionid") or ""
    if not 0 < len(unionid) <= 128 or not unionid.isprintable():
        raise bad("unionid", "unionid (统一客户ID) is required")
    found = reader.by_unionid(unionid)
    return _json({"unionid": unionid, "customers": [{"external_userid": e, "profile": reader.customer(e, [])["profile"]}
                                                     for e in found]})


_accounts: tuple[list[str], float] | None = None


def accounts_of_corp() -> list[str]:
    """kf/account/list, read at most every five minutes."""
    global _accounts
    from kefu.wecom import kf

    if _accounts is None or time.monotonic() - _accounts[1] > 300:
        _accounts = ([str(a["open_kfid"]) for a in kf.account_list(operator().engine.assigner.wecom)], time.monotonic())
    return _accounts[0]


@app.exception_handler(HttpError)
def refused_input(exc: HttpError) -> Response:
    logger.info("api refused", extra={"status": exc.status, "error": exc.error})
    return exc.response()


@app.exception_handler(Refused)
def refused_by_rule(exc: Refused) -> Response:
    logger.info("api refused", extra={"status": 409, "error": "refused", "rule": exc.rule})
    body = json.loads(error_body("refused", exc.message))
    return _json({**body, "rule": exc.rule}, 409)


@logger.inject_lambda_context(clear_state=True)
@observability.log_metrics(SERVICE)
def handler(event: dict[str, Any], context: LambdaContext) -> Any:
    observability.count(SERVICE, "ApiCalls")
    if PROVIDER:  # everything read or done is the corp's whose API key the caller sent
        from kefu.corp_auth import resolve_as_caller

        return resolve_as_caller(event, settings.state_table, lambda: app.resolve(event, context))
    return app.resolve(event, context)
