"""access_token handling: one token per (corp, secret), shared by every container.

The token lives in memory and in DynamoDB. A caller refreshes it ahead of expiry only while it
holds a short lease in the table, so concurrent containers make one gettoken call, not many;
the others keep using the still-valid token or wait briefly for the new one.

A failed refresh (any errcode, a timeout) backs off for every container: the item records a
refresh_after 1, 2, 4 ... 60 s ahead (less up to a half at random), doubling with each failure in
a row, and nobody takes the lease before it. Meanwhile the token that has not expired yet is used;
without one, callers get a transient WeComError at once instead of another gettoken call.
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from collections.abc import Callable
from typing import Protocol

from kefu.store.tokens import StoredToken, TokenState
from kefu.wecom.errors import WeComError

REFRESH_AHEAD_SECONDS = 300
LEASE_SECONDS = 10
WAIT_SECONDS = 5.0
POLL_SECONDS = 0.1
BACKOFF_FIRST_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 60.0

log = logging.getLogger(__name__)


class TokenStore(Protocol):
    def read(self) -> TokenState: ...
    def try_lease(self, now: float, seconds: float) -> bool: ...
    def save(self, token: StoredToken) -> None: ...
    def back_off(self, failures: int, refresh_after: float) -> None: ...
    def release(self) -> None: ...
    def expire(self, access_token: str) -> None: ...


Fetch = Callable[[], tuple[str, int]]  # -> (access_token, expires_in seconds)


def token_key(corp_id: str, corp_secret: str) -> str:
    """Key the shared token by corp and a fingerprint of the secret (never the secret itself)."""
    return f"{corp_id}#{hashlib.sha256(corp_secret.encode()).hexdigest()[:16]}"


def backoff_seconds(failures: int, jitter: float) -> float:
    """The pause after ``failures`` failed refreshes in a row; ``jitter`` in [0, 1) takes up to half off."""
    return min(BACKOFF_MAX_SECONDS, BACKOFF_FIRST_SECONDS * 2 ** min(max(failures - 1, 0), 16)) * (1 - jitter / 2)


class AccessTokens:
    def __init__(
        self,
        store: TokenStore,
        fetch: Fetch,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        refresh_ahead: float = REFRESH_AHEAD_SECONDS,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._store = store
        self._fetch = fetch
        self._clock = clock
        self._sleep = sleep
        self._refresh_ahead = refresh_ahead
        self._jitter = jitter
        self._cached: StoredToken | None = None
        self._refresh_after = 0.0  # the shared backoff as last seen here
        self.fetches = 0
        self.failed_fetches = 0
        self.kept_after_failure = 0  # stored tokens handed out because a refresh failed

    def get(self) -> str:
        now = self._clock()
        cached = self._cached
        if cached and now < cached.expires_at and (now < cached.expires_at - self._refresh_ahead or now < self._refresh_after):
            return cached.access_token
        deadline = now + WAIT_SECONDS
        while True:
            state = self._store.read()
            now = self._clock()
            live = _live(state.token, now)
            if live and now < live.expires_at - self._refresh_ahead:
                self._cached = live
                return live.access_token
            if now < state.refresh_after:
                self._refresh_after = state.refresh_after
                if live:  # refreshes back off; the token has not expired yet
                    self._cached = live
                    return live.access_token
                raise WeComError("gettoken", None, f"no valid access_token; refreshing backs off for "
                                 f"{state.refresh_after - now:.1f} s after {state.failures} failure(s)")
            if self._store.try_lease(now, LEASE_SECONDS):
                return self._refresh(state)
            if live:
                # Another caller is refreshing; the current token is still good meanwhile.
                return live.access_token
            if now >= deadline:
                raise WeComError("gettoken", None, "timed out waiting for another caller's token refresh")
            self._sleep(POLL_SECONDS)

    def _refresh(self, state: TokenState) -> str:
        try:
            access_token, expires_in = self._fetch()
        except Exception as exc:
            return self._refresh_failed(state, exc)
        except BaseException:
            self._store.release()
            raise
        self.fetches += 1
        token = StoredToken(access_token, self._clock() + max(int(expires_in), 60))
        self._store.save(token)
        self._cached, self._refresh_after = token, 0.0
        return access_token

    def _refresh_failed(self, state: TokenState, exc: Exception) -> str:
        """Back off (in the shared item, which releases the lease), then keep the stored token if it
        has not expired yet, or raise ``exc``. The client's on_error hook has counted ``exc``."""
        self.failed_fetches += 1
        failures = state.failures + 1
        now = self._clock()
        self._refresh_after = now + backoff_seconds(failures, self._jitter())
        self._store.back_off(failures, self._refresh_after)
        live = _live(state.token, now)
        if live is None:
            log.warning("access_token refresh failed (%d in a row), no valid token: %s", failures, exc)
            raise exc
        log.warning("access_token refresh failed (%d in a row), keeping the stored one for %.0f s: %s",
                    failures, live.expires_at - now, exc)
        self.kept_after_failure += 1
        self._cached = live
        return live.access_token

    def invalidate(self, access_token: str) -> None:
        """WeCom rejected ``access_token``: forget it here and in the shared store."""
        if self._cached and self._cached.access_token == access_token:
            self._cached = None
        self._store.expire(access_token)


def _live(token: StoredToken | None, now: float) -> StoredToken | None:
    """``token`` if it has not expired at ``now``."""
    return token if token is not None and now < token.expires_at else None
