"""The conversation API's reads: an account's recent conversations, one conversation with both
sides in order (Kefu's own sends included), and what Kefu knows of a customer. Pages are opaque
cursors (the index position, base64 JSON); media come as short-lived presigned URLs."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict
from decimal import Decimal
from typing import Any

from kefu.errors import HttpError
from kefu.ids import is_open_kfid
from kefu.routing.session import Session

PAGE_MAX = 100
MEDIA_URL_SECONDS = 300


def bad(field: str, message: str) -> HttpError:
    return HttpError(400, f"invalid_{field}", message)


def plain(value: Any) -> Any:
    """DynamoDB's numbers and sets as JSON's."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [plain(v) for v in value]
    return value


def encode_cursor(key: dict[str, Any] | None) -> str | None:
    return base64.urlsafe_b64encode(json.dumps(plain(key)).encode()).decode() if key else None


def decode_cursor(text: str | None, fields: set[str]) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        key = json.loads(base64.urlsafe_b64decode(text.encode()))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise bad("cursor", "cursor is not one this API gave") from None
    if not isinstance(key, dict) or set(key) != fields or not all(isinstance(v, (str, int)) for v in key.values()):
        raise bad("cursor", "cursor is not one this API gave")
    return key


SEEN_MAX = 300


def _tag(euid: str) -> str:
    return hashlib.sha256(euid.encode()).hexdigest()[:8]


def _recent_cursor(text: str | None) -> tuple[dict[str, Any] | None, list[str]]:
    if not text:
        return None, []
    try:
        data = json.loads(base64.urlsafe_b64decode(text.encode()))
        key, seen = data["key"], data["seen"]
    except (ValueError, TypeError, KeyError, binascii.Error, UnicodeDecodeError):
        raise bad("cursor", "cursor is not one this API gave") from None
    if not isinstance(seen, list) or not all(isinstance(t, str) for t in seen):
        raise bad("cursor", "cursor is not one this API gave")
    return decode_cursor(encode_cursor(key), {"msgid", "open_kfid", "ts"}), seen


def account_of(query: dict[str, str]) -> str:
    account = query.get("account") or ""
    if not is_open_kfid(account):
        raise bad("account", "account (the kf account's open_kfid, wk...) is required")
    return account


def page_size(query: dict[str, str], default: int) -> int:
    text = query.get("limit") or str(default)
    if not text.isdigit() or not 1 <= int(text) <= PAGE_MAX:
        raise bad("limit", f"limit is a whole number from 1 to {PAGE_MAX}")
    return int(text)


def message_row(item: dict[str, Any], media_url: Callable[[str], str] | None = None) -> dict[str, Any]:
    """One stored item as the API shows it: who, when, what (the message as WeCom or Kefu had it)."""
    raw = json.loads(item.get("raw") or "{}")
    msgtype = str(item.get("msgtype") or "")
    kefu = item.get("sender") == "kefu"
    row: dict[str, Any] = {
        "msgid": item["msgid"], "send_time": plain(item.get("send_time")), "msgtype": msgtype,
        "sender": "kefu" if kefu else {3: "customer", 4: "system", 5: "servicer"}.get(plain(item.get("origin")), "unknown"),
        "message": raw.get(msgtype) if not kefu else raw.get(msgtype, raw),
    }
    for field in ("servicer_userid", "event_type", "rule", "send_state", "send_error", "fail_type", "recalled_at",
                  "recalled_by", "media_state", "ai"):
        if item.get(field) not in (None, ""):
            row[field] = plain(item[field])
    if item.get("media_key") and media_url is not None:
        row["media_url"] = media_url(str(item["media_key"]))
    return row


def session_view(session: Session) -> dict[str, Any] | None:
    if session == Session():
        return None  # nothing known
    view = {k: (int(v) if k == "state" and v is not None else v) for k, v in asdict(session).items()
            if k not in ("routed", "counted", "window_msgid") and v not in (None, "")}
    return plain(view)


class ConversationReader:
    def __init__(self, messages: Any, customers: Any, sessions: Any, unionids: Callable[[str], list[str]],
                 media_url: Callable[[str], str]) -> None:
        self.messages, self.customers, self.sessions = messages, customers, sessions
        self.unionids, self.media_url = unionids, media_url

    def recent(self, open_kfid: str, since: int | None, limit: int, cursor: str | None) -> dict[str, Any]:
        """The account's conversations, newest activity first: a page of up to ``limit`` customers.
        The cursor holds the index position and short hashes of the customers shown so far (up to
        SEEN_MAX), so a later page does not list them again for their older messages."""
        start, shown = _recent_cursor(cursor)
        seen: dict[str, dict[str, Any]] = {}
        while len(seen) < limit:
            items, start = self.messages.recent_items(open_kfid, since, PAGE_MAX, start)
            for item in items:
                euid = str(item.get("external_userid") or "")
                if euid and euid not in seen and _tag(euid) not in shown:
                    seen[euid] = {"external_userid": euid, "last_time": plain(item.get("send_time")),
                                  "last_msgtype": item.get("msgtype"), "last_sender": message_row(item)["sender"]}
                    if len(seen) == limit:
                        start = {"msgid": item["msgid"], "open_kfid": open_kfid, "ts": item["ts"]}
                        break
            if not start:
                break
        tags = [*shown, *(_tag(e) for e in seen)][-SEEN_MAX:]
        following = encode_cursor({"key": start, "seen": tags}) if start else None
        return {"account": open_kfid, "conversations": list(seen.values()), "next": following}

    def conversation(self, open_kfid: str, euid: str, limit: int, cursor: str | None) -> dict[str, Any]:
        """The latest ``limit`` items in order (``next`` pages to older ones), with the customer."""
        start = decode_cursor(cursor, {"msgid", "conv", "ts"})
        items, more = self.messages.conversation(open_kfid, euid, limit, True, start)
        if not items and start is None and self.customers.get(euid) is None:
            raise HttpError(404, "not_found", f"nothing stored of {euid} with account {open_kfid}")
        rows = [message_row(plain(i), self.media_url) for i in reversed(items)]
        return {"account": open_kfid, "external_userid": euid, "messages": rows, "next": encode_cursor(more),
                **self.customer(euid, [open_kfid])}

    def customer(self, euid: str, accounts: list[str]) -> dict[str, Any]:
        profile = self.customers.get(euid)
        per_account = []
        for open_kfid in accounts:
            entries = [{"time": plain(e.get("send_time")), "scene": e.get("scene") or None,
                        "scene_param": e.get("scene_param") or None,
                        **({"wechat_channels": ch} if (ch := _channels(e)) else {})}
                       for e in self.messages.entries(open_kfid, euid)]
            per_account.append({"account": open_kfid, "entries": entries,
                                "session": session_view(self.sessions.get(open_kfid, euid))})
        shown = {k: plain(v) for k, v in (profile or {}).items() if k not in ("pk", "sk")}
        return {"profile": shown or None, "accounts": per_account}

    def by_unionid(self, unionid: str) -> list[str]:
        return self.unionids(unionid)


def _channels(entry: dict[str, Any]) -> dict[str, Any] | None:
    try:
        event = json.loads(entry.get("raw") or "{}").get("event") or {}
    except ValueError:
        return None
    channels = event.get("wechat_channels")
    return channels if isinstance(channels, dict) and channels else None
