"""The ``/cgi-bin/...`` endpoints of the kf API, and the checks their requests must pass."""

from __future__ import annotations

import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any

from local.wecom_sim.core import SimulatorCore
from local.wecom_sim.state import (
    ACCESS_TOKEN_TTL,
    ALLOWED_TRANSITIONS,
    BOT,
    CODE_MSGTYPES,
    END_CODE_TTL,
    ENDED,
    HUMAN,
    MAX_SYNC_LIMIT,
    MEDIA_MSGTYPES,
    MEDIA_TTL,
    MENU_ITEM_TYPES,
    MSGID_RE,
    NEW,
    POOL,
    REPLY_CODE_TTL,
    RETENTION,
    SCENE_RE,
    SEND_BUDGET,
    SEND_MSGTYPES,
    SESSION_WINDOW,
    ApiError,
    _Account,
    _Binary,
    _byte_len,
    _random_id,
)


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


class ApiEndpoints(SimulatorCore):
    """One ``_api_*`` method per kf API path (see ROUTES); each runs with the lock held."""

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
            # The API reference (6.1 kf/send_msg) says only that the call errors; 40058 is Kefu's
            # assumption (kefu.wecom.errors.USED_MSGID). The text avoids "duplicate" on purpose:
            # clients must settle on the errcode, as WeCom says errmsg may change.
            raise ApiError(40058, f"invalid msgid {msgid}: already used in this kf account")
        return msgid
