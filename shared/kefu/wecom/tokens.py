"""access_token handling: one token per (corp, secret), shared by every container.

The token lives in memory and in DynamoDB. A caller refreshes it ahead of expiry only while it
holds a short lease in the table, so concurrent containers make one gettoken call, not many;
the others keep using the still-valid token or wait briefly for the new one.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Protocol

from kefu.store.tokens import StoredToken
from kefu.wecom.errors import WeComError

REFRESH_AHEAD_SECONDS = 300
LEASE_SECONDS = 10
WAIT_SECONDS = 5.0
POLL_SECONDS = 0.1


class TokenStore(Protocol):
    def read(self) -> StoredToken | None: ...
    def try_lease(self, now: float, seconds: float) -> bool: ...
    def save(self, token: StoredToken) -> None: ...
    def release(self) -> None: ...
    def expire(self, access_token: str) -> None: ...


Fetch = Callable[[], tuple[str, int]]  # -> (access_token, expires_in seconds)


def token_key(corp_id: str, corp_secret: str) -> str:
    """Key the shared token by corp and a fingerprint of the secret (never the secret itself)."""
    return f"{corp_id}#{hashlib.sha256(corp_secret.encode()).hexdigest()[:16]}"


class AccessTokens:
    def __init__(
        self,
        store: TokenStore,
        fetch: Fetch,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        refresh_ahead: float = REFRESH_AHEAD_SECONDS,
    ) -> None:
        self._store = store
        self._fetch = fetch
        self._clock = clock
        self._sleep = sleep
        self._refresh_ahead = refresh_ahead
        self._cached: StoredToken | None = None
        self.fetches = 0

    def get(self) -> str:
        now = self._clock()
        if self._cached and now < self._cached.expires_at - self._refresh_ahead:
            return self._cached.access_token
        deadline = now + WAIT_SECONDS
        while True:
            stored = self._store.read()
            now = self._clock()
            if stored and now < stored.expires_at - self._refresh_ahead:
                self._cached = stored
                return stored.access_token
            if self._store.try_lease(now, LEASE_SECONDS):
                return self._refresh()
            if stored and now < stored.expires_at:
                # Another caller is refreshing; the current token is still good meanwhile.
                return stored.access_token
            if now >= deadline:
                raise WeComError("gettoken", None, "timed out waiting for another caller's token refresh")
            self._sleep(POLL_SECONDS)

    def _refresh(self) -> str:
        try:
            access_token, expires_in = self._fetch()
            self.fetches += 1
        except BaseException:
            self._store.release()
            raise
        token = StoredToken(access_token, self._clock() + max(int(expires_in), 60))
        self._store.save(token)
        self._cached = token
        return access_token

    def invalidate(self, access_token: str) -> None:
        """WeCom rejected ``access_token``: forget it here and in the shared store."""
        if self._cached and self._cached.access_token == access_token:
            self._cached = None
        self._store.expire(access_token)
