"""Routing state in the StateTable, all of it surviving cold starts and deploys: four small
stores (sessions, servicer loads, rosters, the pool) over one table. Key formats: kefu.store.keys.

Capacity is enforced by one transaction that raises the servicer's load only while it is under
the limit and marks the session counted only if it was not, so concurrent assignments never push
a servicer over max_active_per_servicer and a retried assignment never counts twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kefu.routing.session import SEND_LIMIT, SEND_WINDOW, Session
from kefu.store import keys
from kefu.store.dynamo import TableStore, conditionally, transact

if TYPE_CHECKING:  # the type only: importing the routing decisions would load the rules' models
    from kefu.routing.decide import Routed

__all__ = ["SEND_LIMIT", "SEND_WINDOW", "LoadStore", "PoolEntry", "PoolStore", "RosterStore", "RoutingState", "SessionStore"]


@dataclass(frozen=True)
class PoolEntry:
    sort_key: str
    external_userid: str


class _TableStore(TableStore):
    def _query(self, pk: str, **args: Any) -> list[dict[str, Any]]:
        from boto3.dynamodb.conditions import Key

        return list(self._table.query(KeyConditionExpression=Key("pk").eq(pk), ConsistentRead=True,
                                      **args).get("Items", []))


class SessionStore(_TableStore):
    """One item per customer and account: Kefu's cache of the session (kefu.routing.session)."""

    def get(self, open_kfid: str, euid: str) -> Session:
        return Session.from_item(self._item(open_kfid, euid))

    def _item(self, open_kfid: str, euid: str) -> dict[str, Any]:
        return dict(self._table.get_item(Key=keys.session(open_kfid, euid), ConsistentRead=True).get("Item") or {})

    def update(self, open_kfid: str, euid: str, set_fields: dict[str, Any] | None = None,
               remove: tuple[str, ...] = ()) -> None:
        """SET and REMOVE fields of the session item."""
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        parts = []
        for i, (field, value) in enumerate((set_fields or {}).items()):
            names[f"#s{i}"], values[f":s{i}"] = field, value
            parts.append(f"#s{i} = :s{i}")
        expression = ("SET " + ", ".join(parts)) if parts else ""
        if remove:
            names.update({f"#r{i}": field for i, field in enumerate(remove)})
            expression += " REMOVE " + ", ".join(f"#r{i}" for i in range(len(remove)))
        args: dict[str, Any] = {"Key": keys.session(open_kfid, euid), "UpdateExpression": expression.strip(),
                                "ExpressionAttributeNames": names}
        if values:
            args["ExpressionAttributeValues"] = values
        self._table.update_item(**args)

    def mark_routed(self, open_kfid: str, euid: str, routed: Routed, also: dict[str, Any] | None = None) -> None:
        """Mark the customer's items done (and set ``also`` in the same write)."""
        self.update(open_kfid, euid, {**(also or {}), "routed": list(routed.tags)})

    def take_send(self, open_kfid: str, euid: str, now: float, send_id: str) -> int:
        """Record an attempt at the send named ``send_id`` before its send_msg call: the item's
        ``send_ids`` are the ledger of the window's attempts. The first attempt takes one unit of
        the customer's window (state 0/1, < 5 sends, < 48 h) and returns 1; a later one finds the
        send recorded, takes no second unit and returns 2 (kefu.routing.sending settles a used
        msgid then as sent); 0 when no send is left. A fresh window clears the ledger."""
        taken = conditionally(lambda: self._table.update_item(
            Key=keys.session(open_kfid, euid),
            UpdateExpression="SET sends = sends + :inc ADD send_ids :ids",
            ConditionExpression=("#st IN (:zero, :one) AND sends < :limit AND window_at > :since "
                                 "AND NOT contains(send_ids, :id)"),
            ExpressionAttributeNames={"#st": "state"},
            ExpressionAttributeValues={":zero": 0, ":one": 1, ":limit": SEND_LIMIT, ":since": int(now - SEND_WINDOW),
                                       ":inc": 1, ":ids": {send_id}, ":id": send_id},
        ))
        if taken:
            return 1
        return 2 if send_id in (self._item(open_kfid, euid).get("send_ids") or set()) else 0


