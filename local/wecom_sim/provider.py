"""WeCom's service-provider side (服务商): a suite serving many authorized corps, over real HTTP.

``ProviderSimulator`` stands in for ``qyapi.weixin.qq.com`` as a third-party app (第三方应用) or
a custom app built on the provider's behalf (代开发自建应用, ``app_kind="custom_app"``) sees it.
It keeps one full ``WeComSimulator`` per authorized corp (``add_corp``, ``corp``), built with the
suite's callback token and EncodingAESKey and the corp's id as receiveid, and with the provider's
data callback URL: a corp's kf_msg_or_event callbacks are the suite's data callbacks. Clients
only ever talk to the provider's ``base_url``:

* ``/cgi-bin/service/get_suite_token``, ``get_pre_auth_code``, ``set_session_info``,
  ``get_permanent_code``, ``get_corp_token`` and ``get_auth_info`` are answered here;
* ``/cgi-bin/gettoken`` goes to the corp its ``corpid`` names (a custom app's secret there is its
  permanent code);
* every other ``/cgi-bin/...`` call goes, in-process, to the corp simulator that issued its
  ``access_token``;
* ``/sim/<action>`` are admin actions (``{"ok": true, "result": ...}``, as WeComSimulator's);
  ``/sim/corp/<corpid>/<action>`` and ``/corp/<corpid>/sim/<action>`` are that corp's own admin
  actions (``SimAdmin(provider.corp_admin_url(corpid))`` drives its customers from another
  process).

Command callbacks (suite_ticket, create_auth, change_auth, cancel_auth, reset_permanent_code) are
POSTed to the command URL, encrypted with the suite token and key and receiveid = suite_id, in an
envelope whose ToUserName is the suite_id and whose AgentID is empty.

Error codes (WeCom's global list): 40083 wrong suite_id, 40080 wrong suite_secret, 40085 a
suite_ticket unknown, older than the one before the latest, or over 30 minutes old; 41022 no
suite_access_token, 40082 an unknown one, 42009 an expired one; 40077 an unknown pre_auth_code,
42007 an expired one; 40078 an auth_code unknown, used or over 10 minutes old; 41025 no
permanent_code, 40084 a wrong or revoked one, an unknown corp, or a corp that cancelled.

Choices made where WeCom documents nothing:

* The suite secret is checked before the ticket (40080 wins over 40085), the suite_id first.
* Each get_suite_token / get_corp_token / gettoken mints a new token; the older ones stay valid
  until they expire. ``suite_token_count`` and ``corp_token_count(corpid)`` count every call
  (refused ones too), as ``gettoken_count`` does.
* ``get_corp_token`` on a custom-app suite answers 40086: custom apps get their tokens from
  ``gettoken`` with corpid and the permanent code. A third-party corp's own ``gettoken`` secret
  is unknowable (random): gettoken there answers 40001. An unknown corpid answers 40013.
* ``cancel_auth`` revokes the permanent code and clears every access token of the corp (calls
  with them answer 40014, as a token no corp issued), switches its automatic callbacks off and
  keeps its data for inspection. A later ``authorize`` of the corp starts over.
* ``authorize`` of a corp already authorized (a permanent code held, not cancelled) raises
  ValueError: WeCom sends change_auth then. ``set_session_info`` ``auth_type`` (0 formal, 1 test)
  is kept per pre_auth_code and recorded for the corp when ``authorize`` names that code.
* ``reset_permanent_code`` (custom apps only): the old permanent code works until the new
  AuthCode is exchanged; its tokens stay valid until they expire.
* ``kf_account_auth_change`` sets manage_privilege of the named accounts (which must exist) and
  sends one ``AuthAddOpenKfId`` / ``AuthDelOpenKfId`` element per id, as WeCom's examples show.
* Without a command URL an event is not POSTed: it is recorded with status None. A status 0 is
  a transport failure. WeCom wants ``success`` within 1 s; each record keeps the status, the body
  and the elapsed seconds so a test can check.
* ``auto_ticket_seconds`` pushes a ticket from a daemon thread at start and then every N seconds
  (WeCom: every 10 minutes).
"""

from __future__ import annotations

import hmac
import inspect
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

import httpx

from local.wecom_sim.callbacks import _cdata
from local.wecom_sim.core import WXBizMsgCrypt
from local.wecom_sim.server import Response, _Handler, _json_response, _Server
from local.wecom_sim.simulator import WeComSimulator
from local.wecom_sim.state import (
    ACCESS_TOKEN_TTL,
    DEFAULT_EGRESS_IP,
    ERRMSG,
    UNICODE_ESCAPE_RE,
    ApiError,
)

