"""WeCom callback handling, free of AWS: verify, decrypt, parse, and decide what to enqueue."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import ValidationError

from kefu.crypto import CryptoError, WXBizMsgCrypt
from kefu.errors import HttpError
from kefu.wecom.models import CallbackEvent
from kefu.xmlsafe import XmlRejected, parse_flat

SIGNED_PARAMS = ("msg_signature", "timestamp", "nonce")


class CallbackRejected(HttpError):
    """A callback request refused (bad signature, body or XML)."""


class CallbackUnverified(CallbackRejected):
    """Refused because the signature or the decryption failed: a forgery, or - when WeCom sends
    it - a Token, EncodingAESKey or CorpID that differs from WeCom's, which loses every callback.
    Kept apart from other bad input (oversized bodies, broken XML) so it can have its own alarm."""


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


def verify_url(crypto: WXBizMsgCrypt, query: Mapping[str, str]) -> str:
    """GET verification: the decrypted echostr, to be answered as the plain body."""
    return _decrypt(crypto, query, _param(query, "echostr"))


def read_event(crypto: WXBizMsgCrypt, query: Mapping[str, str], body: bytes, max_bytes: int) -> CallbackEvent:
    """POST: check size, envelope, signature and payload; return the event it carries."""
    if len(body) > max_bytes:
        raise CallbackRejected(413, "body_too_large", f"body exceeds {max_bytes} bytes")
    if not body.strip():
        raise CallbackRejected(400, "empty_body", "body must be the encrypted XML envelope")
    for name in SIGNED_PARAMS:
        _param(query, name)
    envelope = _parse(body, "envelope")
    encrypted = envelope.get("Encrypt")
    if not encrypted:
        raise CallbackRejected(400, "missing_encrypt", "envelope has no <Encrypt> element")
    fields = _parse(_decrypt(crypto, query, encrypted), "payload")
    try:
        event = CallbackEvent.from_xml_fields(fields)
    except ValidationError as exc:
        names = ", ".join(sorted({str(e["loc"][0]) for e in exc.errors() if e["loc"]})) or "payload"
        raise CallbackRejected(400, "bad_payload", f"payload has missing or invalid {names}") from None
    if event.msg_type != "event":
        raise CallbackRejected(400, "bad_payload", "payload <MsgType> must be event")
    return event


def _parse(document: str | bytes, where: str) -> dict[str, str]:
    try:
        return parse_flat(document)
    except XmlRejected as exc:
        raise CallbackRejected(400, exc.reason, f"{where}: {exc}") from None
