"""Sidebar function: the servicer's page in the WeCom client's kf toolbar (客户工具栏) and its three
calls - the OAuth2 sign-in, the JS-SDK signatures, the current customer (kefu.sidebar).

The routes are public (the WeCom client's web view signs nothing): the page holds no data, and
every read needs the token the OAuth2 code was exchanged for. A servicer sees a customer only
through the kf accounts they serve. Logs carry who asked for whom, never message text."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response

from kefu import observability
from kefu.config import Settings, load, setting
from kefu.conversations import ConversationReader, message_row
from kefu.errors import HttpError, error_response
from kefu.ids import is_external_userid
from kefu.secrets import load_secrets
from kefu.sidebar import Denied, Tokens, accounts_served, js_signature
from kefu.store.customers import CustomerStore
from kefu.store.messages import MessageStore
from kefu.store.routing_state import SessionStore
from kefu.wecom import kf
from kefu.wecom.client import WeComClient
from kefu.wecom.connect import connect
from kefu.wecom.errors import WeComError

if TYPE_CHECKING:  # the type only: no import at cold start
    from aws_lambda_powertools.utilities.typing import LambdaContext

DEFAULT_JSSDK = "https://res.wx.qq.com/open/js/jweixin-1.2.0.js,https://open.work.weixin.qq.com/wwopen/js/jwxwork-1.0.0.js"


class SidebarSettings(Settings):
    messages_table: str = setting("KEFU_MESSAGES_TABLE", min_length=3)
    agent_id: str = setting("KEFU_WECOM_AGENT_ID", default="")
    replies: str = setting("KEFU_SIDEBAR_REPLIES", default="")  # canned replies, separated by "|"
    jssdk: str = setting("KEFU_SIDEBAR_JSSDK", default=DEFAULT_JSSDK)  # the JS-SDK scripts, comma-separated
    upgrade_wording: str = setting("KEFU_SIDEBAR_UPGRADE_WORDING", default="添加我为企业微信联系人，后续问题直接找我")


SERVICE = "sidebar"
settings = load(SidebarSettings)
logger = observability.logger(SERVICE)
app = APIGatewayHttpResolver()
PAGE = Path(__file__).with_name("page.html").read_text(encoding="utf-8")
CONFIG = {"base": "", "replies": [r.strip() for r in settings.replies.split("|") if r.strip()],
          "jssdk": [u.strip() for u in settings.jssdk.split(",") if u.strip()]}
customers = CustomerStore(settings.state_table)
messages = MessageStore(settings.messages_table)
reader = ConversationReader(messages, customers, SessionStore(settings.state_table), customers.by_unionid,
                            lambda key: "")
RECENT = 20
CACHE_SECONDS = 60.0
_wecom: WeComClient | None = None
_tokens: Tokens | None = None
_cache: dict[str, tuple[Any, float]] = {}


def wecom() -> WeComClient:
    global _wecom
    if _wecom is None:
        _wecom = connect(settings, on_error=observability.wecom_error_counter(SERVICE))
    return _wecom


def tokens() -> Tokens:
    global _tokens
    if _tokens is None:
        _tokens = Tokens.from_secret(load_secrets(settings.secrets_prefix).corp_secret)
    return _tokens


def cached(key: str, read: Any, seconds: float = CACHE_SECONDS) -> Any:
    held = _cache.get(key)
    if held is None or time.monotonic() - held[1] > seconds:
        held = (read(), time.monotonic())
        _cache[key] = held
    return held[0]


def _json(body: Any, status: int = 200) -> Response:
    return Response(status_code=status, content_type="application/json", body=json.dumps(body, ensure_ascii=False),
                    headers={"Cache-Control": "no-store"})


def servicer() -> str:
    header = app.current_event.get_header_value("Authorization") or ""
    if not header.startswith("Bearer "):
        raise Denied(401, "sign in: open the page from the WeCom client's kf toolbar")
    return tokens().userid(header[len("Bearer "):].strip())


@app.get("/sidebar")
def page() -> Response:
    config = json.dumps(CONFIG, ensure_ascii=False).replace("<", "\\u003c")
    return Response(status_code=200, content_type="text/html; charset=utf-8", body=PAGE.replace("__KEFU_CONFIG__", config),
                    headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
                             "Referrer-Policy": "no-referrer"})


@app.post("/sidebar/session")
def session() -> Response:
    try:
        body = json.loads(app.current_event.decoded_body or "{}")
    except ValueError:
        body = None
    code = body.get("code") if isinstance(body, dict) else None
    if not isinstance(code, str) or not 0 < len(code) <= 512:
        raise HttpError(400, "invalid_code", 'the body is {"code": <the OAuth2 code WeCom gave the page>}')
    try:
        userid = kf.oauth_userid(wecom(), code)
    except WeComError as exc:
        if exc.transient:
            raise
        raise Denied(401, f"WeCom did not accept the sign-in code (errcode {exc.metric_code}): open the page again") from None
    if not userid:
        raise Denied(403, "only members of the enterprise may use the sidebar")
    logger.info("sidebar sign-in", extra={"servicer": userid})
    return _json({"token": tokens().issue(userid), "userid": userid})


@app.get("/sidebar/signature")
def signature() -> Response:
    servicer()
    url = (app.current_event.query_string_parameters or {}).get("url") or ""
    if not url.startswith(("https://", "http://")) or len(url) > 2048:
        raise HttpError(400, "invalid_url", "url is the page's own URL (without its #fragment)")
    corp = cached("ticket:corp", lambda: kf.jsapi_ticket(wecom())[0], 3600)
    agent = cached("ticket:agent", lambda: kf.jsapi_ticket(wecom(), agent=True)[0], 3600)
    signs = {name: js_signature(ticket, url) for name, ticket in (("config", corp), ("agent", agent))}
    return _json({"corpid": settings.corp_id, "agentid": settings.agent_id,
                  **{name: {"timestamp": s.timestamp, "nonceStr": s.nonce, "signature": s.signature}
                     for name, s in signs.items()}})


def summary(row: dict[str, Any]) -> str:
    message = row.get("message") or {}
    if isinstance(message, dict):
        for key in ("content", "head_content", "title"):
            if isinstance(message.get(key), str):
                return str(message[key])[:200]
    return str(row.get("event_type") or row.get("msgtype") or "")


@app.get("/sidebar/customer")
def customer() -> Response:
    userid = servicer()
    euid = (app.current_event.query_string_parameters or {}).get("external_userid") or ""
    if not is_external_userid(euid):
        raise HttpError(400, "invalid_external_userid", "external_userid is the current customer's (wm...)")
    accounts = cached("accounts", lambda: [str(a["open_kfid"]) for a in kf.account_list(wecom())])
    served = accounts_served(lambda k: cached(f"roster:{k}", lambda: kf.duty_roster(wecom(), k)), accounts, userid)
    view = reader.customer(euid, served)
    view["accounts"] = [a for a in view["accounts"] if a["entries"] or a["session"]]
    if not view["accounts"]:
        logger.info("sidebar refused", extra={"servicer": userid, "external_userid": euid})
        raise Denied(403, "this customer has written to none of the kf accounts you serve")
    rows: list[dict[str, Any]] = []
    for account in view["accounts"]:
        items, _ = messages.conversation(account["account"], euid, RECENT, True)
        rows += [message_row(i) for i in reversed(items)]  # oldest first, as stored
    rows.sort(key=lambda r: (r.get("send_time") or 0))
    logger.info("sidebar customer", extra={"servicer": userid, "external_userid": euid,
                                            "accounts": [a["account"] for a in view["accounts"]]})
    return _json({"external_userid": euid, **view,
                  "messages": [{**r, "summary": summary(r)} for r in rows[-RECENT:]]})


@app.post("/sidebar/upgrade")
def upgrade() -> Response:
    """升级服务 from the sidebar: the servicer offers themself as a contact to the current customer,
    recorded, counted and announced like every offer (kefu.routing.upgrades)."""
    from kefu.events import publisher
    from kefu.routing.accounting import Accounting
    from kefu.routing.outbound import UpgradeOffer
    from kefu.routing.sending import Said
    from kefu.routing.upgrades import Upgrader
    from kefu.store.stats import StatsStore

    userid = servicer()
    try:
        body = json.loads(app.current_event.decoded_body or "{}")
    except ValueError:
        body = None
    euid = body.get("external_userid") if isinstance(body, dict) else None
    if not isinstance(euid, str) or not is_external_userid(euid):
        raise HttpError(400, "invalid_external_userid", 'the body is {"external_userid": <the current customer>}')
    accounts = cached("accounts", lambda: [str(a["open_kfid"]) for a in kf.account_list(wecom())])
    served = accounts_served(lambda k: cached(f"roster:{k}", lambda: kf.duty_roster(wecom(), k)), accounts, userid)
    sessions = SessionStore(settings.state_table)
    open_sessions = [(k, s) for k in served if (s := sessions.get(k, euid)).state is not None]
    if not open_sessions:
        raise Denied(403, "this customer has written to none of the kf accounts you serve")
    open_kfid, session = max(open_sessions, key=lambda pair: pair[1].window_at or 0)  # the latest conversation
    accounting = Accounting(StatsStore(settings.state_table), settings.stats_timezone,
                            publisher(settings.event_bus or None, time.time))
    result = Upgrader(wecom(), messages, accounting).offer(
        Said(open_kfid, euid, f"sidebar ({userid})", f"sidebar-{time.time_ns()}"),
        UpgradeOffer(member=userid, wording=settings.upgrade_wording), session.scene, userid)
    logger.info("sidebar upgrade", extra={"servicer": userid, "external_userid": euid, "open_kfid": open_kfid,
                                          "outcome": str(result.outcome)})
    return _json({"outcome": str(result.outcome), "detail": result.detail}, 200 if str(result.outcome) == "sent" else 409)


@app.exception_handler(HttpError)
def bad_request(exc: HttpError) -> Response:
    return exc.response()


@app.exception_handler(Denied)
def denied(exc: Denied) -> Response:
    return error_response(exc.status, "unauthorized" if exc.status == 401 else "forbidden", exc.message)


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> Any:
    if settings.mode == "provider":  # a suite's sign-in and JS-SDK are per corp: not built yet
        from kefu.errors import error_body

        return {"statusCode": 404, "headers": {"Content-Type": "application/json"}, "isBase64Encoded": False,
                "body": error_body("sidebar_not_available", "the servicer sidebar is not served in provider mode yet")}
    return app.resolve(event, context)