DEMO_SUITE_ID = "wwsuitekefu000001"
DEMO_SUITE_SECRET = "KefuDemoSuiteSecret000000000000000000000000"  # nosec B105 - public demo value
DEMO_SUITE_TOKEN = "KefuDemoSuiteToken"  # nosec B105 - public demo value
DEMO_SUITE_AES_KEY = "KefuDemoSuiteEncodingAesKey0000000000000000"  # nosec B105 - public demo value

SUITE_TOKEN_TTL = 7200
SUITE_TICKET_TTL = 1800  # a ticket works 30 minutes, and only the latest and the one before it
PRE_AUTH_CODE_TTL = 1200
AUTH_CODE_TTL = 600
FIRST_AGENT_ID = 1000002

AppKind = Literal["third_party", "custom_app"]

PROVIDER_ERRMSG: dict[int, str] = {
    **ERRMSG,
    40077: "invalid pre_auth_code",
    40078: "invalid auth_code",
    40080: "invalid suite_secret",
    40082: "invalid suite_access_token",
    40083: "invalid suite_id",
    40084: "invalid permanent_code",
    40085: "invalid suite_ticket",
    40086: "invalid third app id: custom apps get tokens from gettoken",
    41022: "suite_access_token missing",
    41023: "suite_ticket missing",
    41025: "permanent_code missing",
    42007: "pre_auth_code expired",
    42009: "suite_access_token expired",
}

# The service endpoints: path under /cgi-bin/service/ -> (HTTP method, handler, needs a suite token).
SERVICE_ROUTES: dict[str, tuple[str, str, bool]] = {
    "get_suite_token": ("POST", "_svc_get_suite_token", False),
    "get_pre_auth_code": ("GET", "_svc_get_pre_auth_code", True),
    "set_session_info": ("POST", "_svc_set_session_info", True),
    "get_permanent_code": ("POST", "_svc_get_permanent_code", True),
    "get_corp_token": ("POST", "_svc_get_corp_token", True),
    "get_auth_info": ("POST", "_svc_get_auth_info", True),
}
PROVIDER_ADMIN_ACTIONS = frozenset(
    {"provider_state", "push_suite_ticket", "authorize", "change_auth", "cancel_auth", "reset_permanent_code",
     "kf_account_auth_change", "add_corp", "set_callback_urls", "advance", "corp_token_count"}
)


@dataclass
class _Auth:
    """One corp's authorization of the suite."""

    corp_id: str
    corp_name: str
    agentid: int
    sim: WeComSimulator
    permanent_code: str | None = None
    cancelled: bool = False
    state: str = ""
    auth_type: int = 0  # set_session_info: 0 formal, 1 test
    token_calls: int = 0  # get_corp_token calls naming the corp


@dataclass
class _AuthCode:
    corp_id: str
    issued_at: float
    kind: str  # "create_auth" | "reset_permanent_code"


@dataclass
class _PreAuthCode:
    issued_at: float
    session_info: dict[str, Any] = field(default_factory=dict)


def _random_secret(length: int = 43) -> str:
    return secrets.token_urlsafe(length)[:length]


# The corp simulators are reused as they are; these helpers are the only places that reach into them.


def _corp_holds_token(sim: WeComSimulator, token: str) -> bool:
    with sim._lock:  # noqa: SLF001 - the provider owns its corp simulators
        return token in sim._tokens  # noqa: SLF001


def _mint_corp_token(sim: WeComSimulator) -> str:
    token = secrets.token_urlsafe(48)
    with sim._lock:  # noqa: SLF001
        sim._tokens[token] = sim.now() + ACCESS_TOKEN_TTL  # noqa: SLF001
    return token


def _revoke_corp(sim: WeComSimulator) -> None:
    with sim._lock:  # noqa: SLF001
        sim._tokens.clear()  # noqa: SLF001
        sim.auto_callback = False
        sim.corp_secret = _random_secret()


def _set_manage_privilege(sim: WeComSimulator, added: list[str], removed: list[str]) -> None:
    with sim._lock:  # noqa: SLF001
        accounts = [(sim._require_account(kfid), True) for kfid in added]  # noqa: SLF001
        accounts += [(sim._require_account(kfid), False) for kfid in removed]  # noqa: SLF001
        for account, managed in accounts:
            account.manage_privilege = managed


