"""AccessTokens logic with an in-memory store (the DynamoDB store is exercised in integration)."""

from __future__ import annotations

import threading

import pytest

from kefu.store.tokens import StoredToken, TokenState
from kefu.wecom.errors import BAD_CORP_ID, BAD_SECRET, IP_NOT_TRUSTED, SYSTEM_BUSY, WeComError
from kefu.wecom.tokens import AccessTokens, backoff_seconds, token_key


class MemoryStore:
    """The DynamoDB item's semantics: the lease is refused while held or while refreshes back off."""

    def __init__(self) -> None:
        self.token: StoredToken | None = None
        self.lease_until = 0.0
        self.failures = 0
        self.refresh_after = 0.0
        self.lock = threading.Lock()

    def read(self) -> TokenState:
        return TokenState(self.token, self.failures, self.refresh_after)

    def try_lease(self, now: float, seconds: float) -> bool:
        with self.lock:
            if self.lease_until > now or self.refresh_after > now:
                return False
            self.lease_until = now + seconds
            return True

    def save(self, token: StoredToken) -> None:
        self.token, self.lease_until, self.failures, self.refresh_after = token, 0, 0, 0

    def back_off(self, failures: int, refresh_after: float) -> None:
        self.failures, self.refresh_after, self.lease_until = failures, refresh_after, 0

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


class Gettoken:
    """A gettoken that fails while ``error`` is set, counting its calls."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.calls = 0

    def __call__(self) -> tuple[str, int]:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return f"fresh{self.calls}", 7200


def container(store: MemoryStore, clock: Clock, fetch: Gettoken, jitter: float = 0.0) -> AccessTokens:
    return AccessTokens(store, fetch, clock=clock, sleep=clock.sleep, jitter=lambda: jitter)


@pytest.mark.parametrize("error", [
    WeComError("gettoken", SYSTEM_BUSY, "system busy"),
    WeComError("gettoken", None, "timed out"),  # the client's transport errors
    WeComError("gettoken", None, "HTTP 502", 502),
    WeComError("gettoken", BAD_SECRET, "invalid secret"),
    WeComError("gettoken", IP_NOT_TRUSTED, "not allow to access from your ip"),
])
def test_a_failed_refresh_keeps_the_stored_token_while_it_is_valid(error: WeComError) -> None:
    store, clock = MemoryStore(), Clock()
    store.token = StoredToken("t1", clock.now + 100)  # inside the refresh window, not expired
    tokens = container(store, clock, Gettoken(error))
    assert tokens.get() == "t1"
    assert tokens.failed_fetches == 1 and tokens.kept_after_failure == 1
    assert store.lease_until == 0 and store.failures == 1 and store.refresh_after > clock.now


def test_a_failed_refresh_without_a_valid_token_raises_and_backs_off() -> None:
    store, clock = MemoryStore(), Clock()
    store.token = StoredToken("old", clock.now - 1)
    error = WeComError("gettoken", BAD_CORP_ID, "invalid corpid")
    with pytest.raises(WeComError) as info:
        container(store, clock, Gettoken(error)).get()
    assert info.value is error
    assert store.failures == 1 and store.refresh_after == clock.now + 1 and store.lease_until == 0


def test_failures_space_gettoken_calls_for_every_container() -> None:
    store, clock = MemoryStore(), Clock()
    store.token = StoredToken("t1", clock.now + 200)  # inside the refresh window for the whole run
    fetch = Gettoken(WeComError("gettoken", SYSTEM_BUSY, "system busy"))
    containers = [container(store, clock, fetch, jitter) for jitter in (0.0, 0.5, 0.99)]
    for request in range(100):  # 100 requests over 10 simulated seconds, spread over 3 containers
        assert containers[request % 3].get() == "t1"
        clock.now += 0.1
    # Calls at about 0, 1, 3, 7 s (earlier with jitter, by up to a half): a handful, not 100.
    assert 4 <= fetch.calls <= 5
    assert store.failures == fetch.calls


def test_backoff_doubles_up_to_a_minute() -> None:
    assert [backoff_seconds(n, 0.0) for n in (1, 2, 3, 4, 6, 7, 50, 10_000)] == [1, 2, 4, 8, 32, 60, 60, 60]
    assert backoff_seconds(3, 0.5) == 3.0 and backoff_seconds(7, 0.999) > 30


def test_a_successful_refresh_resets_the_backoff() -> None:
    store, clock = MemoryStore(), Clock()
    store.token = StoredToken("t1", clock.now + 200)
    fetch = Gettoken(WeComError("gettoken", SYSTEM_BUSY, "system busy"))
    tokens = container(store, clock, fetch)
    for _ in range(4):  # backoffs of 1, 2, 4, 8 s
        assert tokens.get() == "t1"
        clock.now = store.refresh_after
    assert fetch.calls == 4 and store.failures == 4
    fetch.error = None
    assert tokens.get() == "fresh5"
    assert (store.failures, store.refresh_after) == (0, 0)
    fetch.error = WeComError("gettoken", SYSTEM_BUSY, "system busy")
    tokens.invalidate("fresh5")  # WeCom rejects the new token; the refresh fails again
    with pytest.raises(WeComError):
        tokens.get()
    assert store.failures == 1 and store.refresh_after == clock.now + 1  # 1 s again, not 16 s


def test_in_backoff_without_a_valid_token_raises_at_once_without_gettoken() -> None:
    store, clock = MemoryStore(), Clock()
    fetch = Gettoken(WeComError("gettoken", BAD_SECRET, "invalid secret"))
    with pytest.raises(WeComError):
        container(store, clock, fetch).get()
    assert fetch.calls == 1
    clock.now += 0.5
    started = clock.now
    for tokens in (container(store, clock, fetch), container(store, clock, fetch)):  # any container
        with pytest.raises(WeComError) as info:
            tokens.get()
        assert info.value.transient and "backs off" in info.value.errmsg
    assert fetch.calls == 1 and clock.now == started  # no gettoken, no waiting
    clock.now = store.refresh_after
    fetch.error = None
    assert container(store, clock, fetch).get() == "fresh2"
