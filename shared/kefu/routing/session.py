"""Kefu's cache of one customer's session with one kf account: what the routing state holds for
them, typed. WeCom's view is the truth (design rule 13); this is what Kefu last knew of it."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kefu.store import keys
from kefu.wecom.models import ServiceState


def _int(value: Any) -> int | None:
    return int(value) if value is not None and value != "" else None


def _str(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


SEND_WINDOW = 48 * 3600  # WeCom: sends within 48 h of the customer's last message...
SEND_LIMIT = 5  # ...and at most 5 of them

# The sparse "active" index of the state table lists an account's open sessions by last activity:
# only session items that carry these two attributes are in it (what the sweep reads).
ACTIVE_FIELDS = ("active_of", "active_at", "checked_at")


def active_since(open_kfid: str, at: int, session: Session) -> dict[str, Any]:
    """The fields that list an open session in its account's active index, with its last activity."""
    return {"active_of": keys.indexed(open_kfid), "active_at": max(at, session.active_at or 0)}


@dataclass(frozen=True)
class Session:
    state: ServiceState | None = None  # None: unknown, ask WeCom
    servicer: str | None = None  # who holds it (state 3)
    counted: str | None = None  # whose load counts this session
    scene: str | None = None  # the entry scene, from enter_session
    scene_param: str | None = None
    entered_at: int | None = None
    window_at: int | None = None  # the customer's last message: 5 sends within 48 h of it
    sends: int = 0
    window_msgid: str | None = None
    session_started: int | None = None
    session_id: str | None = None  # the msgid that opened the session
    pool_key: str | None = None  # its entry in the waiting pool
    pooled_at: int | None = None
    assigned_at: int | None = None
    last_servicer: str | None = None  # sticky memory
    last_served_at: int | None = None
    off_hours_for: str | None = None  # the session the off-hours reply was sent in
    rating: int | None = None
    routed: tuple[str, ...] = ()  # tags of the last items routed (decide.Routed)
    active_at: int | None = None  # last message either way while the session is open (idle ends)
    checked_at: int | None = None  # when the sweep last asked WeCom about it

    @classmethod
    def from_item(cls, item: Mapping[str, Any] | None) -> Session:
        """From the stored item (absent fields stay unknown)."""
        item = item or {}
        state = _int(item.get("state"))
        return cls(
            state=ServiceState(state) if state is not None and state in ServiceState._value2member_map_ else None,
            servicer=_str(item.get("servicer")), counted=_str(item.get("counted")),
            scene=_str(item.get("scene")), scene_param=_str(item.get("scene_param")),
            entered_at=_int(item.get("entered_at")), window_at=_int(item.get("window_at")),
            sends=_int(item.get("sends")) or 0, window_msgid=_str(item.get("window_msgid")),
            session_started=_int(item.get("session_started")), session_id=_str(item.get("session_id")),
            pool_key=_str(item.get("pool_key")), pooled_at=_int(item.get("pooled_at")),
            assigned_at=_int(item.get("assigned_at")), last_servicer=_str(item.get("last_servicer")),
            last_served_at=_int(item.get("last_served_at")), off_hours_for=_str(item.get("off_hours_for")),
            rating=_int(item.get("rating")), routed=tuple(str(t) for t in item.get("routed") or ()),
            active_at=_int(item.get("active_at")), checked_at=_int(item.get("checked_at")),
        )

    def with_fields(self, fields: Mapping[str, Any]) -> Session:
        """This session after an update of ``fields`` (names as stored)."""
        known = {f.name for f in dataclasses.fields(self)}
        changes = {key: value for key, value in fields.items() if key in known}
        if "state" in changes and changes["state"] is not None:
            changes["state"] = ServiceState(int(changes["state"]))
        return dataclasses.replace(self, **changes)

    @property
    def name(self) -> str | None:
        """What names the current session in the statistics: the msgid that opened it (or, for
        sessions cached before that was kept, its start time)."""
        if self.session_id:
            return self.session_id
        return str(self.session_started) if self.session_started is not None else None