class ProviderSimulator:
    """The provider side of WeCom for one suite; one lock guards its state (each corp has its own)."""

    def __init__(
        self,
        suite_id: str = DEMO_SUITE_ID,
        suite_secret: str = DEMO_SUITE_SECRET,
        token: str = DEMO_SUITE_TOKEN,
        encoding_aes_key: str = DEMO_SUITE_AES_KEY,
        host: str = "127.0.0.1",
        port: int = 0,
        app_kind: AppKind = "third_party",
        clock: Callable[[], float] = time.time,
        auto_ticket_seconds: float | None = None,
        callback_timeout: float = 5.0,
    ) -> None:
        if app_kind not in ("third_party", "custom_app"):
            raise ValueError("app_kind is 'third_party' or 'custom_app'")
        if auto_ticket_seconds is not None and auto_ticket_seconds <= 0:
            raise ValueError("auto_ticket_seconds must be positive (or None)")
        self.suite_id = suite_id
        self.suite_secret = suite_secret
        self.token = token
        self.encoding_aes_key = encoding_aes_key
        self.host = host
        self.port = port
        self.app_kind: AppKind = app_kind
        self.auto_ticket_seconds = auto_ticket_seconds
        self.callback_timeout = callback_timeout
        self._clock = clock
        self._offset = 0.0
        self._crypt = WXBizMsgCrypt(token, encoding_aes_key, suite_id)
        self._lock = threading.RLock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._ticket_thread: threading.Thread | None = None
        self._ticket_stop = threading.Event()
        self._http: httpx.Client | None = None
        self.base_url = ""
        self.command_url: str | None = None
        self.data_url: str | None = None

        # Inspection.
        self.suite_tickets: list[str] = []  # every ticket pushed, oldest first
        self.command_callbacks: list[dict[str, Any]] = []
        self.calls: list[dict[str, Any]] = []  # the service endpoints' calls (no secrets)
        self.suite_token_count = 0

        self._ticket_times: dict[str, float] = {}
        self._suite_tokens: dict[str, float] = {}  # suite_access_token -> expiry
        self._pre_auth_codes: dict[str, _PreAuthCode] = {}
        self._auth_codes: dict[str, _AuthCode] = {}
        self._corps: dict[str, _Auth] = {}

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> str:
        """Serve in a daemon thread (and start the corp simulators); return the base URL."""
        with self._lock:
            if self._server is not None:
                return self.base_url
            server = _Server((self.host, self.port), _Handler)  # the corp simulator's server, serving this
            server.simulator = self
            self._server = server
            self._http = httpx.Client(timeout=self.callback_timeout)
            self._thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="wecom-provider-sim", daemon=True
            )
            self._thread.start()
            self.base_url = f"http://{self.host}:{server.server_address[1]}"
            for auth in self._corps.values():
                auth.sim.start()
            if self.auto_ticket_seconds is not None:
                self._ticket_stop.clear()
                self._ticket_thread = threading.Thread(
                    target=self._push_tickets, args=(self.auto_ticket_seconds,), name="wecom-suite-ticket", daemon=True
                )
                self._ticket_thread.start()
            return self.base_url

    def stop(self) -> None:
        self._ticket_stop.set()
        if self._ticket_thread is not None:
            self._ticket_thread.join(timeout=5)
            self._ticket_thread = None
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        with self._lock:
            sims = [auth.sim for auth in self._corps.values()]
            http, self._http = self._http, None
        for sim in sims:
            sim.stop()
        if http is not None:
            http.close()

    def __enter__(self) -> ProviderSimulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _push_tickets(self, every: float) -> None:
        while not self._ticket_stop.is_set():
            self.push_suite_ticket()
            if self._ticket_stop.wait(every):
                return

    # ------------------------------------------------------------------ clock

    def now(self) -> float:
        return self._clock() + self._offset

    def advance(self, seconds: float) -> float:
        """Move the clock forward (every corp simulator's too: they read this clock)."""
        with self._lock:
            self._offset += float(seconds)
            return self.now()

    # ------------------------------------------------------------------ corps

    def set_callback_urls(self, command_url: str | None, data_url: str | None) -> None:
        """Set the suite's command and data callback URLs (None: none); the data URL applies to
        every corp simulator, present and future."""
        with self._lock:
            self.command_url = command_url or None
            self.data_url = data_url or None
            for auth in self._corps.values():
                auth.sim.set_callback_url(self.data_url)

    def add_corp(self, corp_id: str, corp_name: str | None = None) -> WeComSimulator:
        """The corp's simulator, made (and started, if the provider runs) on first use."""
        if not corp_id:
            raise ValueError("corp_id is required")
        with self._lock:
            auth = self._corps.get(corp_id)
            if auth is None:
                sim = WeComSimulator(
                    corp_id=corp_id,
                    corp_secret=_random_secret(),
                    token=self.token,
                    encoding_aes_key=self.encoding_aes_key,
                    host=self.host,
                    clock=self.now,
                )
                sim.set_callback_url(self.data_url)
                auth = _Auth(corp_id, corp_name or f"Corp {corp_id}", FIRST_AGENT_ID + len(self._corps), sim)
                self._corps[corp_id] = auth
                if self._server is not None:
                    sim.start()
            elif corp_name:
                auth.corp_name = corp_name
            return auth.sim

    def corp(self, corp_id: str) -> WeComSimulator:
        return self._auth(corp_id).sim

    def corps(self) -> list[str]:
        with self._lock:
            return list(self._corps)

    def corp_admin_url(self, corp_id: str) -> str:
        """A base URL for ``SimAdmin`` that drives this corp's simulator through the provider."""
        self._auth(corp_id)
        return f"{self.base_url}/corp/{corp_id}"

    def permanent_code(self, corp_id: str) -> str | None:
        """The corp's current permanent code (None before get_permanent_code, or once cancelled)."""
        with self._lock:
            return self._auth(corp_id).permanent_code

    def is_cancelled(self, corp_id: str) -> bool:
        with self._lock:
            return self._auth(corp_id).cancelled

    def corp_token_count(self, corp_id: str) -> int:
        with self._lock:
            return self._auth(corp_id).token_calls

    def _auth(self, corp_id: str) -> _Auth:
        with self._lock:
            auth = self._corps.get(corp_id)
            if auth is None:
                raise KeyError(f"unknown corp {corp_id}")
            return auth

    # ------------------------------------------------------------------ command events

    def push_suite_ticket(self) -> str:
        """A new suite_ticket, kept as the latest and POSTed to the command URL."""
        ticket = secrets.token_urlsafe(48)
        with self._lock:
            now = self.now()
            self.suite_tickets.append(ticket)
            self._ticket_times[ticket] = now
        self._post_command("suite_ticket", {"SuiteTicket": ticket}, now)
        return ticket

    def authorize(self, corp_id: str, corp_name: str | None = None, state: str = "",
                  pre_auth_code: str | None = None) -> str:
        """A corp admin installs the app: a one-time auth_code (10 minutes) is issued and a
        create_auth event POSTed. Returns the auth_code. With ``pre_auth_code`` (as from
        get_pre_auth_code) the install follows that code and its session_info."""
        with self._lock:
            session: dict[str, Any] = {}
            if pre_auth_code is not None:
                held = self._pre_auth_codes.get(pre_auth_code)
                if held is None or self.now() - held.issued_at >= PRE_AUTH_CODE_TTL:
                    raise ValueError("unknown or expired pre_auth_code")
                session = held.session_info
            self.add_corp(corp_id, corp_name)
            auth = self._corps[corp_id]
            if auth.permanent_code is not None and not auth.cancelled:
                raise ValueError(f"{corp_id} has already authorized the suite")
            auth.cancelled = False
            auth.state = state
            auth.auth_type = int(session.get("auth_type", 0))
            auth.sim.auto_callback = True
            code = self._issue_auth_code(corp_id, "create_auth")
            now = self.now()
        self._post_command("create_auth", {"AuthCode": code, "State": state}, now)
        return code

    def change_auth(self, corp_id: str, state: str = "") -> int | None:
        """The corp admin changed the app's authorization; returns the callback's HTTP status."""
        with self._lock:
            self._active(corp_id)
            now = self.now()
        return self._post_command("change_auth", {"AuthCorpId": corp_id, "State": state}, now)

    def cancel_auth(self, corp_id: str) -> int | None:
        """The corp uninstalls the app: its permanent code and access tokens are revoked, its
        automatic callbacks stop; its data stays. Returns the callback's HTTP status."""
        with self._lock:
            auth = self._active(corp_id)
            auth.cancelled = True
            auth.permanent_code = None
            for code in [c for c, held in self._auth_codes.items() if held.corp_id == corp_id]:
                del self._auth_codes[code]
            _revoke_corp(auth.sim)
            now = self.now()
        return self._post_command("cancel_auth", {"AuthCorpId": corp_id}, now)

    def reset_permanent_code(self, corp_id: str) -> str:
        """A custom app's secret is regenerated: a new auth_code and a reset_permanent_code event.
        Returns the auth_code (get_permanent_code then gives the new permanent code)."""
        if self.app_kind != "custom_app":
            raise ValueError("reset_permanent_code applies to custom apps (app_kind='custom_app')")
        with self._lock:
            auth = self._active(corp_id)
            if auth.permanent_code is None:
                raise ValueError(f"{corp_id} has no permanent code yet")
            code = self._issue_auth_code(corp_id, "reset_permanent_code")
            now = self.now()
        self._post_command("reset_permanent_code", {"AuthCode": code}, now)
        return code

    def kf_account_auth_change(self, corp_id: str, added: list[str] | tuple[str, ...] = (),
                               removed: list[str] | tuple[str, ...] = ()) -> list[int]:
        """The corp gives (``added``) or takes back (``removed``) kf accounts from the app: their
        manage_privilege changes and a kf_account_auth_change event goes to the data URL
        (receiveid = the corp). Returns the HTTP statuses."""
        if not added and not removed:
            raise ValueError("name at least one open_kfid in added or removed")
        with self._lock:
            sim = self._active(corp_id).sim
            _set_manage_privilege(sim, list(added), list(removed))
            now = int(self.now())
        xml = (
            f"<xml><ToUserName>{_cdata(corp_id)}</ToUserName><FromUserName>{_cdata('sys')}</FromUserName>"
            f"<CreateTime>{now}</CreateTime><MsgType>{_cdata('event')}</MsgType>"
            f"<Event>{_cdata('kf_account_auth_change')}</Event>"
            + "".join(f"<AuthAddOpenKfId>{_cdata(kfid)}</AuthAddOpenKfId>" for kfid in added)
            + "".join(f"<AuthDelOpenKfId>{_cdata(kfid)}</AuthDelOpenKfId>" for kfid in removed)
            + "</xml>"
        )
        return sim.post_callback_xml(xml)

    def _active(self, corp_id: str) -> _Auth:
        auth = self._auth(corp_id)
        if auth.cancelled:
            raise ValueError(f"{corp_id} cancelled its authorization")
        return auth

    def _issue_auth_code(self, corp_id: str, kind: str) -> str:
        code = secrets.token_urlsafe(48)
        self._auth_codes[code] = _AuthCode(corp_id, self.now(), kind)
        return code

    # ------------------------------------------------------------------ command callback wire

    def command_xml(self, info_type: str, fields: dict[str, str], timestamp: float | None = None) -> str:
        """The plaintext XML of a command event (SuiteId, InfoType, TimeStamp, then ``fields``)."""
        stamp = int(self.now() if timestamp is None else timestamp)
        head = (
            f"<xml><SuiteId>{_cdata(self.suite_id)}</SuiteId><InfoType>{_cdata(info_type)}</InfoType>"
            f"<TimeStamp>{stamp}</TimeStamp>"
        )
        return head + "".join(f"<{name}>{_cdata(value)}</{name}>" for name, value in fields.items()) + "</xml>"

    def signed_command_request(self, xml_plaintext: str) -> tuple[dict[str, str], bytes]:
        """(query params, body) of an encrypted command callback POST carrying ``xml_plaintext``."""
        encrypted = self._crypt.encrypt(xml_plaintext)
        timestamp, nonce = str(int(self.now())), str(secrets.randbelow(9 * 10**9) + 10**9)
        body = (
            f"<xml><ToUserName>{_cdata(self.suite_id)}</ToUserName>"
            f"<Encrypt>{_cdata(encrypted)}</Encrypt><AgentID>{_cdata('')}</AgentID></xml>"
        )
        query = {"msg_signature": self._crypt.sign(timestamp, nonce, encrypted), "timestamp": timestamp, "nonce": nonce}
        return query, body.encode("utf-8")

    def signed_command_echo(self, echostr_plain: str) -> dict[str, str]:
        """Query params of a GET URL verification of the command URL (suite crypto)."""
        encrypted = self._crypt.encrypt(echostr_plain)
        timestamp, nonce = str(int(self.now())), str(secrets.randbelow(9 * 10**9) + 10**9)
        return {"msg_signature": self._crypt.sign(timestamp, nonce, encrypted), "timestamp": timestamp,
                "nonce": nonce, "echostr": encrypted}

    def _post_command(self, info_type: str, fields: dict[str, str], timestamp: float) -> int | None:
        """POST a command event (no lock held: the receiver may call the provider back)."""
        xml = self.command_xml(info_type, fields, timestamp)
        with self._lock:
            url, client = self.command_url, self._http
        record: dict[str, Any] = {"info_type": info_type, "url": url, "xml": xml, "query": {}, "status": None,
                                  "body": None, "elapsed": None, "time": timestamp}
        if url:
            query, body = self.signed_command_request(xml)
            record["query"] = query
            own = client is None
            http = client or httpx.Client(timeout=self.callback_timeout)
            started = time.monotonic()
            try:
                response = http.post(url, params=query, content=body, headers={"Content-Type": "text/xml"})
                record["status"], record["body"] = response.status_code, response.text[:200]
            except httpx.HTTPError:
                record["status"] = 0
            finally:
                record["elapsed"] = time.monotonic() - started
                if own:
                    http.close()
        with self._lock:
            self.command_callbacks.append(record)
        status: int | None = record["status"]
        return status

    # ------------------------------------------------------------------ inspection

    def provider_state(self) -> dict[str, Any]:
        with self._lock:
            return {
                "base_url": self.base_url,
                "suite_id": self.suite_id,
                "app_kind": self.app_kind,
                "now": self.now(),
                "command_url": self.command_url,
                "data_url": self.data_url,
                "suite_token_count": self.suite_token_count,
                "suite_tickets": len(self.suite_tickets),
                "latest_suite_ticket": self.suite_tickets[-1] if self.suite_tickets else None,
                "command_callbacks": [
                    {"info_type": c["info_type"], "status": c["status"], "time": c["time"]} for c in self.command_callbacks
                ],
                "corps": [
                    {
                        "corp_id": a.corp_id,
                        "corp_name": a.corp_name,
                        "agentid": a.agentid,
                        "authorized": a.permanent_code is not None,
                        "cancelled": a.cancelled,
                        "auth_type": a.auth_type,
                        "state": a.state,
                        "corp_token_count": a.token_calls,
                        "base_url": a.sim.base_url,
                    }
                    for a in self._corps.values()
                ],
            }

    # ------------------------------------------------------------------ HTTP entry

    def _handle_http(self, method: str, raw_path: str, body: bytes) -> Response:
        parts = urlsplit(raw_path)
        path = parts.path
        query = {key: values[0] for key, values in parse_qs(parts.query, keep_blank_values=True).items()}
        if path == "/sim" or path.startswith("/sim/"):
            return self._handle_admin(method, path[len("/sim/") :].strip("/"), body)
        if path.startswith("/corp/"):
            corp_id, _, rest = path[len("/corp/") :].partition("/")
            if rest.startswith("sim/"):
                return self._handle_corp_admin(corp_id, method, rest[len("sim/") :].strip("/"), body)
        if path.startswith("/cgi-bin/service/"):
            return self._handle_service(method, path[len("/cgi-bin/service/") :].strip("/"), query, body)
        if path.rstrip("/") == "/cgi-bin/gettoken":
            with self._lock:
                auth = self._corps.get(query.get("corpid", ""))
            if auth is None:
                return self._error_response(40013)
            return auth.sim._handle_http(method, raw_path, body)  # noqa: SLF001 - its corp simulator
        if path.startswith("/cgi-bin/"):
            token = query.get("access_token", "")
            if not token:
                return self._error_response(41001)
            with self._lock:
                owners = [a for a in self._corps.values() if not a.cancelled and _corp_holds_token(a.sim, token)]
            if not owners:
                return self._error_response(40014)
            return owners[0].sim._handle_http(method, raw_path, body)  # noqa: SLF001
        return _json_response({"errcode": 40058, "errmsg": f"unknown path {path}"}, 404)

    def _handle_service(self, method: str, api: str, query: dict[str, str], raw: bytes) -> Response:
        route = SERVICE_ROUTES.get(api)
        if route is None:
            return _json_response(self._error_body(40058, f"api service/{api} not found"), 404)
        wanted, handler, needs_token = route
        if api == "get_suite_token":
            with self._lock:
                self.suite_token_count += 1
        data: dict[str, Any] = {}
        try:
            if method != wanted:
                raise ApiError(43001 if wanted == "GET" else 43002)
            if needs_token:
                self._check_suite_token(query.get("suite_access_token", ""))
            if method == "POST":
                data = self._parse_body(raw)
            with self._lock:
                result = getattr(self, handler)(data)
            errcode, response = 0, _json_response({"errcode": 0, "errmsg": "ok", **result})
        except ApiError as exc:
            errcode, response = exc.errcode, self._error_response(exc.errcode, exc.detail)
        with self._lock:
            self.calls.append({"path": f"service/{api}", "method": method, "errcode": errcode, "time": self.now()})
        return response

    def _handle_admin(self, method: str, action: str, raw: bytes) -> Response:
        if action.startswith("corp/"):
            corp_id, _, corp_action = action[len("corp/") :].partition("/")
            return self._handle_corp_admin(corp_id, method, corp_action, raw)
        if action == "state":
            action = "provider_state"
        if action not in PROVIDER_ADMIN_ACTIONS:
            return _json_response({"ok": False, "error": f"unknown action {action!r}"}, 404)
        if action == "provider_state" and method == "GET":
            return _json_response(self.provider_state())
        if method != "POST":
            return _json_response({"ok": False, "error": f"use POST /sim/{action}"}, 405)
        try:
            args = json.loads(raw or b"{}")
        except ValueError:
            return _json_response({"ok": False, "error": "body is not JSON"}, 400)
        if not isinstance(args, dict):
            return _json_response({"ok": False, "error": "body must be a JSON object of arguments"}, 400)
        function = self._admin_add_corp if action == "add_corp" else getattr(self, action)
        try:
            inspect.signature(function).bind(**args)
        except TypeError as exc:
            return _json_response({"ok": False, "error": f"bad arguments: {exc}"}, 400)
        try:
            result = function(**args)
        except (ValueError, KeyError, TypeError) as exc:
            return _json_response({"ok": False, "error": str(exc)}, 400)
        return _json_response({"ok": True, "result": result})

    def _admin_add_corp(self, corp_id: str, corp_name: str | None = None) -> dict[str, str]:
        sim = self.add_corp(corp_id, corp_name)
        return {"corp_id": corp_id, "base_url": sim.base_url}

    def _handle_corp_admin(self, corp_id: str, method: str, action: str, raw: bytes) -> Response:
        with self._lock:
            auth = self._corps.get(corp_id)
        if auth is None:
            return _json_response({"ok": False, "error": f"unknown corp {corp_id!r}"}, 404)
        return auth.sim._handle_admin(method, action, raw)  # noqa: SLF001 - its corp simulator

    # ------------------------------------------------------------------ service endpoints (lock held)

    def _svc_get_suite_token(self, data: dict[str, Any]) -> dict[str, Any]:
        if data.get("suite_id") != self.suite_id:
            raise ApiError(40083)
        secret = data.get("suite_secret")
        if not isinstance(secret, str) or not hmac.compare_digest(secret.encode(), self.suite_secret.encode()):
            raise ApiError(40080)
        ticket = data.get("suite_ticket")
        if not ticket:
            raise ApiError(41023)
        issued = self._ticket_times.get(ticket) if isinstance(ticket, str) else None
        if issued is None or ticket not in self.suite_tickets[-2:] or self.now() - issued >= SUITE_TICKET_TTL:
            raise ApiError(40085)
        token = secrets.token_urlsafe(48)
        self._suite_tokens[token] = self.now() + SUITE_TOKEN_TTL
        return {"suite_access_token": token, "expires_in": SUITE_TOKEN_TTL}

    def _svc_get_pre_auth_code(self, _data: dict[str, Any]) -> dict[str, Any]:
        code = secrets.token_urlsafe(32)
        self._pre_auth_codes[code] = _PreAuthCode(self.now())
        return {"pre_auth_code": code, "expires_in": PRE_AUTH_CODE_TTL}

    def _svc_set_session_info(self, data: dict[str, Any]) -> dict[str, Any]:
        code = data.get("pre_auth_code")
        held = self._pre_auth_codes.get(code) if isinstance(code, str) else None
        if held is None:
            raise ApiError(40077)
        if self.now() - held.issued_at >= PRE_AUTH_CODE_TTL:
            raise ApiError(42007)
        info = data.get("session_info")
        if not isinstance(info, dict):
            raise ApiError(40058, "invalid parameter: session_info must be an object")
        auth_type = info.get("auth_type", 0)
        appid = info.get("appid", [])
        if auth_type not in (0, 1) or isinstance(auth_type, bool):
            raise ApiError(40058, "invalid parameter: auth_type is 0 (formal) or 1 (test)")
        if not isinstance(appid, list) or not all(isinstance(a, int) and not isinstance(a, bool) for a in appid):
            raise ApiError(40058, "invalid parameter: appid must be a list of integers")
        held.session_info = {"appid": list(appid), "auth_type": auth_type}
        return {}

    def _svc_get_permanent_code(self, data: dict[str, Any]) -> dict[str, Any]:
        code = data.get("auth_code")
        held = self._auth_codes.pop(code, None) if isinstance(code, str) else None
        if held is None or self.now() - held.issued_at >= AUTH_CODE_TTL:
            raise ApiError(40078)
        auth = self._corps[held.corp_id]
        if auth.cancelled:
            raise ApiError(40078)
        permanent = _random_secret()
        auth.permanent_code = permanent
        if self.app_kind == "custom_app":
            with auth.sim._lock:  # noqa: SLF001 - a custom app's secret at the corp is its permanent code
                auth.sim.corp_secret = permanent
        return {
            "access_token": _mint_corp_token(auth.sim),
            "expires_in": ACCESS_TOKEN_TTL,
            "permanent_code": permanent,
            "auth_corp_info": self._corp_info(auth),
            "auth_info": self._auth_info(auth),
            "auth_user_info": {"userid": "admin", "open_userid": f"wo{auth.corp_id}admin", "name": "admin",
                               "avatar": ""},
            "state": auth.state,
        }

    def _svc_get_corp_token(self, data: dict[str, Any]) -> dict[str, Any]:
        auth = self._authorized(data, count=True)
        if self.app_kind == "custom_app":
            raise ApiError(40086)
        return {"access_token": _mint_corp_token(auth.sim), "expires_in": ACCESS_TOKEN_TTL}

    def _svc_get_auth_info(self, data: dict[str, Any]) -> dict[str, Any]:
        auth = self._authorized(data)
        return {"auth_corp_info": self._corp_info(auth), "auth_info": self._auth_info(auth)}

    def _authorized(self, data: dict[str, Any], count: bool = False) -> _Auth:
        """The corp ``auth_corpid`` names, if ``permanent_code`` is its current one (else 40084)."""
        corp_id = data.get("auth_corpid")
        auth = self._corps.get(corp_id) if isinstance(corp_id, str) else None
        if count and auth is not None:
            auth.token_calls += 1
        permanent = data.get("permanent_code")
        if not permanent or not isinstance(permanent, str):
            raise ApiError(41025)
        if auth is None or auth.cancelled or auth.permanent_code is None \
                or not hmac.compare_digest(permanent.encode(), auth.permanent_code.encode()):
            raise ApiError(40084)
        return auth

    def _corp_info(self, auth: _Auth) -> dict[str, Any]:
        return {
            "corpid": auth.corp_id,
            "corp_name": auth.corp_name,
            "corp_type": "verified",
            "corp_square_logo_url": "",
            "corp_user_max": 200,
            "corp_full_name": auth.corp_name,
            "subject_type": 1,
            "verified_end_time": int(self.now()) + 365 * 86400,
            "corp_wxqrcode": "",
            "corp_scale": "1-50人",
            "corp_industry": "IT服务",
            "corp_sub_industry": "计算机软件/硬件/信息服务",
        }

    def _auth_info(self, auth: _Auth) -> dict[str, Any]:
        return {
            "agent": [
                {
                    "agentid": auth.agentid,
                    "name": "Kefu",
                    "round_logo_url": "",
                    "square_logo_url": "",
                    "auth_mode": 0,
                    "is_customized_app": self.app_kind == "custom_app",
                    "privilege": {"level": 1, "allow_party": [1], "allow_user": [], "allow_tag": [],
                                  "extra_party": [], "extra_user": [], "extra_tag": []},
                }
            ]
        }

    # ------------------------------------------------------------------ request plumbing

    def _check_suite_token(self, token: str) -> None:
        if not token:
            raise ApiError(41022)
        with self._lock:
            expires_at = self._suite_tokens.get(token)
            if expires_at is None:
                raise ApiError(40082)
            if self.now() >= expires_at:
                raise ApiError(42009)

    def _error_body(self, errcode: int, detail: str | None = None) -> dict[str, Any]:
        text = detail or PROVIDER_ERRMSG.get(errcode, "error")
        hint = f"{int(self.now())}_{secrets.token_hex(8)}"
        errmsg = (
            f"{text}, hint: [{hint}], from ip: {DEFAULT_EGRESS_IP}, "
            f"more info at https://open.work.weixin.qq.com/devtool/query?e={errcode}"
        )
        return {"errcode": errcode, "errmsg": errmsg}

    def _error_response(self, errcode: int, detail: str | None = None) -> Response:
        return _json_response(self._error_body(errcode, detail))

    @staticmethod
    def _parse_body(raw: bytes) -> dict[str, Any]:
        if UNICODE_ESCAPE_RE.search(raw):
            raise ApiError(40033)
        try:
            data = json.loads(raw.decode("utf-8")) if raw.strip() else {}
        except (UnicodeDecodeError, ValueError) as exc:
            raise ApiError(47001, "data format error: body is not UTF-8 JSON") from exc
        if not isinstance(data, dict):
            raise ApiError(47001, "data format error: body must be a JSON object")
        return data
