"""The customer-side driver: what customers, servicers and the WeCom client do to the corp."""

from __future__ import annotations

import hashlib
import json
import secrets
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs, urlsplit

from local.wecom_sim.callbacks import CallbackSender
from local.wecom_sim.state import (
    CORP_STAT_FIELDS,
    END_CODE_TTL,
    ENDED,
    HUMAN,
    MEDIA_CONTENT_TYPES,
    MEDIA_MSGTYPES,
    NEW,
    POOL,
    REPLY_CODE_TTL,
    ROOT_DEPARTMENT,
    SERVICER_STAT_FIELDS,
    STAT_TZ_OFFSET,
    WELCOME_CODE_TTL,
    _Account,
    _byte_len,
    _random_id,
    _Servicer,
)


def _fake_media(msgtype: str) -> bytes:
    noise = secrets.token_bytes(64)
    if msgtype == "image":
        return b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + noise + b"\xff\xd9"
    if msgtype == "voice":
        return b"#!AMR\n" + noise
    if msgtype == "video":
        return b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + noise
    return b"kefu simulator file\n" + noise


class CustomerDriver(CallbackSender):
    """Python methods (also the ``/sim/<action>`` admin endpoints) that play the other side of the chat."""

    # ------------------------------------------------------------------ customer-side driver

    def add_account(
        self,
        open_kfid: str | None = None,
        name: str = "Kefu Demo",
        manage_privilege: bool = True,
        avatar: str | None = None,
    ) -> str:
        """An account that exists at WeCom already (made in the admin console). With
        ``manage_privilege=False`` it is assigned to another app: account/list shows it, every
        other call naming it answers 48002, and no callback is sent for it."""
        with self._lock:
            kfid = open_kfid or _random_id("wk", 30)
            if kfid in self._accounts:
                raise ValueError(f"account {kfid} exists")
            digest = hashlib.sha256(kfid.encode()).hexdigest()[:24]
            self._accounts[kfid] = _Account(
                kfid, name, avatar or f"https://wework.qpic.cn/wwhead/{digest}/0", manage_privilege
            )
            return kfid

    def add_customer(self, external_userid: str, nickname: str | None = None) -> str:
        """Know a customer (one who wrote before, e.g. history added with add_raw_item) without
        logging anything."""
        with self._lock:
            return self._customer(external_userid, nickname).external_userid

    def add_servicer(self, open_kfid: str, userid: str, status: int = 0, stop_type: int = 0) -> None:
        if status not in (0, 1):
            raise ValueError("status is 0 (receiving) or 1 (stopped)")
        with self._lock:
            self._require_account(open_kfid).servicers[userid] = _Servicer(userid, status, stop_type)
            self._members.setdefault(userid, set())

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
            session.last_entered = now
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
            media_id = self._store_media(
                content_type, data or _fake_media(msgtype), filename or f"{msgtype}.{ext}", msgtype, "customer"
            )
        return self._customer_message(open_kfid, external_userid, msgtype, {"media_id": media_id})

    def add_media(
        self, data: bytes, content_type: str = "image/jpeg", filename: str = "media.jpg", kind: str | None = None
    ) -> str:
        """Store a blob as if uploaded and return its media_id (for links, avatars and tests of
        media/get); ``kind`` (image, voice, video, file: the msgtype it may be sent as) defaults to
        what ``content_type`` says. Unlike media/upload, nothing about the blob is checked."""
        if kind is not None and kind not in MEDIA_MSGTYPES:
            raise ValueError(f"kind must be one of {MEDIA_MSGTYPES}")
        with self._lock:
            return self._store_media(content_type, data, filename, kind)

    def add_member(self, userid: str, department_ids: list[int] | None = None) -> None:
        """Know a corp member (besides the servicers, who are known already): a business_card may
        name them, and an upgrade range reaches them through their departments."""
        if not userid:
            raise ValueError("userid is required")
        with self._lock:
            departments = {int(d) for d in department_ids or ()}
            for department_id in departments - set(self._departments):
                self._new_department(department_id, ROOT_DEPARTMENT)  # under the root, as add_department
            self._members.setdefault(userid, set()).update(departments)

    def add_department(self, department_id: int, members: list[str] | None = None, parent: int | None = None) -> None:
        """Make a department (under ``parent``, default the root department 1, which always
        exists) and put ``members`` in it; they become known corp members (add_member). A
        department that exists already takes the members (a different parent is an error). A
        member who is in no department is in the root department."""
        if isinstance(department_id, bool) or not isinstance(department_id, int) or department_id < 1:
            raise ValueError("department_id is a positive integer")
        if any(not isinstance(m, str) or not m for m in members or ()):
            raise ValueError("members are userids")
        with self._lock:
            if department_id in self._departments:
                if parent is not None and self._departments[department_id] != parent:
                    raise ValueError(f"department {department_id} exists under {self._departments[department_id]}")
            else:
                self._new_department(department_id, ROOT_DEPARTMENT if parent is None else parent)
            for userid in members or ():
                self._members.setdefault(userid, set()).add(department_id)

    def set_visible_departments(self, department_ids: list[int] | None = None) -> None:
        """The app's visible range (可见范围): these departments and those below them (None: the
        whole corp, the default). user/simplelist of a department outside it answers 60011, as do
        servicer/add and del (per item) and service_state/trans for a member outside it."""
        with self._lock:
            if department_ids is None:
                self._visible_departments = None
                return
            unknown = {int(d) for d in department_ids} - set(self._departments)
            if unknown:
                raise ValueError(f"unknown departments {sorted(unknown)}")
            self._visible_departments = {int(d) for d in department_ids}

    def set_statistic(
        self,
        day: str,
        open_kfid: str | None,
        figures: dict[str, Any] | None,
        servicer_userid: str | None = None,
        kind: str | None = None,
    ) -> None:
        """What kf/get_corp_statistic (``kind`` "corp") or kf/get_servicer_statistic ("servicer")
        will report for ``day`` ('YYYY-MM-DD', China time): the corp's total (open_kfid None) or
        an account's, a servicer's (servicer_userid) or all the account's servicers' (kind
        "servicer" without servicer_userid). ``kind`` defaults to "servicer" when a
        servicer_userid is given, else "corp". Figures use the documented field names only; None
        clears the day. A day without figures has no ``statistic`` key; a day's figures show from
        06:00 the next day."""
        kind = kind or ("servicer" if servicer_userid else "corp")
        if kind not in ("corp", "servicer"):
            raise ValueError("kind is corp or servicer")
        if kind == "corp" and servicer_userid:
            raise ValueError("a servicer_userid goes with kind servicer")
        if kind == "servicer" and not open_kfid:
            raise ValueError("servicer statistics are per account: give open_kfid")
        try:
            parsed = datetime.strptime(day, "%Y-%m-%d")
        except (TypeError, ValueError) as exc:
            raise ValueError("day is 'YYYY-MM-DD'") from exc
        midnight = int(parsed.replace(tzinfo=timezone(timedelta(seconds=STAT_TZ_OFFSET))).timestamp())
        if figures is not None:
            allowed = CORP_STAT_FIELDS if kind == "corp" else SERVICER_STAT_FIELDS
            unknown = set(figures) - allowed
            if unknown:
                raise ValueError(f"not {kind} statistic fields: {sorted(unknown)}")
            if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in figures.values()):
                raise ValueError("figures are numbers")
        with self._lock:
            if open_kfid:
                self._require_account(open_kfid)
            key = (kind, midnight, open_kfid or None, servicer_userid or None)
            if figures is None:
                self._statistics.pop(key, None)
            else:
                self._statistics[key] = dict(figures)

    def set_qualification(self, verified: bool = True, wechat_channels_binding: bool = True) -> dict[str, Any]:
        """The corp's standing at WeCom (default: verified, 视频号 bound). Unverified: at most 10
        kf accounts (account/add answers 95027) and 100 customers served, cumulative; verified
        without a bound 视频号: 10,000 customers. Sends to a customer past the cap (counted in the
        order the simulator first knew them) answer 95003. Returns what get_corp_qualification
        answers."""
        with self._lock:
            self._verified = bool(verified)
            self._channels_bound = bool(wechat_channels_binding)
            return {"wechat_channels_binding": self._channels_bound}

    def _new_department(self, department_id: int, parent: int) -> None:
        if parent not in self._departments:
            raise ValueError(f"unknown parent department {parent}")
        self._departments[department_id] = parent

    def link_miniprogram(self, appid: str) -> None:
        """Link a mini program to the corp: only linked appids may be sent (miniprogram messages
        and menu items); others answer 90207."""
        if not appid:
            raise ValueError("appid is required")
        with self._lock:
            self._miniprogram_appids.add(appid)

    def oauth_code(self, userid: str) -> str:
        """What WeCom appends to the sidebar's URL for the member who opened it (OAuth2): a code
        auth/getuserinfo exchanges once, within five minutes, for the userid."""
        if not userid:
            raise ValueError("userid is required")
        with self._lock:
            code = secrets.token_urlsafe(24)
            self._oauth_codes[code] = (userid, self.now())
            return code

    def jsapi_ticket(self, kind: str = "corp") -> str:
        """The current JS-SDK ticket (``corp``: get_jsapi_ticket; ``agent``: ticket/get
        agent_config), as a stub of the JS-SDK checks a page's signatures with."""
        with self._lock:
            return str(self._ticket(kind)["ticket"])

    def set_upgrade_config(
        self,
        userids: list[str] | None = None,
        department_ids: list[int] | None = None,
        chat_ids: list[str] | None = None,
    ) -> dict[str, Any]:
        """Set the 升级服务 ranges an admin configures in WeCom (what get_upgrade_service_config
        answers); the members named become known members. Returns the configuration as the API
        answers it."""
        with self._lock:
            self._upgrade_config = {
                "userids": list(dict.fromkeys(userids or ())),
                "department_ids": list(dict.fromkeys(int(d) for d in department_ids or ())),
                "chat_ids": list(dict.fromkeys(chat_ids or ())),
            }
            for userid in self._upgrade_config["userids"]:
                self._members.setdefault(userid, set())
            return self._upgrade_config_view()

    def upgrade_offers(self, open_kfid: str | None = None, external_userid: str | None = None) -> list[dict[str, Any]]:
        """Every upgrade_service offer made (oldest first): open_kfid, external_userid, type (1
        member, 2 group chat), target (userid or chat_id), wording, time and cancelled."""
        with self._lock:
            return [
                dict(offer)
                for offer in self._upgrade_offers
                if open_kfid in (None, offer["open_kfid"]) and external_userid in (None, offer["external_userid"])
            ]

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

    def end_session_silently(self, open_kfid: str, external_userid: str) -> dict[str, Any]:
        """The session ends at WeCom with nothing for the client to see: state 4, no servicer, no
        session_status_change event in sync_msg, no callback, no msg_code.

        WeCom does this when a session times out on its own (a servicer or the bot left it without
        ending it) or when it is ended somewhere the kf API reports nothing of. Codes issued for the
        session's earlier state then answer 95018, sends answer 95018, and service_state/get
        answers 4. As after any end, the customer's next message starts a new session in state 0
        (customer_says), and a servicer who writes reopens it (servicer_says, change_type 4).
        Returns the session as ``session()`` shows it."""
        with self._lock:
            session = self._known_session(open_kfid, external_userid)
            if session.state == ENDED:
                raise ValueError("session already ended")
            session.state, session.servicer_userid = ENDED, ""
            return self._session_view(session)

    def move_session_silently(self, open_kfid: str, external_userid: str, servicer_userid: str) -> dict[str, Any]:
        """The session goes to a servicer (state 3) at WeCom with nothing for the client to see: no
        session_status_change event in sync_msg, no callback, no msg_code.

        At WeCom a session also moves outside the kf API: a servicer picks it in WeCom's own client
        (from the pool, or from the bot), or an admin reassigns it. When no event of such a move
        reaches the client, its idea of the session drifts from WeCom's and service_state/get is
        the only way to see the truth; this is that move. The servicer must be one of the
        account's (receiving or not, as for pickup and transfer); an ended session cannot be
        moved (a servicer reopens it by writing), nor a session already with that servicer. The
        move counts as the session's entry into state 3: a later service_state/trans to another
        servicer gives no msg_code, and codes issued for the earlier state answer 95018.
        Returns the session as ``session()`` shows it."""
        with self._lock:
            self._require_servicer(open_kfid, servicer_userid)
            session = self._known_session(open_kfid, external_userid)
            if session.state == ENDED:
                raise ValueError("an ended session cannot be moved; a servicer reopens it by writing (servicer_says)")
            if session.state == HUMAN and session.servicer_userid == servicer_userid:
                raise ValueError(f"session is already with {servicer_userid}")
            session.state, session.servicer_userid = HUMAN, servicer_userid
            session.reply_codes.add(HUMAN)
            return self._session_view(session)

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

    # ------------------------------------------------------------------ driver helpers

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
