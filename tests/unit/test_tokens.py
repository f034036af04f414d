"""AccessTokens logic with an in-memory store (the DynamoDB store is exercised in integration)."""

from __future__ import annotations

import threading

import pytest

from kefu.store.tokens import StoredToken
from kefu.wecom.errors import WeComError
from kefu.wecom.tokens import AccessTokens, token_key


class MemoryStore:
    def __init__(self) -> None:
        self.token: StoredToken | None = None
        self.lease_until = 0.0
        self.lock = threading.Lock()

    def read(self) -> StoredToken | None:
        return self.token

    def try_lease(self, now: float, seconds: float) -> bool:
        with self.lock:
            if self.lease_until > now:
                return False
            self.lease_until = now + seconds
            return True

    def save(self, token: StoredToken) -> None:
        self.token, self.lease_until = token, 0

    def release(self) -> None:
        self.lease_until = 0

    def expire(self, access_token: str) -> None:
        if self.token and self.token.access_token == access_token:
            self.token = StoredToken(access_token, 0)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def make(store: MemoryStore, clock: Clock, tokens: list[str]) -> AccessTokens:
    def fetch() -> tuple[str, int]:
        return tokens.pop(0), 7200

    return AccessTokens(store, fetch, clock=clock, sleep=clock.sleep)


def test_fetches_once_and_caches() -> None:
    store, clock = MemoryStore(), Clock()
    tokens = make(store, clock, ["t1", "t2"])
    assert tokens.get() == "t1"
    assert tokens.get() == "t1"
    assert tokens.fetches == 1


def test_second_container_reuses_the_shared_token() -> None:
    store, clock = MemoryStore(), Clock()
    assert make(store, clock, ["t1"]).get() == "t1"
    other = make(store, clock, [])
    assert other.get() == "t1"
    assert other.fetches == 0


def test_refreshes_ahead_of_expiry() -> None:
    store, clock = MemoryStore(), Clock()
    tokens = make(store, clock, ["t1", "t2"])
    tokens.get()
    clock.now += 7200 - 299  # inside the 300 s refresh window, still valid
    assert tokens.get() == "t2"


def test_during_anothers_refresh_the_old_valid_token_is_used() -> None:
    store, clock = MemoryStore(), Clock()
    make(store, clock, ["t1"]).get()
    clock.now += 7200 - 100
    assert store.try_lease(clock.now, 10)  # someone else is refreshing
    assert make(store, clock, []).get() == "t1"


def test_waits_for_anothers_refresh_when_no_token_is_valid() -> None:
    store, clock = MemoryStore(), Clock()
    assert store.try_lease(clock.now, 10)
    waiter = make(store, clock, [])
    original_sleep = clock.sleep

    def sleep(seconds: float) -> None:
        original_sleep(seconds)
        if store.token is None and clock.now > 1_000_000.5:
            store.save(StoredToken("fresh", clock.now + 7200))

    waiter._sleep = sleep  # noqa: SLF001
    assert waiter.get() == "fresh"
    assert waiter.fetches == 0


def test_gives_up_when_nobody_delivers() -> None:
    store, clock = MemoryStore(), Clock()
    store.lease_until = clock.now + 3600
    with pytest.raises(WeComError):
        make(store, clock, []).get()


def test_invalidate_forces_a_new_token() -> None:
    store, clock = MemoryStore(), Clock()
    tokens = make(store, clock, ["t1", "t2"])
    tokens.invalidate(tokens.get())
    assert tokens.get() == "t2"


def test_failed_fetch_releases_the_lease() -> None:
    store, clock = MemoryStore(), Clock()

    def fetch() -> tuple[str, int]:
        raise WeComError("gettoken", 40001, "invalid secret")

    with pytest.raises(WeComError):
        AccessTokens(store, fetch, clock=clock, sleep=clock.sleep).get()
    assert store.lease_until == 0


def test_key_never_contains_the_secret() -> None:
    key = token_key("wwcorp", "s3cr3t-value")
    assert "s3cr3t" not in key and key.startswith("wwcorp#")
