"""Routing state in the StateTable, all of it surviving cold starts and deploys.

Items (pk / sk):
- session per customer and account: "rsession#<open_kfid>#<euid>" / "s" - WeCom state as we know it
  (absent = unknown), current servicer, ``counted`` (whose load includes this session), entry
  scene, the send budget (``window_at``, ``sends``, ``send_ids`` taken in this window), sticky memory (``last_servicer``,
  ``last_served_at``), pool position, rating, and tags of the last items routed (``routed``), so a
  repeated item is recognised.
- load per servicer: "rload#<open_kfid>" / userid - ``active`` sessions in state 3 we counted.
- roster: "roster#<open_kfid>" / "roster" - ``on`` map userid -> receiving, ``fetched_at``.
- rotation: "rrot#<open_kfid>" / "rr" - a counter for round_robin.
- pool: "rpool#<open_kfid>" / "<pooled_at ms, 15 digits>#<euid>" - oldest first.

Capacity is enforced by one transaction that raises the servicer's load only while it is under
the limit and marks the session counted only if it was not, so concurrent assignments never push
a servicer over max_active_per_servicer and a retried assignment never counts twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kefu import aws
from kefu.routing.decide import Routed
from kefu.routing.session import Session
from kefu.store.dynamo import is_conditional_failure

SEND_WINDOW = 48 * 3600
SEND_LIMIT = 5


@dataclass(frozen=True)
class PoolEntry:
    sort_key: str
    external_userid: str


class RoutingState:
    def __init__(self, table_name: str) -> None:
        self._name = table_name

    @property
    def _table(self) -> Any:
        return aws.table(self._name)

    @staticmethod
    def session_key(open_kfid: str, euid: str) -> dict[str, str]:
        return {"pk": f"rsession#{open_kfid}#{euid}", "sk": "s"}

    @staticmethod
    def _load_key(open_kfid: str, userid: str) -> dict[str, str]:
        return {"pk": f"rload#{open_kfid}", "sk": userid}

    # -- sessions ---------------------------------------------------------------------------

    def session(self, open_kfid: str, euid: str) -> Session:
        item = self._table.get_item(Key=self.session_key(open_kfid, euid), ConsistentRead=True).get("Item")
        return Session.from_item(item)

    def update_session(self, open_kfid: str, euid: str, set_fields: dict[str, Any] | None = None,
                       remove: tuple[str, ...] = (), condition: str | None = None,
                       values: dict[str, Any] | None = None) -> bool:
        """SET/REMOVE fields; returns False when ``condition`` does not hold."""
        names: dict[str, str] = {}
        vals: dict[str, Any] = dict(values or {})
        parts = []
        for i, (field, value) in enumerate((set_fields or {}).items()):
            names[f"#s{i}"] = field
            vals[f":s{i}"] = value
            parts.append(f"#s{i} = :s{i}")
        expression = ("SET " + ", ".join(parts)) if parts else ""
        if remove:
            for i, field in enumerate(remove):
                names[f"#r{i}"] = field
            expression += " REMOVE " + ", ".join(f"#r{i}" for i in range(len(remove)))
        args: dict[str, Any] = {"Key": self.session_key(open_kfid, euid), "UpdateExpression": expression.strip(),
                                "ExpressionAttributeNames": names}
        if vals:
            args["ExpressionAttributeValues"] = vals
        if condition:
            args["ConditionExpression"] = condition
        try:
            self._table.update_item(**args)
            return True
        except Exception as exc:
            if is_conditional_failure(exc):
                return False
            raise

    def routed(self, open_kfid: str, euid: str) -> Routed:
        """The customer's newest items the engine has finished with (see decide.Routed)."""
        return Routed(self.session(open_kfid, euid).routed)

    def mark_routed(self, open_kfid: str, euid: str, routed: Routed) -> None:
        self.update_session(open_kfid, euid, {"routed": list(routed.tags)})

    def take_send(self, open_kfid: str, euid: str, now: float, send_id: str) -> bool:
        """Reserve one API send in the customer's window (state 0/1, < 5 sends, < 48 h) for the
        send named ``send_id``; a retry of the same send finds its unit taken and uses it again,
        never a second one."""
        try:
            self._table.update_item(
                Key=self.session_key(open_kfid, euid),
                UpdateExpression="SET sends = sends + :inc ADD send_ids :ids",
                ConditionExpression=("#st IN (:zero, :one) AND sends < :limit AND window_at > :since "
                                     "AND NOT contains(send_ids, :id)"),
                ExpressionAttributeNames={"#st": "state"},
                ExpressionAttributeValues={":zero": 0, ":one": 1, ":limit": SEND_LIMIT,
                                           ":since": int(now - SEND_WINDOW), ":inc": 1,
                                           ":ids": {send_id}, ":id": send_id},
            )
            return True
        except Exception as exc:
            if is_conditional_failure(exc):
                item = self._table.get_item(Key=self.session_key(open_kfid, euid), ConsistentRead=True).get("Item") or {}
                return send_id in (item.get("send_ids") or set())
            raise

    # -- capacity -----------------------------------------------------------------------------

    def loads(self, open_kfid: str) -> dict[str, int]:
        from boto3.dynamodb.conditions import Key

        items = self._table.query(KeyConditionExpression=Key("pk").eq(f"rload#{open_kfid}"), ConsistentRead=True)
        return {str(i["sk"]): int(i.get("active", 0)) for i in items.get("Items", [])}

    def reserve(self, open_kfid: str, euid: str, servicer: str, max_active: int) -> str:
        """Count the session against ``servicer`` if it has room: "ok", "full" or "counted" (already)."""
        client = self._table.meta.client
        try:
            client.transact_write_items(TransactItems=[
                {"Update": {
                    "TableName": self._name, "Key": self._load_key(open_kfid, servicer),
                    "UpdateExpression": "ADD active :one",
                    "ConditionExpression": "attribute_not_exists(active) OR active < :max",
                    "ExpressionAttributeValues": {":one": 1, ":max": max_active},
                }},
                {"Update": {
                    "TableName": self._name, "Key": self.session_key(open_kfid, euid),
                    "UpdateExpression": "SET counted = :s",
                    "ConditionExpression": "attribute_not_exists(counted)",
                    "ExpressionAttributeValues": {":s": servicer},
                }},
            ])
            return "ok"
        except client.exceptions.TransactionCanceledException as exc:
            reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
            if len(reasons) > 1 and reasons[1] == "ConditionalCheckFailed":
                return "counted"
            if reasons and reasons[0] == "ConditionalCheckFailed":
                return "full"
            raise

    def move_count(self, open_kfid: str, euid: str, old: str | None, new: str | None) -> bool:
        """Move the session's count from ``old`` to ``new`` (either may be None) exactly once."""
        if old == new:
            return False
        items: list[dict[str, Any]] = []
        if old:
            items.append({"Update": {"TableName": self._name, "Key": self._load_key(open_kfid, old),
                                     "UpdateExpression": "ADD active :minus",
                                     "ExpressionAttributeValues": {":minus": -1}}})
        if new:
            items.append({"Update": {"TableName": self._name, "Key": self._load_key(open_kfid, new),
                                     "UpdateExpression": "ADD active :one", "ExpressionAttributeValues": {":one": 1}}})
        session: dict[str, Any] = {"TableName": self._name, "Key": self.session_key(open_kfid, euid)}
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
        client = self._table.meta.client
        try:
            client.transact_write_items(TransactItems=items)
            return True
        except client.exceptions.TransactionCanceledException:
            return False  # already moved (a retried event) or counted elsewhere

    # -- roster and rotation ------------------------------------------------------------------

    def roster(self, open_kfid: str) -> tuple[dict[str, bool], float] | None:
        item = self._table.get_item(Key={"pk": f"roster#{open_kfid}", "sk": "roster"}, ConsistentRead=True).get("Item")
        if not item or "on" not in item:
            return None
        return {str(k): bool(v) for k, v in item["on"].items()}, float(item.get("fetched_at", 0))

    def save_roster(self, open_kfid: str, on: dict[str, bool], now: float) -> None:
        self._table.put_item(Item={"pk": f"roster#{open_kfid}", "sk": "roster", "on": on, "fetched_at": int(now)})

    def set_servicer(self, open_kfid: str, userid: str, receiving: bool) -> bool:
        """Apply a servicer_status_change to a roster we already hold (no roster: nothing to do)."""
        try:
            self._table.update_item(
                Key={"pk": f"roster#{open_kfid}", "sk": "roster"}, UpdateExpression="SET #on.#u = :v",
                ConditionExpression="attribute_exists(#on)",
                ExpressionAttributeNames={"#on": "on", "#u": userid}, ExpressionAttributeValues={":v": receiving},
            )
            return True
        except Exception as exc:
            if is_conditional_failure(exc):
                return False
            raise

    def next_rotation(self, open_kfid: str) -> int:
        response = self._table.update_item(
            Key={"pk": f"rrot#{open_kfid}", "sk": "rr"}, UpdateExpression="ADD n :one",
            ExpressionAttributeValues={":one": 1}, ReturnValues="UPDATED_NEW",
        )
        return int(response["Attributes"]["n"])

    # -- pool ---------------------------------------------------------------------------------

    def pool_add(self, open_kfid: str, euid: str, now: float) -> str:
        sort_key = f"{int(now * 1000):015d}#{euid}"
        self._table.put_item(Item={"pk": f"rpool#{open_kfid}", "sk": sort_key, "external_userid": euid})
        return sort_key

    def pool_oldest(self, open_kfid: str, limit: int = 25) -> list[PoolEntry]:
        from boto3.dynamodb.conditions import Key

        items = self._table.query(KeyConditionExpression=Key("pk").eq(f"rpool#{open_kfid}"),
                                  Limit=limit, ConsistentRead=True).get("Items", [])
        return [PoolEntry(str(i["sk"]), str(i["external_userid"])) for i in items]

    def pool_remove(self, open_kfid: str, sort_key: str) -> None:
        self._table.delete_item(Key={"pk": f"rpool#{open_kfid}", "sk": sort_key})

    def pool_size(self, open_kfid: str) -> int:
        from boto3.dynamodb.conditions import Key

        return int(self._table.query(KeyConditionExpression=Key("pk").eq(f"rpool#{open_kfid}"),
                                     Select="COUNT", ConsistentRead=True)["Count"])
