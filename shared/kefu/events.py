"""Outbound events for the enterprise's own systems, on an EventBridge bus (off unless configured).

Every event: source "kefu", detail-type one of EVENT_TYPES, detail {"id", "type", "time",
"open_kfid", "external_userid", ...}; in provider mode also "corp" (kefu.tenancy), so a rule can
send each corp's events to that corp's own target. Delivery is at least once: a retried queue record may
publish an event again with the same ``id``, which consumers use to drop repeats.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from kefu import aws, tenancy

SOURCE = "kefu"
EVENT_TYPES = ("message.received", "message.sent", "message.failed", "session.entered", "session.assigned",
               "session.ended", "rating.given", "upgrade.offered")

Emit = Callable[[str, str, dict[str, Any]], None]  # (type, id, fields)


def event_detail(kind: str, event_id: str, fields: dict[str, Any], at: int) -> dict[str, Any]:
    if kind not in EVENT_TYPES:
        raise ValueError(f"unknown event type {kind}")
    return {"id": event_id, "type": kind, "time": at, **tenancy.stamp(),
            **{k: v for k, v in fields.items() if v is not None}}


class EventPublisher:
    def __init__(self, bus_name: str, clock: Callable[[], float]) -> None:
        self._bus = bus_name
        self._clock = clock

    def __call__(self, kind: str, event_id: str, fields: dict[str, Any]) -> None:
        self.publish([(kind, event_id, fields)])

    def publish(self, events: list[tuple[str, str, dict[str, Any]]]) -> None:
        entries = [{"Source": SOURCE, "DetailType": kind, "EventBusName": self._bus,
                    "Detail": json.dumps(event_detail(kind, event_id, fields, int(self._clock())), ensure_ascii=False)}
                   for kind, event_id, fields in events]
        client = aws.client("events")
        for start in range(0, len(entries), 10):
            response = client.put_events(Entries=entries[start : start + 10])
            if response.get("FailedEntryCount"):
                raise RuntimeError(f"EventBridge refused {response['FailedEntryCount']} event(s)")


def no_events(kind: str, event_id: str, fields: dict[str, Any]) -> None:
    """The publisher when no bus is configured."""


def publisher(bus_name: str | None, clock: Callable[[], float]) -> Emit:
    return EventPublisher(bus_name, clock) if bus_name else no_events
