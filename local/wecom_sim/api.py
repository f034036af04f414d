"""The ``/cgi-bin/...`` endpoints of the kf API, and the checks their requests must pass."""

from __future__ import annotations

import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from local.wecom_sim.core import SimulatorCore
from local.wecom_sim.state import (
    ACCESS_TOKEN_TTL,
    ALLOWED_TRANSITIONS,
    BOT,
    BUSINESS_CARD_WINDOW,
    CODE_MSGTYPES,
    END_CODE_TTL,
    ENDED,
    HUMAN,
    LINK_DESC_MAX,
    LINK_TITLE_MAX,
    MAX_SYNC_LIMIT,
    MEDIA_CONTENT_TYPES,
    MEDIA_MAX_SIZE,
    MEDIA_MIN_REFUSED,
    MEDIA_MSGTYPES,
    MEDIA_TTL,
    MENU_CLICK_ID_MAX,
    MENU_CLICK_MAX,
    MENU_HEAD_TAIL_MAX,
    MENU_ITEM_TYPES,
    MENU_MAX_ITEMS,
    MENU_TEXT_MAX,
    MENU_VIEW_CONTENT_MAX,
    MINIPROGRAM_TITLE_MAX,
    MSGID_RE,
    NEW,
    POOL,
    REPLY_CODE_TTL,
    RETENTION,
    SCENE_RE,
    SEND_BUDGET,
    SEND_MSGTYPES,
    SESSION_WINDOW,
    TEXT_MAX,
    UNBOUND_MAX_CUSTOMERS,
    UNVERIFIED_MAX_CUSTOMERS,
    UPGRADE_GROUP,
    UPGRADE_MEMBER,
    URL_MAX,
    VOICE_MAX_SECONDS,
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
    multipart: bool = False  # the body is multipart/form-data (media/upload), not JSON


ROUTES: dict[str, _Route] = {
    "gettoken": _Route("GET", "_api_gettoken", needs_token=False),
    "kf/account/list": _Route("POST", "_api_account_list"),
    # The management endpoints (accounts, servicers, contact list, statistics) are in management.py.
    "kf/account/add": _Route("POST", "_api_account_add"),
    "kf/account/update": _Route("POST", "_api_account_update"),
    "kf/account/del": _Route("POST", "_api_account_del"),
    "kf/servicer/list": _Route("GET", "_api_servicer_list"),
    "kf/servicer/add": _Route("POST", "_api_servicer_add"),
    "kf/servicer/del": _Route("POST", "_api_servicer_del"),
    "user/simplelist": _Route("GET", "_api_user_simplelist"),
    "kf/get_corp_statistic": _Route("POST", "_api_corp_statistic"),
    "kf/get_servicer_statistic": _Route("POST", "_api_servicer_statistic"),
    "kf/get_corp_qualification": _Route("GET", "_api_corp_qualification"),
    "kf/add_contact_way": _Route("POST", "_api_add_contact_way"),
    "kf/sync_msg": _Route("POST", "_api_sync_msg"),
    "kf/service_state/get": _Route("POST", "_api_service_state_get"),
    "kf/service_state/trans": _Route("POST", "_api_service_state_trans"),
    "kf/send_msg": _Route("POST", "_api_send_msg"),
    "kf/send_msg_on_event": _Route("POST", "_api_send_msg_on_event"),
    "kf/customer/batchget": _Route("POST", "_api_customer_batchget"),
    "kf/customer/get_upgrade_service_config": _Route("GET", "_api_upgrade_config"),
    "kf/customer/upgrade_service": _Route("POST", "_api_upgrade_service"),
    "kf/customer/cancel_upgrade_service": _Route("POST", "_api_cancel_upgrade_service"),
    "media/upload": _Route("POST", "_api_media_upload", multipart=True),
    "media/get": _Route("GET", "_api_media_get"),
    # The servicer sidebar: WeCom's OAuth2 code exchange and the JS-SDK tickets.
    "auth/getuserinfo": _Route("GET", "_api_oauth_userinfo"),
    "get_jsapi_ticket": _Route("GET", "_api_jsapi_ticket"),
    "ticket/get": _Route("GET", "_api_agent_ticket"),
}
OAUTH_CODE_TTL = 300  # WeCom: an OAuth2 code lives 5 minutes and works once

# Payload bytes of one AMR-NB frame (after its one-byte header), by frame type; a frame is 20 ms.
_AMR_FRAME_BYTES = (12, 13, 15, 17, 19, 20, 26, 31, 5, 0, 0, 0, 0, 0, 0, 0)
_AMR_MAGIC = b"#!AMR\n"
_JPEG_MAGIC, _PNG_MAGIC = b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n"


def _int_field(body: dict[str, Any], key: str, default: int) -> int:
    value = body.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(40058, f"invalid parameter {key}")
    return value


def _amr_seconds(data: bytes) -> float:
    """How long an AMR-NB file plays: its frames after the magic line, 20 ms each."""
    frames, index = 0, len(_AMR_MAGIC)
    while index < len(data):
        index += 1 + _AMR_FRAME_BYTES[(data[index] >> 3) & 0x0F]
        frames += 1
    return frames * 0.02


def _sized_str(obj: dict[str, Any], where: str, key: str, limit: int | None, *, required: bool = True) -> str:
    """A string field of a send payload: missing, empty or not a string -> 40058, more than
    ``limit`` UTF-8 bytes -> 45002; both name the field (``where`` is its object, e.g. "link")."""
    name = f"{where}.{key}"
    value = obj.get(key)
    if value is None or value == "":
        if required:
            raise ApiError(40058, f"missing parameter {name}")
        return ""
    if not isinstance(value, str):
        raise ApiError(40058, f"invalid parameter {name}: must be a string")
    if limit is not None and _byte_len(value) > limit:
        raise ApiError(45002, f"content size out of limit: {name} over {limit} bytes")
    return value


def _http_url(obj: dict[str, Any], where: str, key: str) -> str:
    url = _sized_str(obj, where, key, URL_MAX)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ApiError(40058, f"invalid parameter {where}.{key}: needs an http(s) URL")
    return url


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

    def _api_oauth_userinfo(self, query: dict[str, str], _body: dict[str, Any]) -> dict[str, Any]:
        """The member a WeCom OAuth2 code was issued to; 40029 for a code unknown, used or over
        five minutes old (a code works once)."""
        held = self._oauth_codes.pop(query.get("code", ""), None)
        if held is None or self.now() - held[1] > OAUTH_CODE_TTL:
            raise ApiError(40029, "invalid code")
        return {"userid": held[0]}

    def _api_jsapi_ticket(self, _query: dict[str, str], _body: dict[str, Any]) -> dict[str, Any]:
        return self._ticket("corp")

    def _api_agent_ticket(self, query: dict[str, str], _body: dict[str, Any]) -> dict[str, Any]:
        if query.get("type") != "agent_config":
            raise ApiError(40058, "invalid parameter type (agent_config)")
        return self._ticket("agent")

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
        users: list[dict[str, Any]] = [
            {"userid": s.userid, "status": s.status, "stop_type": s.stop_type} for s in account.servicers.values()
        ]
        return {"servicer_list": users + [{"department_id": d} for d in account.departments]}

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
            if open_kfid:
                return kfid == open_kfid and item.get("send_time", 0) >= cutoff
            # Unfiltered, only the accounts this app manages (a deleted account's items are gone).
            account = self._accounts.get(kfid)
            return account is not None and account.manage_privilege and item.get("send_time", 0) >= cutoff

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
            # A servicer in their own name, or a member of a department that serves the account.
            servicer = self._servicer_of(account, servicer_userid) if isinstance(servicer_userid, str) else None
            if servicer is None or servicer.status != 0:
                raise ApiError(95014, f"user is not servicer or not receiving: {servicer_userid!r}")
            if not self._member_visible(servicer_userid):
                # The reference: servicers the app operates must be inside its visible range.
                raise ApiError(60011, f"servicer {servicer_userid} is outside the app's visible range")
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
        if not self._within_capacity(touser):
            raise ApiError(95003, "consultation capacity out of limit: the corp's verification or 视频号 binding")
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
        if msgtype == "business_card":
            # The reference gives "one business card per 48 h" without saying per what; the
            # simulator takes the stricter reading: per customer, whichever kf account sends.
            last_card = self._business_cards.get(touser)
            if last_card is not None and now - last_card < BUSINESS_CARD_WINDOW:
                raise ApiError(95025)
            self._business_cards[touser] = now
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
        account = self._api_account(code.open_kfid)
        if not self._within_capacity(code.external_userid):
            raise ApiError(95003, "consultation capacity out of limit: the corp's verification or 视频号 binding")
        msgtype = self._check_payload(body, CODE_MSGTYPES[code.kind])
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

    def _api_upgrade_config(self, _query: dict[str, str], _body: dict[str, Any]) -> dict[str, Any]:
        return self._upgrade_config_view()

    def _api_upgrade_service(self, _query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        account = self._api_account(body.get("open_kfid"))
        euid = self._api_customer(body)
        kind = body.get("type")
        if not isinstance(kind, int) or isinstance(kind, bool) or kind not in (UPGRADE_MEMBER, UPGRADE_GROUP):
            raise ApiError(40058, "invalid parameter type: 1 (member) or 2 (group chat)")
        key, id_key = ("member", "userid") if kind == UPGRADE_MEMBER else ("groupchat", "chat_id")
        offer = body.get(key)
        if not isinstance(offer, dict):
            raise ApiError(40058, f"missing parameter {key}")
        target = _sized_str(offer, key, id_key, None)
        wording = _sized_str(offer, key, "wording", None, required=False)
        config = self._upgrade_config
        if kind == UPGRADE_MEMBER:
            departments = self._members.get(target, set())
            inside = target in config["userids"] or bool(departments.intersection(config["department_ids"]))
        else:
            inside = target in config["chat_ids"]
        if not inside:
            # WeCom publishes no errcode for a target outside the admin's 升级服务 configuration;
            # the simulator assumes 40058 (invalid parameter).
            raise ApiError(40058, f"invalid parameter {key}.{id_key}: {target} is outside the configured upgrade range")
        session = self._session(account.open_kfid, euid)
        now = self.now()
        recent = [t for t in (session.last_customer_msg, session.last_entered) if t is not None]
        if not any(now - t <= SESSION_WINDOW for t in recent):
            # Not documented: the simulator assumes the offer, like a send, needs the customer to
            # have entered or written to this account within 48 h (else 95002, as send_msg).
            raise ApiError(95002, "send msg time limit: the customer has not entered or written within 48 hours")
        self._upgrade_offers.append(
            {"open_kfid": account.open_kfid, "external_userid": euid, "type": kind, "target": target,
             "wording": wording, "time": now, "cancelled": False}
        )
        return {}

    def _api_cancel_upgrade_service(self, _query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        account = self._api_account(body.get("open_kfid"))
        euid = self._api_customer(body)
        outstanding = [
            offer for offer in self._upgrade_offers
            if offer["open_kfid"] == account.open_kfid and offer["external_userid"] == euid and not offer["cancelled"]
        ]
        if not outstanding:
            # Not documented: the simulator assumes cancelling with no offer outstanding is an
            # invalid parameter (40058) rather than a no-op.
            raise ApiError(40058, "invalid parameter: no upgrade offer outstanding for this customer")
        for offer in outstanding:
            offer["cancelled"] = True
        return {}

    def _api_media_upload(self, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        # The reference lists 40004/40005/40006/40009/40011 only as a group ("media type/size")
        # and 45001 as "media too large". The simulator answers: 40004 for the type parameter,
        # 40005 for a file whose content is not of that type, 40006 for a file of 5 bytes or
        # less, 45001 for one over its type's limit (size, or a voice's 60 seconds).
        kind = query.get("type", "")
        if kind not in MEDIA_MSGTYPES:
            raise ApiError(40004, f"invalid media type {kind!r}: type is image, voice, video or file")
        upload = body.get("media")
        if not isinstance(upload, dict):
            raise ApiError(40058, "missing parameter media: the file goes in the multipart field named media")
        filename = upload.get("filename") or ""
        if not filename:
            raise ApiError(40058, "missing parameter media filename: the media part needs a filename")
        data: bytes = upload.get("data") or b""
        if len(data) <= MEDIA_MIN_REFUSED:
            raise ApiError(40006, f"invalid file size: {len(data)} bytes, a file must be larger than 5 bytes")
        if len(data) > MEDIA_MAX_SIZE[kind]:
            raise ApiError(45001, f"media size out of limit: {len(data)} bytes, a {kind} takes at most "
                                  f"{MEDIA_MAX_SIZE[kind]}")
        content_type = upload.get("content_type") or MEDIA_CONTENT_TYPES[kind][0]
        if kind == "image":
            if not data.startswith((_JPEG_MAGIC, _PNG_MAGIC)):
                raise ApiError(40005, "invalid file type: an image must be a JPG or PNG file")
            content_type = "image/jpeg" if data.startswith(_JPEG_MAGIC) else "image/png"
        elif kind == "voice":
            # Only AMR-NB ("#!AMR\n"): the reference says AMR, and AMR-WB may well be refused.
            if not data.startswith(_AMR_MAGIC):
                raise ApiError(40005, "invalid file type: a voice must be an AMR file")
            if _amr_seconds(data) > VOICE_MAX_SECONDS:
                raise ApiError(45001, f"media size out of limit: a voice plays at most {VOICE_MAX_SECONDS} s")
            content_type = "audio/amr"
        elif kind == "video":
            if data[4:8] != b"ftyp":
                raise ApiError(40005, "invalid file type: a video must be an MP4 file")
            content_type = "video/mp4"
        created = self.now()
        media_id = self._store_media(content_type, data, filename, kind, "upload")
        # created_at is a string, as the reference shows it (some SDK fixtures have an int).
        return {"type": kind, "media_id": media_id, "created_at": str(int(created))}

    def _api_media_get(self, query: dict[str, str], _body: dict[str, Any]) -> _Binary:
        media = self._media.get(query.get("media_id", ""))
        if media is None or self.now() - media.created > MEDIA_TTL:
            raise ApiError(40007)
        return _Binary(media.content_type, media.data, media.filename)

    # ------------------------------------------------------------------ validation helpers

    def _api_account(self, open_kfid: Any) -> _Account:
        """The account a call names, which this app must manage: unknown -> 95000, deleted
        (kf/account/del) -> 95004. An account the app does not manage answers 48002 on every call
        that names it (only account/list shows it): the reference says only API-managed accounts
        can be operated and publishes no errcode for trying; reads of it (servicer/list,
        service_state/get, sync_msg, statistics) are refused too, the stricter reading."""
        account = self._accounts.get(open_kfid) if isinstance(open_kfid, str) else None
        if account is None:
            raise ApiError(95004 if isinstance(open_kfid, str) and open_kfid in self._deleted_accounts else 95000)
        if not account.manage_privilege:
            raise ApiError(48002, f"api forbidden: kf account {account.open_kfid} is not managed by this app")
        return account

    def _within_capacity(self, external_userid: str) -> bool:
        """Whether the corp's kf may serve this customer: unverified corps serve 100 customers
        (cumulative), verified ones without a bound 视频号 10,000. The simulator counts customers
        in the order it first knew them and refuses sends to those past the cap (95003)."""
        cap = None if self._verified and self._channels_bound else \
            UNBOUND_MAX_CUSTOMERS if self._verified else UNVERIFIED_MAX_CUSTOMERS
        return cap is None or list(self._customers).index(external_userid) < cap

    def _api_customer(self, body: dict[str, Any]) -> str:
        euid = _str_field(body, "external_userid")
        if euid not in self._customers:
            raise ApiError(40096)
        return euid

    def _check_payload(self, body: dict[str, Any], allowed: frozenset[str]) -> str:
        """The msgtype of a send, once its payload passed WeCom's checks: an unknown or unallowed
        msgtype -> 40008, a missing or ill-typed field -> 40058, a field over its byte limit ->
        45002, a media_id that cannot be sent -> 40007 (each naming the field)."""
        msgtype = body.get("msgtype")
        if not isinstance(msgtype, str) or msgtype not in allowed:
            raise ApiError(40008, f"invalid message type {msgtype!r}")
        payload = body.get(msgtype)
        if not isinstance(payload, dict):
            raise ApiError(40058, f"missing object {msgtype}")
        if msgtype == "text":
            _sized_str(payload, "text", "content", TEXT_MAX)
        elif msgtype in MEDIA_MSGTYPES:
            self._check_media(payload, msgtype, "media_id", msgtype)
        elif msgtype == "msgmenu":
            self._check_menu(payload)
        elif msgtype == "link":
            # The reference says an over-long title is truncated; the simulator refuses it (45002).
            _sized_str(payload, "link", "title", LINK_TITLE_MAX)
            _sized_str(payload, "link", "desc", LINK_DESC_MAX, required=False)
            _http_url(payload, "link", "url")
            self._check_media(payload, "link", "thumb_media_id", "image")
        elif msgtype == "miniprogram":
            self._check_appid(payload, "miniprogram")
            _sized_str(payload, "miniprogram", "title", MINIPROGRAM_TITLE_MAX, required=False)
            _sized_str(payload, "miniprogram", "pagepath", None)
            self._check_media(payload, "miniprogram", "thumb_media_id", "image")
        elif msgtype == "location":
            lat, lng = payload.get("latitude"), payload.get("longitude")
            if not isinstance(lat, (int, float)) or not isinstance(lng, (int, float)) \
                    or not -90 <= lat <= 90 or not -180 <= lng <= 180:
                raise ApiError(40058, "invalid latitude/longitude")
        elif msgtype == "ca_link":
            link = payload.get("link_url")
            if not isinstance(link, str) or not link.startswith("https://work.weixin.qq.com/ca/"):
                raise ApiError(40058, "invalid ca_link.link_url")
        elif msgtype == "business_card":
            userid = _sized_str(payload, "business_card", "userid", None)
            if not self._is_member(userid):
                raise ApiError(60111, f"userid not found: business_card.userid {userid}")
        return msgtype

    def _check_media(self, obj: dict[str, Any], where: str, key: str, kind: str) -> None:
        """``obj[key]`` must name a media the corp stored (media/upload, or add_media), not yet
        expired (3 days), of type ``kind``; else 40007. A media_id from a customer's message is
        refused as well: the reference documents sending only media the corp uploaded, and
        whether WeCom forwards a customer's is unknown, so the simulator takes the stricter way."""
        media_id = _sized_str(obj, where, key, None)
        media = self._media.get(media_id)
        if media is None or media.origin == "customer":
            raise ApiError(40007, f"invalid media_id {where}.{key}: unknown to the corp")
        if self.now() - media.created > MEDIA_TTL:
            raise ApiError(40007, f"invalid media_id {where}.{key}: expired (3 days)")
        if media.kind != kind:
            raise ApiError(40007, f"invalid media_id {where}.{key}: a media of type {media.kind}, not {kind}")

    def _check_appid(self, obj: dict[str, Any], where: str) -> None:
        appid = _sized_str(obj, where, "appid", None)
        if appid not in self._miniprogram_appids:
            raise ApiError(90207, f"invalid miniprogram appid {where}.appid: {appid} is not linked to the corp")

    def _check_menu(self, menu: dict[str, Any]) -> None:
        for key in ("head_content", "tail_content"):
            _sized_str(menu, "msgmenu", key, MENU_HEAD_TAIL_MAX, required=False)
        items = menu.get("list")
        if not isinstance(items, list):
            # Not documented: a menu without items is refused (40058), as a menu is its items.
            raise ApiError(40058, "missing parameter msgmenu.list")
        if len(items) > MENU_MAX_ITEMS:
            raise ApiError(95008, f"msgmenu item count out of limit: {len(items)} items, at most {MENU_MAX_ITEMS}")
        if not items:
            raise ApiError(40058, "invalid parameter msgmenu.list: a menu needs at least one item")
        click_ids: dict[str, int] = {}
        for index, entry in enumerate(items):
            where = f"msgmenu.list[{index}]"
            kind = entry.get("type") if isinstance(entry, dict) else None
            if not isinstance(kind, str) or kind not in MENU_ITEM_TYPES:
                raise ApiError(95009, f"invalid msgmenu item type {kind!r} at {where}")
            item = entry.get(kind)
            if not isinstance(item, dict):
                raise ApiError(40058, f"missing object {where}.{kind}")
            where = f"{where}.{kind}"
            if kind == "click":
                click_id = _sized_str(item, where, "id", MENU_CLICK_ID_MAX)
                if click_id in click_ids:
                    raise ApiError(40058, f"invalid parameter {where}.id: {click_id!r} is also the id of "
                                          f"msgmenu.list[{click_ids[click_id]}]")
                click_ids[click_id] = index
                _sized_str(item, where, "content", MENU_CLICK_MAX)
            elif kind == "view":
                _http_url(item, where, "url")
                _sized_str(item, where, "content", MENU_VIEW_CONTENT_MAX)
            elif kind == "miniprogram":
                self._check_appid(item, where)
                _sized_str(item, where, "pagepath", None)
                # No limit is documented for this content; the simulator takes the view item's.
                _sized_str(item, where, "content", MENU_VIEW_CONTENT_MAX)
            else:
                _sized_str(item, where, "content", MENU_TEXT_MAX)
                no_newline = item.get("no_newline", 0)
                if not isinstance(no_newline, int) or isinstance(no_newline, bool) or no_newline not in (0, 1):
                    raise ApiError(40058, f"invalid parameter {where}.no_newline: 0 or 1")

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
