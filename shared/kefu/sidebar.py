"""The servicer sidebar (客户工具栏, the JS-SDK entry ``single_kf_tools``): who the servicer is,
what they may see, and the JS-SDK signatures the page registers with.

A servicer opens the page in the WeCom client through WeCom's OAuth2 link; the page exchanges the
code once for a short-lived signed token naming the servicer (HMAC with a key derived from the
corp secret, never stored), and every read carries it. A servicer sees a customer only through
the kf accounts they serve (kf/servicer/list), so nobody reads another team's customers."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

TOKEN_SECONDS = 8 * 3600  # a working day: the page asks for a new code after it


class Denied(Exception):
    """The caller may not see this (a 401/403); the message says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Tokens:
    def __init__(self, key: bytes, clock: Callable[[], float] = time.time) -> None:
        self._key, self._clock = key, clock

    @classmethod
    def from_secret(cls, corp_secret: str) -> Tokens:
        return cls(hmac.new(corp_secret.encode(), b"kefu sidebar token v1", hashlib.sha256).digest())

    def issue(self, userid: str) -> str:
        body = f"{userid}|{int(self._clock()) + TOKEN_SECONDS}"
        mac = hmac.new(self._key, body.encode(), hashlib.sha256).hexdigest()[:32]
        return base64.urlsafe_b64encode(f"{body}|{mac}".encode()).decode()

    def userid(self, token: str) -> str:
        try:
            userid, expires, mac = base64.urlsafe_b64decode(token.encode()).decode().rsplit("|", 2)
        except ValueError:
            raise Denied(401, "sign in again: the sidebar's token is not valid") from None
        good = hmac.new(self._key, f"{userid}|{expires}".encode(), hashlib.sha256).hexdigest()[:32]
        if not hmac.compare_digest(mac, good) or not expires.isdigit():
            raise Denied(401, "sign in again: the sidebar's token is not valid")
        if int(expires) < self._clock():
            raise Denied(401, "sign in again: the sidebar's token has expired")
        return userid


@dataclass(frozen=True)
class Signature:
    timestamp: int
    nonce: str
    signature: str


def js_signature(ticket: str, url: str, clock: Callable[[], float] = time.time) -> Signature:
    """WeCom's JS-SDK signature of a page URL (without its #fragment) under a ticket."""
    nonce, timestamp = secrets.token_hex(8), int(clock())
    plain = f"jsapi_ticket={ticket}&noncestr={nonce}&timestamp={timestamp}&url={url.split('#', 1)[0]}"
    return Signature(timestamp, nonce, hashlib.sha1(plain.encode()).hexdigest())  # noqa: S324 # nosec B324 - WeCom's algorithm


def accounts_served(roster: Callable[[str], dict[str, bool]], accounts: list[str], userid: str) -> list[str]:
    """The kf accounts ``userid`` is a servicer of (receiving or not)."""
    return [open_kfid for open_kfid in accounts if userid in roster(open_kfid)]
