"""WeCom callback handling, free of AWS: verify, decrypt, parse, and decide what to enqueue."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from kefu.crypto import CryptoError, WXBizMsgCrypt
from kefu.errors import HttpError
from kefu.xmlsafe import XmlRejected, parse_flat

SIGNED_PARAMS = ("msg_signature", "timestamp", "nonce")


class CallbackRejected(HttpError):
    """A callback request refused (bad signature, body or XML)."""


class CallbackUnverified(CallbackRejected):
    """Refused because the signature or the decryption failed: a forgery, or - when WeCom sends
    it - a Token, EncodingAESKey or CorpID that differs from WeCom's, which loses every callback.
    Kept apart from other bad input (oversized bodies, broken XML) so it can have its own alarm."""


class BadEvent(ValueError):
    """A decrypted payload that is not a usable event; ``tags`` names the XML tags at fault."""

    def __init__(self, tags: list[str]) -> None:
        self.tags = tuple(sorted(set(tags)))
        super().__init__(f"payload has missing or invalid {', '.join(self.tags)}")


# The XML tags the event reads; any other tag is kept in CallbackEvent.extra.
_TAGS = {"ToUserName": "to_user_name", "CreateTime": "create_time", "MsgType": "msg_type", "Event": "event",
         "Token": "token", "OpenKfId": "open_kfid"}  # nosec B105 - tag names
_REQUIRED = ("ToUserName", "CreateTime", "MsgType", "Event")
# A decimal integer: optional sign, digits in groups joined by single underscores, and a
# fraction of zeros only ("1700000000.0"). Anything else (a real fraction, hex, an exponent,
# non-ASCII digits) is refused.
_INTEGER = re.compile(r"[+-]?[0-9]+(?:_[0-9]+)*(?:\.0+)?")


def _integer(text: str) -> int | None:
    text = text.strip()
    if text.isascii() and text.isdigit():
        return int(text)
    if _INTEGER.fullmatch(text) is None:
        return None
    return int(text.partition(".")[0])


@dataclass(frozen=True)
class CallbackEvent:
    """The decrypted XML posted to the callback URL. It only says "pull now"; the content comes
    from kf/sync_msg using ``token``. Unrecognised tags (e.g. AuthAddOpenKfId / AuthDelOpenKfId
    on kf_account_auth_change, FromUserName) are kept in ``extra``."""

    to_user_name: str
    create_time: int
    msg_type: str
    event: str
    token: str | None = None
    open_kfid: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    KF_MSG_OR_EVENT: ClassVar[str] = "kf_msg_or_event"
    KF_ACCOUNT_AUTH_CHANGE: ClassVar[str] = "kf_account_auth_change"

    def __post_init__(self) -> None:
        if not (isinstance(self.to_user_name, str) and type(self.create_time) is int
                and isinstance(self.msg_type, str) and isinstance(self.event, str)
                and isinstance(self.token, (str, type(None))) and isinstance(self.open_kfid, (str, type(None)))
                and isinstance(self.extra, dict)):
            raise BadEvent([tag for tag, name in _TAGS.items() if not _valid(name, getattr(self, name))] or ["extra"])

    @classmethod
    def from_xml_fields(cls, fields: Mapping[str, str | None]) -> CallbackEvent:
        """Build from a flat mapping of XML tag -> text (parse_flat's result). Tags with no text
        (None) count as absent; only the PascalCase tags are recognised. CreateTime is an integer
        with surrounding whitespace ignored. Raises ``BadEvent`` naming every missing or invalid
        tag (ToUserName, CreateTime, MsgType and Event are required)."""
        known: dict[str, str] = {}
        extra: dict[str, str] = {}
        for tag, text in fields.items():
            if tag in _TAGS:
                if text is not None:
                    known[tag] = text
            else:
                extra[tag] = "" if text is None else text
        bad = [tag for tag in _REQUIRED if tag not in known]
        create_time = _integer(known.get("CreateTime", ""))
        if create_time is None and "CreateTime" in known:
            bad.append("CreateTime")
        if bad or create_time is None:
            raise BadEvent(bad)
        return cls(known["ToUserName"], create_time, known["MsgType"], known["Event"],
                   known.get("Token"), known.get("OpenKfId"), extra)

    @property
    def is_kf_msg_or_event(self) -> bool:
        return self.event == self.KF_MSG_OR_EVENT


def _valid(name: str, value: object) -> bool:
    if name == "create_time":
        return type(value) is int
    if name in ("token", "open_kfid"):
        return value is None or isinstance(value, str)
    return isinstance(value, str)


@dataclass(frozen=True)
class SyncJob:
    """What the sync function needs to pull: the account, the callback token, and when."""

    open_kfid: str
    token: str | None
    create_time: int

    def body(self) -> str:
        return json.dumps({"open_kfid": self.open_kfid, "token": self.token, "create_time": self.create_time})

    @property
    def group_id(self) -> str:
        return self.open_kfid

    @property
    def deduplication_id(self) -> str:
        """Identical for WeCom's retries of one callback, so the queue drops the repeats."""
        key = f"{self.open_kfid}\n{self.token}\n{self.create_time}"
        return hashlib.sha256(key.encode("utf-8")).hexdigest()


def sync_job(event: CallbackEvent) -> SyncJob | None:
    """The sync job a callback asks for; None for events that ask for no pull."""
    if not event.is_kf_msg_or_event or not event.open_kfid:
        return None
    return SyncJob(event.open_kfid, event.token or None, event.create_time)


def _param(query: Mapping[str, str], name: str) -> str:
    value = query.get(name)
    if not value:
        raise CallbackRejected(400, "missing_parameter", f"query parameter '{name}' is required")
    # Base64 and hex never contain spaces: a space is a '+' that a client failed to encode.
    return value.replace(" ", "+")


def _decrypt(crypto: WXBizMsgCrypt, query: Mapping[str, str], encrypted: str) -> str:
    signature, timestamp, nonce = (_param(query, name) for name in SIGNED_PARAMS)
    try:
        return crypto.verify_and_decrypt(signature, timestamp, nonce, encrypted)
    except CryptoError as exc:
        status = 403 if exc.reason == "bad_signature" else 400
        raise CallbackUnverified(status, exc.reason, str(exc)) from None


def verify_url(crypto: WXBizMsgCrypt, query: Mapping[str, str], accept: Callable[[str], bool] | None = None) -> str:
    """GET verification: the decrypted echostr, to be answered as the plain body."""
    if accept is None:
        return _decrypt(crypto, query, _param(query, "echostr"))
    signature, timestamp, nonce = (_param(query, name) for name in SIGNED_PARAMS)
    encrypted = _param(query, "echostr")
    try:
        crypto.verify(signature, timestamp, nonce, encrypted)
        return crypto.decrypt_from(encrypted, accept)[0]
    except CryptoError as exc:
        raise CallbackUnverified(403 if exc.reason == "bad_signature" else 400, exc.reason, str(exc)) from None


def read_event(crypto: WXBizMsgCrypt, query: Mapping[str, str], body: bytes, max_bytes: int,
               accept: Callable[[str], bool] | None = None) -> CallbackEvent:
    """POST: check size, envelope, signature and payload; return the event it carries. ``accept``:
    the receiveids taken (a provider's data callback: the corps it serves; by default the
    crypto's own), and then the event's ToUserName must be that receiveid."""
    fields, receive_id = _payload(crypto, query, body, max_bytes, accept)
    try:
        event = CallbackEvent.from_xml_fields(fields)
    except BadEvent as exc:
        raise CallbackRejected(400, "bad_payload", str(exc)) from None
    if event.msg_type != "event":
        raise CallbackRejected(400, "bad_payload", "payload <MsgType> must be event")
    if accept is not None and event.to_user_name != receive_id:
        raise CallbackUnverified(400, "bad_receiveid", "payload <ToUserName> is not the corp it was encrypted for")
    return event


def envelope_to(body: bytes, max_bytes: int) -> str | None:
    """The envelope's ToUserName (None when the body is not a readable envelope: read_event then
    says what is wrong with it)."""
    if len(body) > max_bytes or not body.strip():
        return None
    try:
        return parse_flat(body).get("ToUserName")
    except XmlRejected:
        return None


def _payload(crypto: WXBizMsgCrypt, query: Mapping[str, str], body: bytes, max_bytes: int,
             accept: Callable[[str], bool] | None = None) -> tuple[dict[str, str], str]:
    """The decrypted payload's XML fields, and the receiveid it was encrypted for."""
    if len(body) > max_bytes:
        raise CallbackRejected(413, "body_too_large", f"body exceeds {max_bytes} bytes")
    if not body.strip():
        raise CallbackRejected(400, "empty_body", "body must be the encrypted XML envelope")
    signature, timestamp, nonce = (_param(query, name) for name in SIGNED_PARAMS)
    envelope = _parse(body, "envelope")
    encrypted = envelope.get("Encrypt")
    if not encrypted:
        raise CallbackRejected(400, "missing_encrypt", "envelope has no <Encrypt> element")
    try:
        crypto.verify(signature, timestamp, nonce, encrypted)
        plain, receive_id = crypto.decrypt_from(encrypted, accept)
    except CryptoError as exc:
        status = 403 if exc.reason == "bad_signature" else 400
        raise CallbackUnverified(status, exc.reason, str(exc)) from None
    return _parse(plain, "payload"), receive_id


# The suite's command callbacks (指令回调) a service provider's app receives, by InfoType.
SUITE_TICKET, CREATE_AUTH, CHANGE_AUTH, CANCEL_AUTH = "suite_ticket", "create_auth", "change_auth", "cancel_auth"
RESET_PERMANENT_CODE = "reset_permanent_code"  # 代开发: the app's secret at a corp was reset
# Not a command WeCom sends: the data callback's kf_account_auth_change, queued as one.
KF_ACCOUNT_AUTH_CHANGE = "kf_account_auth_change"
_COMMAND_TEXT_MAX = 512


@dataclass(frozen=True)
class SuiteCommand:
    """A decrypted command callback: ``info_type`` and the fields that kind carries."""

    info_type: str
    suite_id: str
    timestamp: int
    suite_ticket: str | None = None
    auth_code: str | None = None
    auth_corp_id: str | None = None
    state: str | None = None

    @property
    def corp_group(self) -> str:
        """What orders this command against others (the corp, or the auth code before one is known)."""
        return self.auth_corp_id or "authorizing"


def read_command(crypto: WXBizMsgCrypt, query: Mapping[str, str], body: bytes, max_bytes: int,
                 suite_id: str) -> SuiteCommand:
    """POST to the suite's command URL: checked like an event, for the suite (receiveid = suite
    id). Each kind must carry its fields (suite_ticket: SuiteTicket; create_auth and
    reset_permanent_code: AuthCode; change_auth and cancel_auth: AuthCorpId)."""
    fields, _ = _payload(crypto, query, body, max_bytes)
    info_type = (fields.get("InfoType") or "").strip()
    timestamp = _integer(fields.get("TimeStamp") or "")
    bad = [tag for tag, ok in (("InfoType", bool(info_type)), ("TimeStamp", timestamp is not None),
                               ("SuiteId", fields.get("SuiteId") == suite_id)) if not ok]
    needs = {SUITE_TICKET: "SuiteTicket", CREATE_AUTH: "AuthCode", RESET_PERMANENT_CODE: "AuthCode",
             CHANGE_AUTH: "AuthCorpId", CANCEL_AUTH: "AuthCorpId"}.get(info_type)
    values = {tag: (fields.get(tag) or "").strip() or None for tag in ("SuiteTicket", "AuthCode", "AuthCorpId", "State")}
    if needs and not values[needs]:
        bad.append(needs)
    bad += [tag for tag, value in values.items() if value is not None and len(value) > _COMMAND_TEXT_MAX]
    if bad:
        raise CallbackRejected(400, "bad_payload", f"command has missing or invalid {', '.join(sorted(set(bad)))}")
    return SuiteCommand(info_type, suite_id, int(timestamp or 0), values["SuiteTicket"], values["AuthCode"],
                        values["AuthCorpId"], values["State"])


def _parse(document: str | bytes, where: str) -> dict[str, str]:
    try:
        return parse_flat(document)
    except XmlRejected as exc:
        raise CallbackRejected(400, exc.reason, f"{where}: {exc}") from None
