"""The corp's kf accounts as the links function needs them (kf/account/list, cached)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from kefu.links import LinkError

DIRECTORY_TTL = 600.0  # seconds a kf/account/list answer is trusted
DIRECTORY_MISS_INTERVAL = 60.0  # at most one extra listing per minute for unknown open_kfids


class AccountDirectory:
    """The corp's kf accounts from kf/account/list, kept for DIRECTORY_TTL in the container.

    Used for two things only: the default account when none is configured (the one account the
    app manages), and checking a caller-supplied open_kfid before asking WeCom for a link, so
    made-up ids cost at most one listing per DIRECTORY_MISS_INTERVAL instead of one
    add_contact_way each.
    """

    def __init__(self, fetch: Callable[[], list[dict[str, Any]]], ttl: float = DIRECTORY_TTL,
                 miss_interval: float = DIRECTORY_MISS_INTERVAL, clock: Callable[[], float] = time.monotonic) -> None:
        self._fetch = fetch
        self._ttl = ttl
        self._miss_interval = miss_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._accounts: dict[str, bool] | None = None  # open_kfid -> this app manages it
        self._fetched_at = float("-inf")

    def _listing(self, refresh: bool = False) -> dict[str, bool]:
        with self._lock:
            now = self._clock()
            stale = self._accounts is None or now - self._fetched_at >= self._ttl
            if stale or (refresh and now - self._fetched_at >= self._miss_interval):
                self._accounts = {str(a["open_kfid"]): a.get("manage_privilege", True) is not False
                                  for a in self._fetch()}
                self._fetched_at = now
            return self._accounts or {}

    def default(self) -> str:
        managed = [kfid for kfid, mine in self._listing().items() if mine]
        if len(managed) == 1:
            return managed[0]
        raise LinkError(404, "no_default_account",
                        f"this app manages {len(managed)} kf accounts: pass account=<alias or open_kfid>, "
                        "or set the LinkAccounts parameter (its first entry is the default)")

    def knows(self, open_kfid: str) -> bool:
        return open_kfid in self._listing() or open_kfid in self._listing(refresh=True)


