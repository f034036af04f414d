"""A local stand-in for the WeCom 微信客服 (kf) API, served over real HTTP.

The simulator keeps a corp with kf accounts, servicers, customers, sessions and a message log,
and answers the ``/cgi-bin/...`` endpoints the way the kf API does (see
``docs/wecom-kf-api.md`` in the shared docs for the rules it follows). Tests and the local stack
drive the customer side through Python methods (or the ``/sim/<action>`` admin endpoints from
another process) and inspect what a client did afterwards.

Choices made where WeCom documents nothing (kept in one place so clients can rely on them):

* ``kf/service_state/get`` for a customer with no session yet answers state 0 (new). A customer
  who only entered the chat has a session in state 0 too; an ended session stays 4 until the
  customer writes again.
* ``kf/service_state/trans`` and ``kf/send_msg`` for an external_userid the simulator never saw
  answer 40096 (invalid external userid).
* An illegal or no-op state transition answers 95016.
* A repeated ``msgid`` (send_msg or send_msg_on_event, unique per open_kfid) answers 40058 with
  "duplicate msgid" in errmsg; a malformed msgid answers 40058 "invalid msgid".
* ``send_msg_on_event`` with an unknown, used or expired code answers 40058 "invalid code"; a
  valid code whose session has left the state that produced it answers 95018.
* A forged, garbled or foreign (other open_kfid) sync cursor answers 40058 "invalid cursor".
* ``sync_msg`` ``limit`` 0 or absent means 1000, above 1000 is capped, negative is 40058.
* Wrong HTTP method answers 43001 (GET required) / 43002 (POST required); a body that is not a
  JSON object answers 47001; a body with ``\\uXXXX`` escapes answers 40033, as WeCom does.
* Unknown paths answer HTTP 404 with a JSON body carrying errcode 40058.
* A session does not end by itself after 48 h; sends then fail with 95002.
* Welcome codes are given on enter when the customer has neither received a welcome message nor
  written to that account within the last 48 h.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import inspect
import json
import re
import secrets
import string
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

try:
    from kefu.crypto import WXBizMsgCrypt
except ModuleNotFoundError:  # started as ``python -m local.wecom_sim`` without shared/ on the path
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "shared"))
    from kefu.crypto import WXBizMsgCrypt

DEMO_CORP_ID = "wwkefudemo0000001"
DEMO_CORP_SECRET = "KefuDemoCorpSecret0000000000000000000000000"  # nosec B105 - public demo value
DEMO_TOKEN = "KefuDemoCallbackToken"  # nosec B105 - public demo value
DEMO_AES_KEY = "KefuDemoEncodingAesKey000000000000000000000"
DEMO_AGENT_ID = "1000002"
DEFAULT_EGRESS_IP = "203.0.113.10"

ACCESS_TOKEN_TTL = 7200
CALLBACK_TOKEN_TTL = 600
RETENTION = 3 * 86400
MEDIA_TTL = 3 * 86400
SESSION_WINDOW = 48 * 3600
SEND_BUDGET = 5
WELCOME_CODE_TTL = 20
END_CODE_TTL = 20
REPLY_CODE_TTL = 48 * 3600
MAX_SYNC_LIMIT = 1000
MAX_BODY = 4 * 1024 * 1024

NEW, BOT, POOL, HUMAN, ENDED = 0, 1, 2, 3, 4
# Transitions the API may make (service_state/trans); 3 -> 3 means "to another servicer".
ALLOWED_TRANSITIONS: dict[int, frozenset[int]] = {
    NEW: frozenset({BOT, POOL, HUMAN, ENDED}),
    BOT: frozenset({POOL, HUMAN, ENDED}),
    POOL: frozenset({HUMAN, ENDED}),
    HUMAN: frozenset({HUMAN, ENDED}),
    ENDED: frozenset(),
}

SEND_MSGTYPES = frozenset(
    {"text", "image", "voice", "video", "file", "link", "miniprogram", "msgmenu", "location", "ca_link"}
)
MEDIA_MSGTYPES = ("image", "voice", "video", "file")
MENU_ITEM_TYPES = frozenset({"click", "view", "miniprogram", "text"})
# Message types each kind of send_msg_on_event code accepts.
CODE_MSGTYPES: dict[str, frozenset[str]] = {
    "welcome": frozenset({"text", "msgmenu"}),
    "pool": frozenset({"text"}),
    "pickup": frozenset({"text"}),
    "end": frozenset({"text", "msgmenu"}),
}

MSGID_RE = re.compile(r"[0-9A-Za-z_-]{1,32}")
SCENE_RE = re.compile(r"[0-9A-Za-z_-]*")
# A backslash-u escape not itself escaped: an odd run of backslashes followed by uXXXX.
UNICODE_ESCAPE_RE = re.compile(rb"(?<!\\)(?:\\\\)*\\u[0-9A-Fa-f]{4}")
ID_ALPHABET = string.ascii_letters + string.digits + "_-"

ERRMSG: dict[int, str] = {
    -1: "system busy",
    40001: "invalid credential",
    40007: "invalid media_id",
    40008: "invalid message type",
    40013: "invalid corpid",
    40014: "invalid access_token",
    40033: "invalid charset. please check your request, if include \\uxxxx will create fail!",
    40058: "invalid parameter",
    40096: "invalid external userid",
    41001: "access_token missing",
    42001: "access_token expired",
    43001: "require GET method",
    43002: "require POST method",
    45002: "content size out of limit",
    45009: "api freq out of limit",
    45033: "api concurrent out of limit",
    47001: "data format error",
    48002: "api forbidden",
    60020: "not allow to access from your ip",
    95000: "invalid open_kfid",
    95001: "send msg count limit",
    95002: "send msg time limit",
    95007: "invalid msg token",
    95008: "msgmenu item count out of limit",
    95009: "invalid msgmenu item type",
    95014: "user is not servicer",
    95016: "invalid service state transition",
    95018: "send msg session status invalid",
}

MEDIA_CONTENT_TYPES = {
    "image": ("image/jpeg", "jpg"),
    "voice": ("audio/amr", "amr"),
    "video": ("video/mp4", "mp4"),
    "file": ("application/octet-stream", "bin"),
}
ADMIN_ACTIONS = frozenset(
    {
        "add_account",
        "add_servicer",
        "set_servicer_status",
        "customer_enter",
        "customer_enter_via_link",
        "customer_says",
        "customer_sends_media",
        "servicer_says",
        "pickup",
        "transfer",
        "end_session",
        "reopen",
        "send_fail",
        "add_raw_item",
        "fire_callback",
        "inject_fault",
        "clear_faults",
        "set_callback_url",
        "advance",
        "expire_all_tokens",
        "configure",
    }
)
CONFIGURABLE = frozenset(
    {"page_cap", "empty_page_every", "tokenless_limit_per_minute", "ip_blocked", "egress_ip", "auto_callback"}
)


class ApiError(Exception):
    """An answer with a non-zero errcode; ``detail`` replaces the default errmsg text."""

    def __init__(self, errcode: int, detail: str | None = None) -> None:
        super().__init__(f"{errcode}: {detail or ERRMSG.get(errcode, 'error')}")
        self.errcode = errcode
        self.detail = detail


@dataclass
class _Servicer:
    userid: str
    status: int = 0  # servicer/list encoding: 0 receiving, 1 stopped
    stop_type: int = 0


@dataclass
class _Account:
    open_kfid: str
    name: str
    avatar: str
    manage_privilege: bool
    servicers: dict[str, _Servicer] = field(default_factory=dict)
    msgids: set[str] = field(default_factory=set)


@dataclass
class _Customer:
    external_userid: str
    nickname: str
    avatar: str
    gender: int = 0
    unionid: str | None = None
    context: dict[str, Any] | None = None
    entered_at: float | None = None
    last_seen: float = 0.0


@dataclass
class _Session:
    open_kfid: str
    external_userid: str
    state: int = NEW
    servicer_userid: str = ""
    generation: int = 1  # bumped whenever an ended session starts again
    last_customer_msg: float | None = None
    sends: int = 0  # send_msg calls since the last customer message
    reply_codes: set[int] = field(default_factory=set)  # states (2, 3) that already gave a msg_code
    last_welcome_sent: float | None = None


@dataclass
class _Code:
    code: str
    kind: str  # welcome | pool | pickup | end
    open_kfid: str
    external_userid: str
    expires_at: float
    state: int | None  # the session state the code needs; None for welcome codes
    generation: int
    used: bool = False


@dataclass
class _Fault:
    errcode: int | None
    http_status: int | None
    delay: float | None
    remaining: int


@dataclass
class _Media:
    content_type: str
    data: bytes
    filename: str
    created: float


@dataclass
class _Binary:
    content_type: str
    data: bytes
    filename: str


@dataclass(frozen=True)
class _Route:
    method: str
    handler: str
    needs_token: bool = True


ROUTES: dict[str, _Route] = {
    "gettoken": _Route("GET", "_api_gettoken", needs_token=False),
    "kf/account/list": _Route("POST", "_api_account_list"),
    "kf/servicer/list": _Route("GET", "_api_servicer_list"),
    "kf/add_contact_way": _Route("POST", "_api_add_contact_way"),
    "kf/sync_msg": _Route("POST", "_api_sync_msg"),
    "kf/service_state/get": _Route("POST", "_api_service_state_get"),
    "kf/service_state/trans": _Route("POST", "_api_service_state_trans"),
    "kf/send_msg": _Route("POST", "_api_send_msg"),
    "kf/send_msg_on_event": _Route("POST", "_api_send_msg_on_event"),
    "kf/customer/batchget": _Route("POST", "_api_customer_batchget"),
    "media/get": _Route("GET", "_api_media_get"),
}

Response = tuple[int, list[tuple[str, str]], bytes]


def _random_id(prefix: str, length: int) -> str:
    return prefix + "".join(secrets.choice(ID_ALPHABET) for _ in range(length))


def _normalize_path(path: str) -> str:
    path = path.strip("/")
    return path[len("cgi-bin/") :] if path.startswith("cgi-bin/") else path


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


def _json_response(obj: Any, status: int = 200) -> Response:
    return status, [("Content-Type", "application/json; charset=UTF-8")], _json_bytes(obj)


def _cdata(value: str) -> str:
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def _byte_len(value: str) -> int:
    return len(value.encode("utf-8"))


def _int_field(body: dict[str, Any], key: str, default: int) -> int:
    value = body.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(40058, f"invalid parameter {key}")
    return value


def _str_field(body: dict[str, Any], key: str, *, required: bool = True) -> str:
    value = body.get(key)
    if value is None or value == "":
        if required:
            raise ApiError(40058, f"missing parameter {key}")
        return ""
    if not isinstance(value, str):
        raise ApiError(40058, f"invalid parameter {key}")
    return value


def _fake_media(msgtype: str) -> bytes:
    noise = secrets.token_bytes(64)
    if msgtype == "image":
        return b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + noise + b"\xff\xd9"
    if msgtype == "voice":
        return b"#!AMR\n" + noise
    if msgtype == "video":
        return b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + noise
    return b"kefu simulator file\n" + noise


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    simulator: WeComSimulator


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self._serve("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._serve("POST")

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            status, headers, payload = _json_response({"errcode": 40058, "errmsg": "body too large"}, 413)
            self.close_connection = True
        else:
            body = self.rfile.read(length) if length > 0 else b""
            status, headers, payload = self.server.simulator._handle_http(method, self.path, body)  # noqa: SLF001 - its own server
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet server
        pass


class WeComSimulator:
    """The simulated corp: one lock guards all state; HTTP threads and Python callers share it."""

    def __init__(
        self,
        corp_id: str = DEMO_CORP_ID,
        corp_secret: str = DEMO_CORP_SECRET,
        token: str = DEMO_TOKEN,
        encoding_aes_key: str = DEMO_AES_KEY,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.corp_id = corp_id
        self.corp_secret = corp_secret
        self.token = token
        self.encoding_aes_key = encoding_aes_key
        self.host = host
        self.port = port
        self._clock = clock
        self._offset = 0.0
        self._crypt = WXBizMsgCrypt(token, encoding_aes_key, corp_id)
        self._lock = threading.RLock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._http: httpx.Client | None = None
        self.base_url = ""

        # Behaviour switches (also settable through configure()).
        self.page_cap: int | None = None
        self.empty_page_every: int | None = None
        self.tokenless_limit_per_minute: int | None = None
        self.ip_blocked = False
        self.egress_ip = DEFAULT_EGRESS_IP
        self.callback_url: str | None = None
        self.auto_callback = True
        self.callback_timeout = 5.0

        # Inspection.
        self.calls: list[dict[str, Any]] = []
        self.sync_calls: list[dict[str, Any]] = []
        self.callbacks: list[dict[str, Any]] = []
        self.gettoken_count = 0

        self._accounts: dict[str, _Account] = {}
        self._customers: dict[str, _Customer] = {}
        self._sessions: dict[tuple[str, str], _Session] = {}
        self._codes: dict[str, _Code] = {}
        self._tokens: dict[str, float] = {}
        self._callback_tokens: dict[str, tuple[str, float]] = {}
        self._media: dict[str, _Media] = {}
        self._log: list[tuple[str, dict[str, Any]]] = []
        self._msg_index: dict[str, dict[str, Any]] = {}
        self._sent: list[dict[str, Any]] = []
        self._faults: dict[str, deque[_Fault]] = {}
        self._links: dict[tuple[str, str], tuple[str, str]] = {}
        self._tokenless_calls: deque[float] = deque()
        self._sync_pages = 0
        self._cursor_key = secrets.token_bytes(32)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> str:
        """Serve in a daemon thread and return the base URL (clients append ``/cgi-bin/...``)."""
        if self._server is not None:
            return self.base_url
        server = _Server((self.host, self.port), _Handler)
        server.simulator = self
        self._server = server
        self._http = httpx.Client(timeout=self.callback_timeout)
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="wecom-sim", daemon=True
        )
        self._thread.start()
        self.base_url = f"http://{self.host}:{server.server_address[1]}"
        return self.base_url

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._http is not None:
            self._http.close()
            self._http = None

    def __enter__(self) -> WeComSimulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ clock and switches

    def now(self) -> float:
        return self._clock() + self._offset

    def advance(self, seconds: float) -> float:
        """Move the simulator's clock forward (or back) and return the new time."""
        with self._lock:
            self._offset += float(seconds)
            return self.now()

    def configure(self, **settings: Any) -> dict[str, Any]:
        """Set behaviour switches: page_cap, empty_page_every, tokenless_limit_per_minute,
        ip_blocked, egress_ip, auto_callback."""
        unknown = set(settings) - CONFIGURABLE
        if unknown:
            raise ValueError(f"unknown settings: {sorted(unknown)}")
        every = settings.get("empty_page_every")
        if every is not None and every < 2:
            raise ValueError("empty_page_every must be at least 2 (or None)")
        with self._lock:
            for name, value in settings.items():
                setattr(self, name, value)
            return {name: getattr(self, name) for name in sorted(CONFIGURABLE)}

    def expire_all_tokens(self) -> None:
        with self._lock:
            now = self.now()
            for token in self._tokens:
                self._tokens[token] = min(self._tokens[token], now)

    def inject_fault(
        self,
        path: str,
        *,
        errcode: int | None = None,
        http_status: int | None = None,
        delay: float | None = None,
        times: int = 1,
    ) -> None:
        """Make the next ``times`` calls to ``path`` (e.g. "kf/sync_msg") fail or stall."""
        if errcode is None and http_status is None and delay is None:
            raise ValueError("give errcode, http_status or delay")
        if times < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            fault = _Fault(errcode, http_status, delay, times)
            self._faults.setdefault(_normalize_path(path), deque()).append(fault)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending_faults(self, path: str) -> int:
        """How many calls to ``path`` the injected faults will still answer."""
        with self._lock:
            return sum(f.remaining for f in self._faults.get(_normalize_path(path), ()))

    def set_callback_url(self, url: str | None) -> None:
        with self._lock:
            self.callback_url = url or None

    # ------------------------------------------------------------------ customer-side driver

    def add_account(
        self,
        open_kfid: str | None = None,
        name: str = "Kefu Demo",
        manage_privilege: bool = True,
        avatar: str | None = None,
    ) -> str:
        with self._lock:
            kfid = open_kfid or _random_id("wk", 30)
            if kfid in self._accounts:
                raise ValueError(f"account {kfid} exists")
            digest = hashlib.sha256(kfid.encode()).hexdigest()[:24]
            self._accounts[kfid] = _Account(
                kfid, name, avatar or f"https://wework.qpic.cn/wwhead/{digest}/0", manage_privilege
            )
            return kfid

    def add_servicer(self, open_kfid: str, userid: str, status: int = 0, stop_type: int = 0) -> None:
        if status not in (0, 1):
            raise ValueError("status is 0 (receiving) or 1 (stopped)")
        with self._lock:
            self._require_account(open_kfid).servicers[userid] = _Servicer(userid, status, stop_type)

    def set_servicer_status(self, open_kfid: str, userid: str, receiving: bool, stop_type: int = 0) -> str:
        """Change a servicer's status and log a servicer_status_change event (1 receiving, 2 stopped)."""
        with self._lock:
            servicer = self._require_servicer(open_kfid, userid)
            servicer.status = 0 if receiving else 1
            servicer.stop_type = 0 if receiving else stop_type
            event: dict[str, Any] = {
                "event_type": "servicer_status_change",
                "servicer_userid": userid,
                "open_kfid": open_kfid,
                "status": 1 if receiving else 2,
            }
            if not receiving:
                event["stop_type"] = stop_type
            msgid = self._append_event(open_kfid, event)
        self._notify(open_kfid)
        return msgid

    def customer_enter(
        self,
        open_kfid: str,
        external_userid: str | None = None,
        scene: str = "",
        scene_param: str = "",
        welcome: bool = True,
        wechat_channels: dict[str, Any] | None = None,
        nickname: str | None = None,
    ) -> tuple[str, str | None]:
        """The customer opens the chat; returns (external_userid, welcome_code or None)."""
        with self._lock:
            self._require_account(open_kfid)
            now = self.now()
            customer = self._customer(external_userid or _random_id("wm", 30), nickname)
            context: dict[str, Any] = {"scene": scene, "scene_param": scene_param}
            if wechat_channels:
                context["wechat_channels"] = dict(wechat_channels)
            customer.context = context
            customer.entered_at = now
            customer.last_seen = now
            session = self._session(open_kfid, customer.external_userid)
            code: str | None = None
            if welcome and self._welcome_allowed(session, now):
                code = self._issue_code(session, "welcome", WELCOME_CODE_TTL, None)
            event: dict[str, Any] = {
                "event_type": "enter_session",
                "open_kfid": open_kfid,
                "external_userid": customer.external_userid,
                "scene": scene,
                "scene_param": scene_param,
            }
            if code:
                event["welcome_code"] = code
            if wechat_channels:
                event["wechat_channels"] = dict(wechat_channels)
            self._append_event(open_kfid, event)
            euid = customer.external_userid
        self._notify(open_kfid)
        return euid, code

    def customer_enter_via_link(
        self,
        url: str,
        external_userid: str | None = None,
        welcome: bool = True,
        wechat_channels: dict[str, Any] | None = None,
    ) -> tuple[str, str | None]:
        """Open a link issued by kf/add_contact_way (with an optional &scene_param=...)."""
        parts = urlsplit(url)
        query = parse_qs(parts.query, keep_blank_values=True)
        key = (parts.path.rsplit("/", 1)[-1], query.get("enc_scene", [""])[0])
        with self._lock:
            target = self._links.get(key)
        if target is None:
            raise ValueError("link was not issued by this simulator; WeCom would deliver no enter_session")
        scene_param = query.get("scene_param", [""])[0]
        if _byte_len(scene_param) > 128:
            raise ValueError("scene_param is over 128 bytes")
        open_kfid, scene = target
        return self.customer_enter(
            open_kfid, external_userid, scene=scene, scene_param=scene_param if scene else "",
            welcome=welcome, wechat_channels=wechat_channels,
        )

    def customer_says(self, open_kfid: str, external_userid: str, text: str, menu_id: str | None = None) -> str:
        """A customer text (origin 3). With ``menu_id`` it is a menu click, which opens no window."""
        payload: dict[str, Any] = {"content": text}
        if menu_id is not None:
            payload["menu_id"] = menu_id
        return self._customer_message(open_kfid, external_userid, "text", payload, opens_window=menu_id is None)

    def customer_sends_media(
        self,
        open_kfid: str,
        external_userid: str,
        msgtype: str = "image",
        data: bytes | None = None,
        filename: str | None = None,
    ) -> str:
        """A customer image/voice/video/file; the blob is then served by media/get."""
        if msgtype not in MEDIA_MSGTYPES:
            raise ValueError(f"msgtype must be one of {MEDIA_MSGTYPES}")
        content_type, ext = MEDIA_CONTENT_TYPES[msgtype]
        with self._lock:
            media_id = self._store_media(content_type, data or _fake_media(msgtype), filename or f"{msgtype}.{ext}")
        return self._customer_message(open_kfid, external_userid, msgtype, {"media_id": media_id})

    def add_media(self, data: bytes, content_type: str = "image/jpeg", filename: str = "media.jpg") -> str:
        """Store a blob and return its media_id (for links, avatars and tests of media/get)."""
        with self._lock:
            return self._store_media(content_type, data, filename)

    def servicer_says(self, open_kfid: str, external_userid: str, servicer_userid: str, text: str) -> str:
        """A servicer types in the WeCom client (origin 5). In an ended session this reopens it."""
        with self._lock:
            self._require_servicer(open_kfid, servicer_userid)
            session = self._known_session(open_kfid, external_userid)
            if session.state == ENDED:
                self._reopen(session, servicer_userid)
            elif session.state != HUMAN or session.servicer_userid != servicer_userid:
                raise ValueError(
                    f"session is in state {session.state} with servicer {session.servicer_userid!r}; "
                    f"{servicer_userid} can write only to a session assigned to them (or an ended one)"
                )
            item = {
                "open_kfid": open_kfid,
                "external_userid": external_userid,
                "origin": 5,
                "servicer_userid": servicer_userid,
                "msgtype": "text",
                "text": {"content": text},
            }
            msgid = self._append(open_kfid, item)
        self._notify(open_kfid)
        return msgid

    def pickup(self, open_kfid: str, external_userid: str, servicer_userid: str) -> str:
        """A servicer takes the session from the waiting pool (change_type 1, with msg_code)."""
        with self._lock:
            self._require_servicer(open_kfid, servicer_userid)
            session = self._known_session(open_kfid, external_userid)
            if session.state != POOL:
                raise ValueError(f"pickup needs a session in the pool (state 2), it is {session.state}")
            session.state, session.servicer_userid = HUMAN, servicer_userid
            code = self._issue_code(session, "pickup", REPLY_CODE_TTL, HUMAN)
            session.reply_codes.add(HUMAN)
            msgid = self._session_event(session, 1, new=servicer_userid, msg_code=code)
        self._notify(open_kfid)
        return msgid

    def transfer(
        self, open_kfid: str, external_userid: str, new_servicer_userid: str, old_servicer_userid: str | None = None
    ) -> str:
        """The current servicer hands the session to another servicer (change_type 2)."""
        with self._lock:
            self._require_servicer(open_kfid, new_servicer_userid)
            session = self._known_session(open_kfid, external_userid)
            if session.state != HUMAN:
                raise ValueError(f"transfer needs a session with a servicer (state 3), it is {session.state}")
            old = old_servicer_userid or session.servicer_userid
            session.servicer_userid = new_servicer_userid
            msgid = self._session_event(session, 2, old=old, new=new_servicer_userid)
        self._notify(open_kfid)
        return msgid

    def end_session(self, open_kfid: str, external_userid: str, servicer_userid: str) -> str:
        """A servicer ends the session (change_type 3, with a 20 s msg_code)."""
        with self._lock:
            self._require_servicer(open_kfid, servicer_userid)
            session = self._known_session(open_kfid, external_userid)
            if session.state == ENDED:
                raise ValueError("session already ended")
            session.state, session.servicer_userid = ENDED, ""
            code = self._issue_code(session, "end", END_CODE_TTL, ENDED)
            msgid = self._session_event(session, 3, old=servicer_userid, msg_code=code)
        self._notify(open_kfid)
        return msgid

    def reopen(self, open_kfid: str, external_userid: str, servicer_userid: str) -> str:
        """A servicer reopens an ended session (change_type 4)."""
        with self._lock:
            self._require_servicer(open_kfid, servicer_userid)
            session = self._known_session(open_kfid, external_userid)
            if session.state != ENDED:
                raise ValueError(f"reopen needs an ended session (state 4), it is {session.state}")
            msgid = self._reopen(session, servicer_userid)
        self._notify(open_kfid)
        return msgid

    def send_fail(self, open_kfid: str, external_userid: str, fail_msgid: str, fail_type: int = 0) -> str:
        with self._lock:
            self._require_account(open_kfid)
            event = {
                "event_type": "msg_send_fail",
                "open_kfid": open_kfid,
                "external_userid": external_userid,
                "fail_msgid": fail_msgid,
                "fail_type": fail_type,
            }
            msgid = self._append_event(open_kfid, event)
        self._notify(open_kfid)
        return msgid

    def add_raw_item(self, open_kfid: str, item: dict[str, Any], send_time: float | None = None) -> str:
        """Append an item as given (unknown types, old items); fills msgid and send_time if absent."""
        with self._lock:
            self._require_account(open_kfid)
            copy = json.loads(json.dumps(item))
            if send_time is not None:
                copy["send_time"] = int(send_time)
            msgid = self._append(open_kfid, copy)
        self._notify(open_kfid)
        return msgid

    # ------------------------------------------------------------------ callbacks

    def issue_callback_token(self, open_kfid: str) -> str:
        """A fresh sync_msg token for the account, as a kf_msg_or_event callback would carry."""
        with self._lock:
            self._require_account(open_kfid)
            token = "ENC" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(44))
            self._callback_tokens[token] = (open_kfid, self.now() + CALLBACK_TOKEN_TTL)
            return token

    def callback_xml(self, open_kfid: str, token: str) -> str:
        return (
            f"<xml><ToUserName>{_cdata(self.corp_id)}</ToUserName>"
            f"<CreateTime>{int(self.now())}</CreateTime>"
            f"<MsgType>{_cdata('event')}</MsgType>"
            f"<Event>{_cdata('kf_msg_or_event')}</Event>"
            f"<Token>{_cdata(token)}</Token>"
            f"<OpenKfId>{_cdata(open_kfid)}</OpenKfId></xml>"
        )

    def fire_callback(self, open_kfid: str, repeat: int = 1) -> list[int]:
        """POST a kf_msg_or_event callback ``repeat`` times (identical, like WeCom retries).

        Returns the HTTP statuses; 0 stands for a transport failure (refused, timed out)."""
        token = self.issue_callback_token(open_kfid)
        return self.post_callback_xml(self.callback_xml(open_kfid, token), repeat=repeat)

    def post_callback_xml(self, xml_plaintext: str, repeat: int = 1) -> list[int]:
        """Encrypt, sign and POST any plaintext event XML to the callback URL."""
        url = self.callback_url
        if not url:
            raise ValueError("no callback URL set")
        query, body = self.signed_callback_request(xml_plaintext)
        statuses: list[int] = []
        client = self._http or httpx.Client(timeout=self.callback_timeout)
        try:
            for _ in range(max(1, repeat)):
                try:
                    status = client.post(
                        url, params=query, content=body, headers={"Content-Type": "text/xml"}
                    ).status_code
                except httpx.HTTPError:
                    status = 0
                statuses.append(status)
                with self._lock:
                    self.callbacks.append(
                        {"url": url, "query": dict(query), "xml": xml_plaintext, "status": status, "time": self.now()}
                    )
        finally:
            if client is not self._http:
                client.close()
        return statuses

    def signed_callback_request(self, xml_plaintext: str) -> tuple[dict[str, str], bytes]:
        """(query params, body) of an encrypted callback POST carrying ``xml_plaintext``."""
        encrypted = self._crypt.encrypt(xml_plaintext)
        timestamp, nonce = str(int(self.now())), str(secrets.randbelow(9 * 10**9) + 10**9)
        body = (
            f"<xml><ToUserName>{_cdata(self.corp_id)}</ToUserName>"
            f"<Encrypt>{_cdata(encrypted)}</Encrypt>"
            f"<AgentID>{_cdata(DEMO_AGENT_ID)}</AgentID></xml>"
        )
        query = {"msg_signature": self._crypt.sign(timestamp, nonce, encrypted), "timestamp": timestamp, "nonce": nonce}
        return query, body.encode("utf-8")

    def signed_echo(self, echostr_plain: str) -> dict[str, str]:
        """Query params of a GET URL verification whose echostr decrypts to ``echostr_plain``."""
        encrypted = self._crypt.encrypt(echostr_plain)
        timestamp, nonce = str(int(self.now())), str(secrets.randbelow(9 * 10**9) + 10**9)
        return {
            "msg_signature": self._crypt.sign(timestamp, nonce, encrypted),
            "timestamp": timestamp,
            "nonce": nonce,
            "echostr": encrypted,
        }

    # ------------------------------------------------------------------ inspection

    def calls_to(self, path: str) -> list[dict[str, Any]]:
        wanted = _normalize_path(path)
        with self._lock:
            return [call for call in self.calls if call["path"] == wanted]

    def sent_messages(self, open_kfid: str | None = None, external_userid: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [
                dict(sent)
                for sent in self._sent
                if (open_kfid is None or sent["open_kfid"] == open_kfid)
                and (external_userid is None or sent["external_userid"] == external_userid)
            ]

    def session(self, open_kfid: str, external_userid: str) -> dict[str, Any]:
        with self._lock:
            session = self._sessions.get((open_kfid, external_userid))
            if session is None:
                return {"open_kfid": open_kfid, "external_userid": external_userid, "service_state": NEW,
                        "servicer_userid": "", "generation": 0, "last_customer_msg": None, "sends_in_window": 0}
            return self._session_view(session)

    def item(self, msgid: str) -> dict[str, Any] | None:
        """The logged sync_msg item with this msgid, if any."""
        with self._lock:
            found = self._msg_index.get(msgid)
            return json.loads(json.dumps(found)) if found is not None else None

    def messages(self, open_kfid: str | None = None) -> list[dict[str, Any]]:
        """Every logged item (what sync_msg can return, ignoring retention), oldest first."""
        with self._lock:
            return [json.loads(json.dumps(item)) for kfid, item in self._log if open_kfid in (None, kfid)]

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {
                "base_url": self.base_url,
                "now": self.now(),
                "calls": len(self.calls),
                "gettoken_count": self.gettoken_count,
                "sync_calls": len(self.sync_calls),
                "messages": len(self._log),
                "callbacks": [{"status": c["status"], "time": c["time"]} for c in self.callbacks],
                "accounts": [
                    {
                        "open_kfid": a.open_kfid,
                        "name": a.name,
                        "servicers": [{"userid": s.userid, "status": s.status} for s in a.servicers.values()],
                    }
                    for a in self._accounts.values()
                ],
                "sessions": [self._session_view(s) for s in self._sessions.values()],
                "sent_messages": [dict(s) for s in self._sent],
            }

    # ------------------------------------------------------------------ HTTP entry

    def _handle_http(self, method: str, raw_path: str, body: bytes) -> Response:
        parts = urlsplit(raw_path)
        query = {key: values[0] for key, values in parse_qs(parts.query, keep_blank_values=True).items()}
        path = parts.path
        if path == "/sim" or path.startswith("/sim/"):
            return self._handle_admin(method, path[len("/sim/") :].strip("/"), body)
        if path.startswith("/cgi-bin/"):
            return self._handle_api(method, path[len("/cgi-bin/") :].strip("/"), query, body)
        return _json_response({"errcode": 40058, "errmsg": f"unknown path {path}"}, 404)

    def _handle_api(self, method: str, api: str, query: dict[str, str], raw: bytes) -> Response:
        with self._lock:
            if api == "gettoken":
                self.gettoken_count += 1
            fault = self._take_fault(api)
            blocked = self.ip_blocked
        if fault is not None and fault.delay:
            time.sleep(fault.delay)
        parsed: dict[str, Any] | None = None
        errcode: int | None = None
        if blocked:
            errcode = 60020
            response = self._error_response(60020)
        elif fault is not None and fault.http_status is not None:
            text = f"<html><body><h1>{fault.http_status} simulated upstream error</h1></body></html>"
            response = (fault.http_status, [("Content-Type", "text/html")], text.encode())
        elif fault is not None and fault.errcode is not None:
            errcode = fault.errcode
            response = self._error_response(fault.errcode)
        else:
            errcode, parsed, response = self._route(method, api, query, raw)
        if parsed is None and raw:
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = None
        with self._lock:
            self.calls.append(
                {
                    "path": api,
                    "method": method,
                    "query": {k: v for k, v in query.items() if k not in ("access_token", "corpsecret")},
                    "body": parsed,
                    "errcode": errcode,
                    "http_status": response[0],
                    "time": self.now(),
                }
            )
        return response

    def _route(
        self, method: str, api: str, query: dict[str, str], raw: bytes
    ) -> tuple[int | None, dict[str, Any] | None, Response]:
        route = ROUTES.get(api)
        if route is None:
            body = self._error_body(40058, f"api {api} not found")
            return 40058, None, _json_response(body, 404)
        data: dict[str, Any] = {}
        try:
            if method != route.method:
                raise ApiError(43001 if route.method == "GET" else 43002)
            with self._lock:
                if route.needs_token:
                    self._check_access_token(query.get("access_token", ""))
            if method == "POST":
                data = self._parse_body(raw)
            with self._lock:
                result = getattr(self, route.handler)(query, data)
        except ApiError as exc:
            return exc.errcode, data or None, self._error_response(exc.errcode, exc.detail)
        if isinstance(result, _Binary):
            headers = [
                ("Content-Type", result.content_type),
                ("Content-Disposition", f'attachment; filename="{result.filename}"'),
            ]
            return 0, data or None, (200, headers, result.data)
        return 0, data or None, _json_response({"errcode": 0, "errmsg": "ok", **result})

    def _handle_admin(self, method: str, action: str, raw: bytes) -> Response:
        if action == "state":
            if method != "GET":
                return _json_response({"ok": False, "error": "use GET /sim/state"}, 405)
            return _json_response(self.state())
        if action not in ADMIN_ACTIONS:
            return _json_response({"ok": False, "error": f"unknown action {action!r}"}, 404)
        if method != "POST":
            return _json_response({"ok": False, "error": f"use POST /sim/{action}"}, 405)
        try:
            args = json.loads(raw or b"{}")
        except ValueError:
            return _json_response({"ok": False, "error": "body is not JSON"}, 400)
        if not isinstance(args, dict):
            return _json_response({"ok": False, "error": "body must be a JSON object of arguments"}, 400)
        method_fn = getattr(self, action)
        try:
            inspect.signature(method_fn).bind(**args)
        except TypeError as exc:
            return _json_response({"ok": False, "error": f"bad arguments: {exc}"}, 400)
        try:
            result = method_fn(**args)
        except (ValueError, KeyError, TypeError) as exc:
            return _json_response({"ok": False, "error": str(exc)}, 400)
        if isinstance(result, tuple):
            result = list(result)
        return _json_response({"ok": True, "result": result})

    # ------------------------------------------------------------------ request plumbing

    def _take_fault(self, api: str) -> _Fault | None:
        queue = self._faults.get(api)
        if not queue:
            return None
        fault = queue[0]
        fault.remaining -= 1
        if fault.remaining <= 0:
            queue.popleft()
        return fault

    def _error_body(self, errcode: int, detail: str | None = None) -> dict[str, Any]:
        text = detail or ERRMSG.get(errcode, "error")
        hint = f"{int(self.now())}_{secrets.token_hex(8)}"
        errmsg = (
            f"{text}, hint: [{hint}], from ip: {self.egress_ip}, "
            f"more info at https://open.work.weixin.qq.com/devtool/query?e={errcode}"
        )
        return {"errcode": errcode, "errmsg": errmsg}

    def _error_response(self, errcode: int, detail: str | None = None) -> Response:
        return _json_response(self._error_body(errcode, detail))

    def _check_access_token(self, token: str) -> None:
        if not token:
            raise ApiError(41001)
        expires_at = self._tokens.get(token)
        if expires_at is None:
            raise ApiError(40014)
        if self.now() >= expires_at:
            raise ApiError(42001)

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

    # ------------------------------------------------------------------ endpoints (lock held)

    def _api_gettoken(self, query: dict[str, str], _body: dict[str, Any]) -> dict[str, Any]:
        if query.get("corpid", "") != self.corp_id:
            raise ApiError(40013)
        if not hmac.compare_digest(query.get("corpsecret", "").encode(), self.corp_secret.encode()):
            raise ApiError(40001)
        token = secrets.token_urlsafe(48)
        self._tokens[token] = self.now() + ACCESS_TOKEN_TTL
        return {"access_token": token, "expires_in": ACCESS_TOKEN_TTL}

    def _api_account_list(self, _query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        offset = _int_field(body, "offset", 0)
        limit = _int_field(body, "limit", 100)
        if offset < 0 or not 1 <= limit <= 100:
            raise ApiError(40058, "invalid offset or limit (limit 1..100)")
        accounts = list(self._accounts.values())[offset : offset + limit]
        return {
            "account_list": [
                {"open_kfid": a.open_kfid, "name": a.name, "avatar": a.avatar, "manage_privilege": a.manage_privilege}
                for a in accounts
            ]
        }

    def _api_servicer_list(self, query: dict[str, str], _body: dict[str, Any]) -> dict[str, Any]:
        account = self._api_account(query.get("open_kfid", ""))
        return {
            "servicer_list": [
                {"userid": s.userid, "status": s.status, "stop_type": s.stop_type} for s in account.servicers.values()
            ]
        }

    def _api_add_contact_way(self, _query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        account = self._api_account(body.get("open_kfid"))
        scene = body.get("scene") or ""
        if not isinstance(scene, str) or _byte_len(scene) > 32 or not SCENE_RE.fullmatch(scene):
            raise ApiError(40058, "invalid scene: up to 32 bytes of [0-9a-zA-Z_-]")
        return {"url": self._contact_url(account.open_kfid, scene)}

    def _api_sync_msg(self, _query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        record: dict[str, Any] = {
            "cursor": body.get("cursor"),
            "token": body.get("token"),
            "limit": body.get("limit"),
            "open_kfid": body.get("open_kfid"),
            "voice_format": body.get("voice_format"),
            "time": self.now(),
        }
        self.sync_calls.append(record)
        try:
            result = self._sync(body)
        except ApiError as exc:
            record["errcode"] = exc.errcode
            raise
        record.update(errcode=0, count=len(result["msg_list"]), has_more=result["has_more"],
                      next_cursor=result["next_cursor"])
        return result

    def _sync(self, body: dict[str, Any]) -> dict[str, Any]:
        now = self.now()
        open_kfid = body.get("open_kfid") or ""
        if open_kfid:
            self._api_account(open_kfid)
        limit = _int_field(body, "limit", MAX_SYNC_LIMIT)
        if limit < 0:
            raise ApiError(40058, "invalid limit")
        limit = MAX_SYNC_LIMIT if limit == 0 else min(limit, MAX_SYNC_LIMIT)
        if _int_field(body, "voice_format", 0) not in (0, 1):
            raise ApiError(40058, "invalid voice_format")
        cursor = body.get("cursor") or ""
        token = body.get("token") or ""
        scope = open_kfid or "*"
        if token:
            issued = self._callback_tokens.get(token) if isinstance(token, str) else None
            if issued is None or now >= issued[1] or (open_kfid and issued[0] != open_kfid):
                raise ApiError(95007)
        elif self.tokenless_limit_per_minute is not None:
            while self._tokenless_calls and self._tokenless_calls[0] <= now - 60:
                self._tokenless_calls.popleft()
            if len(self._tokenless_calls) >= self.tokenless_limit_per_minute:
                raise ApiError(45009, "api freq out of limit: sync_msg without token")
            self._tokenless_calls.append(now)
        position = self._decode_cursor(scope, cursor) if cursor else 0

        self._sync_pages += 1
        if self.empty_page_every and self._sync_pages % self.empty_page_every == 0:
            return {"next_cursor": self._encode_cursor(scope, position), "has_more": 1, "msg_list": []}

        size = min(limit, self.page_cap) if self.page_cap else limit
        cutoff = now - RETENTION

        def visible(index: int) -> bool:
            kfid, item = self._log[index]
            return (not open_kfid or kfid == open_kfid) and item.get("send_time", 0) >= cutoff

        out: list[dict[str, Any]] = []
        index, end = position, len(self._log)
        while index < end and len(out) < size:
            if visible(index):
                out.append(json.loads(json.dumps(self._log[index][1])))
            index += 1
        has_more = any(visible(i) for i in range(index, end))
        return {"next_cursor": self._encode_cursor(scope, index), "has_more": int(has_more), "msg_list": out}

    def _api_service_state_get(self, _query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        account = self._api_account(body.get("open_kfid"))
        euid = _str_field(body, "external_userid")
        session = self._sessions.get((account.open_kfid, euid))
        if session is None:
            return {"service_state": NEW, "servicer_userid": ""}
        return {"service_state": session.state, "servicer_userid": session.servicer_userid}

    def _api_service_state_trans(self, _query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        account = self._api_account(body.get("open_kfid"))
        euid = self._api_customer(body)
        target = _int_field(body, "service_state", -1)
        if target not in ALLOWED_TRANSITIONS:
            raise ApiError(40058, "invalid service_state")
        servicer_userid = body.get("servicer_userid") or ""
        session = self._session(account.open_kfid, euid)
        current = session.state
        if target not in ALLOWED_TRANSITIONS[current]:
            raise ApiError(95016, f"invalid service state transition {current} -> {target}")
        if target == HUMAN:
            servicer = account.servicers.get(servicer_userid) if isinstance(servicer_userid, str) else None
            if servicer is None or servicer.status != 0:
                raise ApiError(95014, f"user is not servicer or not receiving: {servicer_userid!r}")
            if current == HUMAN and session.servicer_userid == servicer_userid:
                raise ApiError(95016, "session already with this servicer")
        session.state = target
        session.servicer_userid = servicer_userid if target == HUMAN else ""
        code: str | None = None
        if target in (POOL, HUMAN) and target not in session.reply_codes:
            session.reply_codes.add(target)
            code = self._issue_code(session, "pool" if target == POOL else "pickup", REPLY_CODE_TTL, target)
        elif target == ENDED:
            code = self._issue_code(session, "end", END_CODE_TTL, ENDED)
        return {"msg_code": code} if code else {}

    def _api_send_msg(self, _query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        account = self._api_account(body.get("open_kfid"))
        touser = body.get("touser")
        if not isinstance(touser, str) or not touser:
            raise ApiError(40058, "missing parameter touser")
        if touser not in self._customers:
            raise ApiError(40096)
        msgtype = self._check_payload(body, SEND_MSGTYPES)
        msgid = self._check_msgid(account, body.get("msgid"))
        session = self._session(account.open_kfid, touser)
        now = self.now()
        if session.state not in (NEW, BOT):
            raise ApiError(95018)
        if session.last_customer_msg is None or now - session.last_customer_msg > SESSION_WINDOW:
            raise ApiError(95002)
        if session.sends >= SEND_BUDGET:
            raise ApiError(95001)
        state_at_send = session.state
        session.sends += 1
        if session.state == NEW:
            session.state = BOT
        account.msgids.add(msgid)
        self._record_send("send_msg", account.open_kfid, touser, msgid, msgtype, body, state_at_send, None, None)
        return {"msgid": msgid}

    def _api_send_msg_on_event(self, _query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        now = self.now()
        code_value = body.get("code")
        code = self._codes.get(code_value) if isinstance(code_value, str) else None
        if code is None or code.used or now >= code.expires_at:
            raise ApiError(40058, "invalid code: unknown, already used or expired")
        msgtype = self._check_payload(body, CODE_MSGTYPES[code.kind])
        account = self._accounts[code.open_kfid]
        msgid = self._check_msgid(account, body.get("msgid"))
        session = self._session(code.open_kfid, code.external_userid)
        if code.state is not None and (session.state != code.state or session.generation != code.generation):
            raise ApiError(95018, "send msg session status invalid: the session left the state of this code")
        code.used = True
        if code.kind == "welcome":
            session.last_welcome_sent = now
        account.msgids.add(msgid)
        self._record_send(
            "send_msg_on_event", code.open_kfid, code.external_userid, msgid, msgtype, body, session.state,
            code.code, code.kind,
        )
        return {"msgid": msgid}

    def _api_customer_batchget(self, _query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        ids = body.get("external_userid_list")
        if not isinstance(ids, list) or not 1 <= len(ids) <= 100 or not all(isinstance(i, str) for i in ids):
            raise ApiError(40058, "external_userid_list must hold 1..100 ids")
        need_context = body.get("need_enter_session_context") == 1
        now = self.now()
        found: list[dict[str, Any]] = []
        invalid: list[str] = []
        for euid in ids:
            customer = self._customers.get(euid)
            if customer is None or now - customer.last_seen > SESSION_WINDOW:
                invalid.append(euid)
                continue
            entry: dict[str, Any] = {
                "external_userid": euid,
                "nickname": customer.nickname,
                "avatar": customer.avatar,
                "gender": customer.gender,
            }
            if customer.unionid:
                entry["unionid"] = customer.unionid
            if need_context and customer.context is not None and customer.entered_at is not None \
                    and now - customer.entered_at <= SESSION_WINDOW:
                entry["enter_session_context"] = dict(customer.context)
            found.append(entry)
        return {"customer_list": found, "invalid_external_userid": invalid}

    def _api_media_get(self, query: dict[str, str], _body: dict[str, Any]) -> _Binary:
        media = self._media.get(query.get("media_id", ""))
        if media is None or self.now() - media.created > MEDIA_TTL:
            raise ApiError(40007)
        return _Binary(media.content_type, media.data, media.filename)

    # ------------------------------------------------------------------ validation helpers

    def _api_account(self, open_kfid: Any) -> _Account:
        account = self._accounts.get(open_kfid) if isinstance(open_kfid, str) else None
        if account is None:
            raise ApiError(95000)
        return account

    def _api_customer(self, body: dict[str, Any]) -> str:
        euid = _str_field(body, "external_userid")
        if euid not in self._customers:
            raise ApiError(40096)
        return euid

    def _check_payload(self, body: dict[str, Any], allowed: frozenset[str]) -> str:
        msgtype = body.get("msgtype")
        if not isinstance(msgtype, str) or msgtype not in allowed:
            raise ApiError(40008, f"invalid message type {msgtype!r}")
        payload = body.get(msgtype)
        if not isinstance(payload, dict):
            raise ApiError(40058, f"missing object {msgtype}")
        if msgtype == "text":
            content = payload.get("content")
            if not isinstance(content, str) or not content:
                raise ApiError(40058, "text.content is required")
            if _byte_len(content) > 2048:
                raise ApiError(45002, "content size out of limit: text over 2048 bytes")
        elif msgtype in MEDIA_MSGTYPES:
            if not isinstance(payload.get("media_id"), str) or not payload["media_id"]:
                raise ApiError(40007)
        elif msgtype == "msgmenu":
            self._check_menu(payload)
        elif msgtype == "link":
            url = payload.get("url")
            if not payload.get("title") or not isinstance(url, str) or not url.startswith(("http://", "https://")):
                raise ApiError(40058, "link needs title and an http(s) url")
        elif msgtype == "miniprogram":
            if not all(payload.get(k) for k in ("appid", "thumb_media_id", "pagepath")):
                raise ApiError(40058, "miniprogram needs appid, thumb_media_id and pagepath")
        elif msgtype == "location":
            lat, lng = payload.get("latitude"), payload.get("longitude")
            if not isinstance(lat, (int, float)) or not isinstance(lng, (int, float)) \
                    or not -90 <= lat <= 90 or not -180 <= lng <= 180:
                raise ApiError(40058, "invalid latitude/longitude")
        elif msgtype == "ca_link":
            link = payload.get("link_url")
            if not isinstance(link, str) or not link.startswith("https://work.weixin.qq.com/ca/"):
                raise ApiError(40058, "invalid ca_link.link_url")
        return msgtype

    @staticmethod
    def _check_menu(menu: dict[str, Any]) -> None:
        items = menu.get("list", [])
        if not isinstance(items, list):
            raise ApiError(40058, "msgmenu.list must be a list")
        if len(items) > 10:
            raise ApiError(95008)
        for entry in items:
            kind = entry.get("type") if isinstance(entry, dict) else None
            if kind not in MENU_ITEM_TYPES or not isinstance(entry.get(kind), dict):
                raise ApiError(95009)
        for key in ("head_content", "tail_content"):
            text = menu.get(key, "")
            if isinstance(text, str) and _byte_len(text) > 1024:
                raise ApiError(45002, f"{key} over 1024 bytes")

    def _check_msgid(self, account: _Account, msgid: Any) -> str:
        if msgid is None or msgid == "":
            while True:
                generated = _random_id("", 32)
                if generated not in account.msgids:
                    return generated
        if not isinstance(msgid, str) or _byte_len(msgid) > 32 or not MSGID_RE.fullmatch(msgid):
            raise ApiError(40058, "invalid msgid: up to 32 bytes of [0-9a-zA-Z_-]")
        if msgid in account.msgids:
            raise ApiError(40058, f"duplicate msgid {msgid}")
        return msgid

    # ------------------------------------------------------------------ state helpers (lock held)

    def _require_account(self, open_kfid: str) -> _Account:
        account = self._accounts.get(open_kfid)
        if account is None:
            raise ValueError(f"unknown open_kfid {open_kfid}")
        return account

    def _require_servicer(self, open_kfid: str, userid: str) -> _Servicer:
        servicer = self._require_account(open_kfid).servicers.get(userid)
        if servicer is None:
            raise ValueError(f"{userid} is not a servicer of {open_kfid}")
        return servicer

    def _customer(self, external_userid: str, nickname: str | None = None) -> _Customer:
        customer = self._customers.get(external_userid)
        if customer is None:
            digest = hashlib.sha256(external_userid.encode()).hexdigest()
            customer = _Customer(
                external_userid,
                nickname or f"微信用户{digest[:4]}",
                f"https://wx.qlogo.cn/mmhead/{digest[:40]}/0",
                last_seen=self.now(),
            )
            self._customers[external_userid] = customer
        elif nickname:
            customer.nickname = nickname
        return customer

    def _session(self, open_kfid: str, external_userid: str) -> _Session:
        key = (open_kfid, external_userid)
        session = self._sessions.get(key)
        if session is None:
            session = self._sessions[key] = _Session(open_kfid, external_userid)
        return session

    def _known_session(self, open_kfid: str, external_userid: str) -> _Session:
        self._require_account(open_kfid)
        if external_userid not in self._customers:
            raise ValueError(f"unknown customer {external_userid}")
        return self._session(open_kfid, external_userid)

    def _session_view(self, session: _Session) -> dict[str, Any]:
        return {
            "open_kfid": session.open_kfid,
            "external_userid": session.external_userid,
            "service_state": session.state,
            "servicer_userid": session.servicer_userid,
            "generation": session.generation,
            "last_customer_msg": session.last_customer_msg,
            "sends_in_window": session.sends,
        }

    def _welcome_allowed(self, session: _Session, now: float) -> bool:
        recent = [t for t in (session.last_welcome_sent, session.last_customer_msg) if t is not None]
        return all(now - t >= SESSION_WINDOW for t in recent)

    def _issue_code(self, session: _Session, kind: str, ttl: float, state: int | None) -> str:
        code = _random_id("", 43)
        self._codes[code] = _Code(
            code, kind, session.open_kfid, session.external_userid, self.now() + ttl, state, session.generation
        )
        return code

    def _reopen(self, session: _Session, servicer_userid: str) -> str:
        previous = session.servicer_userid
        session.generation += 1
        session.reply_codes = {HUMAN}
        session.state, session.servicer_userid = HUMAN, servicer_userid
        return self._session_event(session, 4, old=previous, new=servicer_userid)

    def _session_event(
        self, session: _Session, change_type: int, *, old: str | None = None, new: str | None = None,
        msg_code: str | None = None,
    ) -> str:
        event: dict[str, Any] = {
            "event_type": "session_status_change",
            "open_kfid": session.open_kfid,
            "external_userid": session.external_userid,
            "change_type": change_type,
        }
        if old is not None:
            event["old_servicer_userid"] = old
        if new is not None:
            event["new_servicer_userid"] = new
        if msg_code is not None:
            event["msg_code"] = msg_code
        return self._append_event(session.open_kfid, event)

    def _customer_message(
        self, open_kfid: str, external_userid: str, msgtype: str, payload: dict[str, Any], opens_window: bool = True
    ) -> str:
        with self._lock:
            self._require_account(open_kfid)
            now = self.now()
            customer = self._customer(external_userid)
            customer.last_seen = now
            if opens_window:
                session = self._session(open_kfid, external_userid)
                if session.state == ENDED:
                    session.generation += 1
                    session.state, session.servicer_userid = NEW, ""
                    session.reply_codes = set()
                session.last_customer_msg = now
                session.sends = 0
            item = {
                "open_kfid": open_kfid,
                "external_userid": external_userid,
                "origin": 3,
                "msgtype": msgtype,
                msgtype: payload,
            }
            msgid = self._append(open_kfid, item)
        self._notify(open_kfid)
        return msgid

    def _append_event(self, open_kfid: str, event: dict[str, Any]) -> str:
        return self._append(open_kfid, {"origin": 4, "msgtype": "event", "event": event})

    def _append(self, open_kfid: str, item: dict[str, Any]) -> str:
        msgid = item.get("msgid") or _random_id("", 32)
        if msgid in self._msg_index:
            raise ValueError(f"msgid {msgid} already logged")
        # Keep WeCom's field order: msgid, ids, send_time, origin, ... then the payload.
        ordered: dict[str, Any] = {"msgid": msgid}
        for key in ("open_kfid", "external_userid"):
            if key in item:
                ordered[key] = item[key]
        ordered["send_time"] = int(item.get("send_time") or self.now())
        ordered.update({k: v for k, v in item.items() if k not in ordered})
        self._log.append((open_kfid, ordered))
        self._msg_index[msgid] = ordered
        return msgid

    def _store_media(self, content_type: str, data: bytes, filename: str) -> str:
        media_id = _random_id("3", 63)
        self._media[media_id] = _Media(content_type, data, filename, self.now())
        return media_id

    def _record_send(
        self, via: str, open_kfid: str, external_userid: str, msgid: str, msgtype: str, body: dict[str, Any],
        state: int, code: str | None, code_kind: str | None,
    ) -> None:
        self._sent.append(
            {
                "via": via,
                "msgid": msgid,
                "open_kfid": open_kfid,
                "external_userid": external_userid,
                "msgtype": msgtype,
                "payload": json.loads(json.dumps(body.get(msgtype))),
                "state": state,
                "code": code,
                "code_kind": code_kind,
                "time": self.now(),
            }
        )

    def _contact_url(self, open_kfid: str, scene: str) -> str:
        kfc = "kfc" + hashlib.sha256(f"{self.corp_id}|{open_kfid}".encode()).hexdigest()[:14]
        tag = hmac.new(self.corp_id.encode(), f"{open_kfid}|{scene}".encode(), hashlib.sha256).digest()[:10]
        enc = "ENC" + base64.b32encode(tag).decode().rstrip("=")
        self._links[(kfc, enc)] = (open_kfid, scene)
        return f"https://work.weixin.qq.com/kf/{kfc}?enc_scene={enc}"

    def _encode_cursor(self, scope: str, position: int) -> str:
        masked = position ^ self._cursor_mask(scope)
        raw = struct.pack(">I", masked) + self._cursor_tag(scope, position)
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def _decode_cursor(self, scope: str, cursor: Any) -> int:
        if not isinstance(cursor, str) or len(cursor) > 64:
            raise ApiError(40058, "invalid cursor")
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        except ValueError as exc:
            raise ApiError(40058, "invalid cursor") from exc
        if len(raw) != 14:
            raise ApiError(40058, "invalid cursor")
        (masked,) = struct.unpack(">I", raw[:4])
        position = masked ^ self._cursor_mask(scope)
        if not hmac.compare_digest(raw[4:], self._cursor_tag(scope, position)) or position > len(self._log):
            raise ApiError(40058, "invalid cursor")
        return position

    def _cursor_mask(self, scope: str) -> int:
        # Hides the position so that a cursor reads as an opaque token, not a counter.
        digest = hmac.new(self._cursor_key, f"mask|{scope}".encode(), hashlib.sha256).digest()
        return int.from_bytes(digest[:4], "big")

    def _cursor_tag(self, scope: str, position: int) -> bytes:
        return hmac.new(self._cursor_key, f"{scope}|{position}".encode(), hashlib.sha256).digest()[:10]

    def _notify(self, open_kfid: str) -> None:
        if self.auto_callback and self.callback_url:
            self.fire_callback(open_kfid)


def main(argv: list[str] | None = None) -> None:
    """Run a standalone simulator with one demo account and two servicers until interrupted."""
    parser = argparse.ArgumentParser(description="WeCom kf API simulator")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--callback-url", default=None)
    args = parser.parse_args(argv)
    sim = WeComSimulator(port=args.port)
    base_url = sim.start()
    open_kfid = sim.add_account(name="Kefu Demo")
    for userid in ("alice", "bob"):
        sim.add_servicer(open_kfid, userid)
    sim.set_callback_url(args.callback_url)
    print(f"wecom simulator ready: {base_url} open_kfid={open_kfid}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()


if __name__ == "__main__":
    main()