class LoadStore(_TableStore):
    """Sessions in state 3 counted against each servicer, moved only inside transactions."""

    def get(self, open_kfid: str) -> dict[str, int]:
        return {str(i["sk"]): int(i.get("active", 0)) for i in self._query(keys.load_pk(open_kfid))}

    def reserve(self, open_kfid: str, euid: str, servicer: str, max_active: int) -> str:
        """Count the session against ``servicer`` if it has room: "ok", "full" or "counted" (already)."""
        reasons = transact(self._table.meta.client, [
            {"Update": {
                "TableName": self._name, "Key": keys.load(open_kfid, servicer),
                "UpdateExpression": "ADD active :one",
                "ConditionExpression": "attribute_not_exists(active) OR active < :max",
                "ExpressionAttributeValues": {":one": 1, ":max": max_active},
            }},
            {"Update": {
                "TableName": self._name, "Key": keys.session(open_kfid, euid),
                "UpdateExpression": "SET counted = :s",
                "ConditionExpression": "attribute_not_exists(counted)",
                "ExpressionAttributeValues": {":s": servicer},
            }},
        ])
        if reasons is None:
            return "ok"
        return "counted" if reasons[1] == "ConditionalCheckFailed" else "full"

    def move(self, open_kfid: str, euid: str, old: str | None, new: str | None) -> bool:
        """Move the session's count from ``old`` to ``new`` (either may be None) exactly once."""
        if old == new:
            return False
        items: list[dict[str, Any]] = []
        if old:
            items.append({"Update": {"TableName": self._name, "Key": keys.load(open_kfid, old),
                                     "UpdateExpression": "ADD active :minus",
                                     "ExpressionAttributeValues": {":minus": -1}}})
        if new:
            items.append({"Update": {"TableName": self._name, "Key": keys.load(open_kfid, new),
                                     "UpdateExpression": "ADD active :one", "ExpressionAttributeValues": {":one": 1}}})
        session: dict[str, Any] = {"TableName": self._name, "Key": keys.session(open_kfid, euid)}
        if new:
            session["UpdateExpression"] = "SET counted = :new"
            session["ExpressionAttributeValues"] = {":new": new}
        else:
            session["UpdateExpression"] = "REMOVE counted"
        if old:
            session["ConditionExpression"] = "counted = :old"
            session.setdefault("ExpressionAttributeValues", {})[":old"] = old
        else:
            session["ConditionExpression"] = "attribute_not_exists(counted)"
        items.append({"Update": session})
        # Cancelled only by the session's condition: already moved (a retried event) or counted
        # elsewhere. A conflict with a concurrent transaction is retried inside transact().
        return transact(self._table.meta.client, items) is None


class RosterStore(_TableStore):
    """Who is on duty per account (from kf/servicer/list and servicer_status_change), and the
    round-robin counter."""

    def get(self, open_kfid: str) -> tuple[dict[str, bool], float] | None:
        item = self._table.get_item(Key=keys.roster(open_kfid), ConsistentRead=True).get("Item")
        if not item or "on" not in item:
            return None
        return {str(k): bool(v) for k, v in item["on"].items()}, float(item.get("fetched_at", 0))

    def save(self, open_kfid: str, on: dict[str, bool], now: float) -> None:
        self._table.put_item(Item={**keys.roster(open_kfid), "on": on, "fetched_at": int(now)})

    def set_servicer(self, open_kfid: str, userid: str, receiving: bool) -> bool:
        """Apply a servicer_status_change to a roster we already hold (no roster: nothing to do)."""
        return conditionally(lambda: self._table.update_item(
            Key=keys.roster(open_kfid), UpdateExpression="SET #on.#u = :v", ConditionExpression="attribute_exists(#on)",
            ExpressionAttributeNames={"#on": "on", "#u": userid}, ExpressionAttributeValues={":v": receiving},
        ))

    def next_rotation(self, open_kfid: str) -> int:
        response = self._table.update_item(Key=keys.rotation(open_kfid), UpdateExpression="ADD n :one",
                                           ExpressionAttributeValues={":one": 1}, ReturnValues="UPDATED_NEW")
        return int(response["Attributes"]["n"])


class PoolStore(_TableStore):
    """Sessions waiting for a servicer, oldest first."""

    def add(self, open_kfid: str, euid: str, now: float) -> str:
        sort_key = keys.pool_sort_key(now, euid)
        self._table.put_item(Item={**keys.pool_entry(open_kfid, sort_key), "external_userid": euid})
        return sort_key

    def oldest(self, open_kfid: str, limit: int = 25) -> list[PoolEntry]:
        return [PoolEntry(str(i["sk"]), str(i["external_userid"])) for i in self._query(keys.pool_pk(open_kfid), Limit=limit)]

    def remove(self, open_kfid: str, sort_key: str) -> None:
        self._table.delete_item(Key=keys.pool_entry(open_kfid, sort_key))


@dataclass(frozen=True)
class RoutingState:
    """The route function's stores, all in the StateTable."""

    sessions: SessionStore
    loads: LoadStore
    rosters: RosterStore
    pool: PoolStore

    @classmethod
    def in_table(cls, table_name: str) -> RoutingState:
        return cls(SessionStore(table_name), LoadStore(table_name), RosterStore(table_name), PoolStore(table_name))
