"""What the routing engine needs from the world, as Protocols: the WeCom API, four state stores
and the conversation record.

kefu.wecom.client.WeComClient and kefu.store.routing_state are the deployed adapters; the unit
tests pass in-memory ones (tests/unit/fakes.py) and run the engine in milliseconds.
"""

from __future__ import annotations

from typing import Any, Protocol

from kefu.routing.decide import Routed
from kefu.routing.session import Session
from kefu.wecom.kf import WeComApi

WeComPort = WeComApi  # read and write: the kf calls of kefu.wecom.kf go through it


class SessionsPort(Protocol):
    def get(self, open_kfid: str, euid: str) -> Session: ...

    def update(self, open_kfid: str, euid: str, set_fields: dict[str, Any] | None = None,
               remove: tuple[str, ...] = ()) -> None: ...

    def mark_routed(self, open_kfid: str, euid: str, routed: Routed, also: dict[str, Any] | None = None) -> None: ...

    def take_send(self, open_kfid: str, euid: str, now: float, send_id: str) -> int: ...  # 0 refused, 1 first, 2 again


class LoadsPort(Protocol):
    def get(self, open_kfid: str) -> dict[str, int]: ...

    def reserve(self, open_kfid: str, euid: str, servicer: str, max_active: int) -> str: ...

    def move(self, open_kfid: str, euid: str, old: str | None, new: str | None) -> bool: ...


class RostersPort(Protocol):
    def get(self, open_kfid: str) -> tuple[dict[str, bool], float] | None: ...

    def save(self, open_kfid: str, on: dict[str, bool], now: float) -> None: ...

    def set_servicer(self, open_kfid: str, userid: str, receiving: bool) -> bool: ...

    def next_rotation(self, open_kfid: str) -> int: ...


class PoolEntryLike(Protocol):
    @property
    def sort_key(self) -> str: ...

    @property
    def external_userid(self) -> str: ...


class PoolPort(Protocol):
    def add(self, open_kfid: str, euid: str, now: float) -> str: ...

    def oldest(self, open_kfid: str, limit: int = 25) -> list[Any]: ...

    def remove(self, open_kfid: str, sort_key: str) -> None: ...


class TranscriptPort(Protocol):
    """Kefu's own sends in the conversation record (kefu.store.messages.MessageStore)."""

    def begin_send(self, record: dict[str, Any]) -> str | None: ...  # None new, else the earlier attempt's state

    def settle_send(self, msgid: str, state: str, error: str | None = None) -> None: ...

    def send_record(self, msgid: str) -> dict[str, Any] | None: ...  # a send as recorded, or None


class StatePort(Protocol):
    @property
    def sessions(self) -> SessionsPort: ...

    @property
    def loads(self) -> LoadsPort: ...

    @property
    def rosters(self) -> RostersPort: ...

    @property
    def pool(self) -> PoolPort: ...
