"""The simulator's state and the helpers that read and change it (callers hold the lock)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import secrets
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from local.wecom_sim.state import (
    DEFAULT_EGRESS_IP,
    DEMO_AES_KEY,
    DEMO_CORP_ID,
    DEMO_CORP_SECRET,
    DEMO_TOKEN,
    HUMAN,
    NEW,
    ROOT_DEPARTMENT,
    SESSION_WINDOW,
    ApiError,
    _Account,
    _Code,
    _Customer,
    _Fault,
    _Media,
    _normalize_path,
    _random_id,
    _Servicer,
    _Session,
)

if TYPE_CHECKING:
    from local.wecom_sim.server import _Server

try:
    from kefu.crypto import WXBizMsgCrypt
except ModuleNotFoundError:  # started as ``python -m local.wecom_sim`` without shared/ on the path
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent / "shared"))
    from kefu.crypto import WXBizMsgCrypt


def _media_kind(content_type: str) -> str:
    """The media type a blob stored without one counts as, from its content type."""
    if content_type.startswith("image/"):
        return "image"
    if content_type in ("audio/amr", "voice/amr"):
        return "voice"
    if content_type.startswith("video/"):
        return "video"
    return "file"


JSAPI_TICKET_TTL = 7200


class SimulatorCore:
    """The simulated corp's state: one lock guards all of it; HTTP threads and Python callers share it."""

    def __init__(
        self,
        corp_id: str = DEMO_CORP_ID,
        corp_secret: str = DEMO_CORP_SECRET,
        token: str = DEMO_TOKEN,
        encoding_aes_key: str = DEMO_AES_KEY,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.time,
        seed: int | None = None,
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
        self.callback_loss = 0.0  # probability that an automatic callback is lost (0..1)
        self.seed = seed  # seeds the draws of random knobs (callback_loss); None: unpredictable
        self._rng = random.Random(seed)  # nosec B311 - simulated chaos, not security

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
        self._callback_losses: dict[str | None, int] = {}  # open_kfid (None: any account) -> callbacks to lose
        self._lost_callbacks: list[dict[str, Any]] = []  # {"open_kfid", "time", "reason"} of each lost callback
        self._members: dict[str, set[int]] = {}  # corp members besides servicers: userid -> department ids
        self._miniprogram_appids: set[str] = set()  # mini programs linked to the corp
        self._business_cards: dict[str, float] = {}  # external_userid -> time of the last business_card sent
        self._upgrade_config: dict[str, list[Any]] = {"userids": [], "department_ids": [], "chat_ids": []}
        self._upgrade_offers: list[dict[str, Any]] = []  # every upgrade_service call that succeeded
        self._oauth_codes: dict[str, tuple[str, float]] = {}  # OAuth2 code -> (userid, issued at); used once
        self._jsapi_tickets: dict[str, tuple[str, float]] = {}  # "corp" / "agent" -> (ticket, issued at)
        self._deleted_accounts: set[str] = set()  # open_kfids kf/account/del removed (they answer 95004)
        self._departments: dict[int, int | None] = {ROOT_DEPARTMENT: None}  # department id -> parent id
        self._visible_departments: set[int] | None = None  # the app's visible range (None: the whole corp)
        self._verified = True  # the corp passed WeCom's verification (企业认证)
        self._channels_bound = True  # a 视频号 is bound to the corp
        # (kind "corp" | "servicer", day midnight, open_kfid, servicer_userid) -> the figures of that day
        self._statistics: dict[tuple[str, int, str | None, str | None], dict[str, Any]] = {}

    # ------------------------------------------------------------------ clock

    def now(self) -> float:
        return self._clock() + self._offset

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
                "lost_callbacks": len(self._lost_callbacks),
                "accounts": [
                    {
                        "open_kfid": a.open_kfid,
                        "name": a.name,
                        "manage_privilege": a.manage_privilege,
                        "avatar_media_id": a.avatar_media_id,
                        "servicers": [{"userid": s.userid, "status": s.status} for s in a.servicers.values()],
                        "departments": list(a.departments),
                    }
                    for a in self._accounts.values()
                ],
                "sessions": [self._session_view(s) for s in self._sessions.values()],
                "sent_messages": [dict(s) for s in self._sent],
            }

    # ------------------------------------------------------------------ state helpers (lock held)

    def _require_account(self, open_kfid: str) -> _Account:
        account = self._accounts.get(open_kfid)
        if account is None:
            raise ValueError(f"unknown open_kfid {open_kfid}")
        return account

    def _require_servicer(self, open_kfid: str, userid: str) -> _Servicer:
        servicer = self._servicer_of(self._require_account(open_kfid), userid)
        if servicer is None:
            raise ValueError(f"{userid} is not a servicer of {open_kfid}")
        return servicer

    def _servicer_of(self, account: _Account, userid: str) -> _Servicer | None:
        """The account's servicer ``userid``: a servicer in their own name, or a member of a
        department that serves the account. Only the department's own members count, not those of
        its sub-departments: WeCom does not say, and this is the stricter reading."""
        servicer = account.servicers.get(userid)
        if servicer is not None:
            return servicer
        if not account.departments or not self._is_member(userid):
            return None
        if not self._member_departments(userid).intersection(account.departments):
            return None
        return account.department_servicers.setdefault(userid, _Servicer(userid))

    def _member_departments(self, userid: str) -> set[int]:
        """The departments of a known member; one known with none is in the root department."""
        return set(self._members.get(userid) or ()) or {ROOT_DEPARTMENT}

    def _subtree(self, department_id: int) -> set[int]:
        """A department and all the departments below it."""
        found = {department_id}
        grew = True
        while grew:
            below = {d for d, parent in self._departments.items() if parent in found} - found
            found |= below
            grew = bool(below)
        return found

    def _department_visible(self, department_id: int) -> bool:
        """Whether the app may read the department: it, or a department above it, is in the
        app's visible range."""
        if self._visible_departments is None:
            return True
        current: int | None = department_id
        while current is not None:
            if current in self._visible_departments:
                return True
            current = self._departments.get(current)
        return False

    def _member_visible(self, userid: str) -> bool:
        return any(self._department_visible(d) for d in self._member_departments(userid))

    def _known_members(self) -> list[str]:
        """Every member the simulator knows, in the order it learnt of them."""
        members = dict.fromkeys(self._members)
        for account in self._accounts.values():
            members.update(dict.fromkeys(account.servicers))
        return list(members)

    def _serving_users(self, account: _Account) -> set[str]:
        """The people who serve the account, for its servicer cap: the direct servicers and the
        members of its departments and their sub-departments (the wider count, as stricter)."""
        served = set(account.servicers)
        if account.departments:
            reach: set[int] = set()
            for department_id in account.departments:
                reach |= self._subtree(department_id)
            served.update(u for u in self._known_members() if self._member_departments(u) & reach)
        return served

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

    def _store_media(
        self, content_type: str, data: bytes, filename: str, kind: str | None = None, origin: str = "added"
    ) -> str:
        media_id = _random_id("3", 63)
        self._media[media_id] = _Media(
            content_type, data, filename, self.now(), kind or _media_kind(content_type), origin
        )
        return media_id

    def _ticket(self, kind: str) -> dict[str, Any]:
        """A JS-SDK ticket (``corp`` or ``agent``): the same one until its two hours are over."""
        held = self._jsapi_tickets.get(kind)
        if held is None or self.now() - held[1] >= JSAPI_TICKET_TTL:
            held = (secrets.token_urlsafe(32), self.now())
            self._jsapi_tickets[kind] = held
        return {"ticket": held[0], "expires_in": int(JSAPI_TICKET_TTL - (self.now() - held[1]))}

    def _is_member(self, userid: str) -> bool:
        """A corp member the simulator knows: a servicer of any account, or one add_member added."""
        return userid in self._members or any(userid in a.servicers for a in self._accounts.values())

    def _upgrade_config_view(self) -> dict[str, Any]:
        config = self._upgrade_config
        return {
            "member_range": {"userid_list": list(config["userids"]),
                             "department_id_list": list(config["department_ids"])},
            "groupchat_range": {"chat_id_list": list(config["chat_ids"])},
        }

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
