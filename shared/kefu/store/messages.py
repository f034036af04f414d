"""The message store: one item per msgid, the item as WeCom sent it plus the fields queried by,
and Kefu's own sends beside them (``sender`` "kefu", see ``kefu_record``): the complete record.

Indexes: ``conversation`` (conv, ts) - a customer's conversation in order; ``account``
(open_kfid, ts) - an account's traffic, newest first for recent conversations; ``entries``
(entry_of, ts) - a customer's session entries with their scene (enter_session items only).
``ts`` is "<send_time, 10 digits>#<arrival sequence, 20 digits>", so items of the same second keep
the order WeCom returned them in.
"""

from __future__ import annotations

import json
import time
from typing import Any

from kefu import tenancy
from kefu.store import keys
from kefu.store.dynamo import TableStore, batch_get, conditionally, put_all
from kefu.wecom.models import EnterSessionEvent, SyncItem

DAY = 86400


def conversation_key(open_kfid: str, external_userid: str) -> str:
    return keys.conversation(open_kfid, external_userid)


def to_record(item: SyncItem, msgid: str, sequence: int, stored_at: int, retention_days: int = 0) -> dict[str, Any]:
    send_time = item.send_time or stored_at
    record: dict[str, Any] = {
        "msgid": msgid,
        "ts": f"{send_time:010d}#{sequence:020d}",
        "send_time": send_time,
        "stored_at": stored_at,
        "msgtype": item.msgtype or "unknown",
        "raw": json.dumps(item.raw, ensure_ascii=False, separators=(",", ":")),
    }
    optional = {"open_kfid": item.open_kfid, "external_userid": item.external_userid,
                "servicer_userid": item.servicer_userid, "origin": item.origin, "event_type": item.event_type}
    record.update({k: v for k, v in optional.items() if v not in (None, "")})
    if item.open_kfid and item.external_userid:
        record["conv"] = conversation_key(item.open_kfid, item.external_userid)
        entry = item.event_as(EnterSessionEvent)
        if entry is not None:
            record["entry_of"] = record["conv"]
            record["scene"] = entry.entry_scene or ""
            record["scene_param"] = entry.scene_param or ""
    if retention_days > 0:
        record["expires_at"] = send_time + retention_days * DAY
    return record


KEFU = "kefu"  # the ``sender`` of Kefu's own sends (WeCom's items carry an ``origin`` instead)
PENDING, SENT, FAILED = "pending", "sent", "failed"  # a Kefu send's ``send_state``


def kefu_record(open_kfid: str, external_userid: str, msgid: str, message: dict[str, Any], at: int, *,
                rule: str, cause: str, via: str, retention_days: int = 0,
                ai: dict[str, Any] | None = None) -> dict[str, Any]:
    """A message Kefu sends (``message`` as WeCom takes it: {"msgtype": ..., <msgtype>: {...}}),
    recorded before the call as pending. ``rule``: why Kefu said it (the decision's rule);
    ``cause``: the msgid of the item that led to it; ``via``: the WeCom call that carries it.
    Its ``ts`` sorts it after everything stored before it in the same second. ``ai``: an AI
    answer's model and the knowledge entries it used (kefu.answerer.Answer.marks)."""
    conv = conversation_key(open_kfid, external_userid)
    record: dict[str, Any] = {
        "msgid": msgid, "ts": f"{at:010d}#{time.time_ns():020d}", "send_time": at, "stored_at": at,
        "msgtype": str(message.get("msgtype") or "unknown"),
        "raw": json.dumps(message, ensure_ascii=False, separators=(",", ":")),
        "open_kfid": open_kfid, "external_userid": external_userid, "conv": conv,
        "sender": KEFU, "rule": rule[:256], "cause": cause, "via": via, "send_state": PENDING,
    }
    if ai is not None:
        record["ai"] = ai
    if retention_days > 0:
        record["expires_at"] = at + retention_days * DAY
    return record


def stored(record: dict[str, Any]) -> dict[str, Any]:
    """A record as the table keeps it: in provider mode its msgid qualified and its corp named
    (``conv`` and ``entry_of`` come qualified from kefu.store.keys.conversation)."""
    if not tenancy.provider_mode():
        return record
    return {**record, **keys.message(str(record["msgid"])), **tenancy.stamp()}


def shown(item: dict[str, Any]) -> dict[str, Any]:
    """A stored item as readers see it: the corp's qualification taken off again."""
    if not tenancy.provider_mode():
        return item
    plain = dict(item)
    for field in ("msgid", "conv", "entry_of"):
        if isinstance(plain.get(field), str):
            plain[field] = tenancy.unqualify(plain[field])
    plain.pop("corp", None)
    return plain


def _stored_key(start: dict[str, Any]) -> dict[str, Any]:
    """A page's start key as a reader holds it (``shown``) -> as the table keeps it."""
    if not tenancy.provider_mode():
        return start
    key = dict(start)
    for field in ("msgid", "conv", "entry_of"):
        if isinstance(key.get(field), str):
            key[field] = tenancy.qualify(key[field])
    return key


class MessageStore(TableStore):
    """The MessagesTable (the operator CLI builds it with its own Table: its credentials, region)."""

    def existing(self, msgids: list[str]) -> set[str]:
        found = batch_get(self._name, (keys.message(m) for m in msgids), projection="msgid")
        return {tenancy.unqualify(str(item["msgid"])) for item in found}

    def put_new(self, records: list[dict[str, Any]]) -> int:
        return put_all(self._name, (stored(r) for r in records))

    def set_media_key(self, msgid: str, key: str) -> None:
        self._table.update_item(
            Key=keys.message(msgid), UpdateExpression="SET media_key = :k",
            ConditionExpression="attribute_exists(msgid)", ExpressionAttributeValues={":k": key},
        )

    def set_media_state(self, msgid: str, state: str, reason: str) -> None:
        """A message whose media will never be saved: ``media_state`` says so, and why."""
        self._table.update_item(
            Key=keys.message(msgid), UpdateExpression="SET media_state = :s, media_error = :r",
            ConditionExpression="attribute_exists(msgid)", ExpressionAttributeValues={":s": state, ":r": reason},
        )

    # -- Kefu's own sends (kefu.routing.sending's transcript) ---------------------------------

    def begin_send(self, record: dict[str, Any]) -> str | None:
        """Record a send before its call. None when it is new; else the ``send_state`` an earlier
        attempt left (pending: its outcome is unknown; sent; failed), and the record is kept."""
        item = stored(record)
        if conditionally(lambda: self._table.put_item(Item=item, ConditionExpression="attribute_not_exists(msgid)")):
            return None
        held = self._table.get_item(Key=keys.message(str(record["msgid"])), ConsistentRead=True,
                                    ProjectionExpression="send_state").get("Item") or {}
        return str(held.get("send_state") or PENDING)

    def state_of(self, msgid: str) -> str | None:
        """A Kefu send's ``send_state`` (None when no such send is recorded)."""
        item = self._table.get_item(Key=keys.message(msgid), ConsistentRead=True,
                                    ProjectionExpression="send_state").get("Item")
        return str(item.get("send_state") or PENDING) if item is not None else None

    def send_record(self, msgid: str) -> dict[str, Any] | None:
        """A Kefu send as recorded (its message in ``raw``), or None."""
        item = self._table.get_item(Key=keys.message(msgid), ConsistentRead=True).get("Item")
        return shown(item) if item is not None and item.get("sender") == KEFU else None

    def settle_send(self, msgid: str, state: str, error: str | None = None) -> None:
        names = {"#st": "send_state"}
        values: dict[str, Any] = {":s": state}
        expression = "SET #st = :s"
        if error:
            expression += ", send_error = :e"
            values[":e"] = error[:512]
        conditionally(lambda: self._table.update_item(
            Key=keys.message(msgid), UpdateExpression=expression, ConditionExpression="attribute_exists(msgid)",
            ExpressionAttributeNames=names, ExpressionAttributeValues=values))

    # -- marks from WeCom's events (the sync stores them as they come) ---------------------------

    def mark_recalled(self, msgid: str, at: int, by: str) -> bool:
        """A message recalled by the customer or a servicer; False when it is not stored."""
        return conditionally(lambda: self._table.update_item(
            Key=keys.message(msgid), UpdateExpression="SET recalled_at = :t, recalled_by = :b",
            ConditionExpression="attribute_exists(msgid)", ExpressionAttributeValues={":t": at, ":b": by}))

    def mark_send_failed(self, msgid: str, fail_type: int | None) -> bool:
        """WeCom reported (msg_send_fail) that a message it accepted never reached the customer."""
        values: dict[str, Any] = {":f": FAILED, ":t": fail_type if fail_type is not None else -1}
        return conditionally(lambda: self._table.update_item(
            Key=keys.message(msgid), UpdateExpression="SET send_state = :f, fail_type = :t",
            ConditionExpression="attribute_exists(msgid)", ExpressionAttributeValues=values))

    def _query(self, index: str, key: str, value: str, limit: int, newest_first: bool,
               start: dict[str, Any] | None = None) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        from boto3.dynamodb.conditions import Key

        args: dict[str, Any] = {"IndexName": index, "KeyConditionExpression": Key(key).eq(value),
                                "ScanIndexForward": not newest_first, "Limit": limit}
        if start:
            args["ExclusiveStartKey"] = _stored_key(start)
        response = self._table.query(**args)
        last = response.get("LastEvaluatedKey")
        return [shown(i) for i in response.get("Items", [])], shown(last) if last else None

    def conversation(self, open_kfid: str, external_userid: str, limit: int = 100, newest_first: bool = False,
                     start: dict[str, Any] | None = None) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        return self._query("conversation", "conv", conversation_key(open_kfid, external_userid), limit, newest_first, start)

    def recent_items(self, open_kfid: str, since: int | None, limit: int,
                     start: dict[str, Any] | None = None) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """The account's items, newest first (since ``since``, unix seconds, when given)."""
        from boto3.dynamodb.conditions import Key

        condition = Key("open_kfid").eq(open_kfid)
        if since is not None:
            condition = condition & Key("ts").gte(f"{since:010d}")
        args: dict[str, Any] = {"IndexName": "account", "KeyConditionExpression": condition,
                                "ScanIndexForward": False, "Limit": limit}
        if tenancy.provider_mode():  # the index is keyed by open_kfid: keep to the corp's own items
            from boto3.dynamodb.conditions import Attr

            args["FilterExpression"] = Attr("corp").eq(tenancy.require())
        if start:
            args["ExclusiveStartKey"] = _stored_key(start)
        response = self._table.query(**args)
        last = response.get("LastEvaluatedKey")
        return [shown(i) for i in response.get("Items", [])], shown(last) if last else None

    def entries(self, open_kfid: str, external_userid: str, limit: int = 20) -> list[dict[str, Any]]:
        """The customer's latest entries (enter_session items), oldest first."""
        items, _ = self._query("entries", "entry_of", conversation_key(open_kfid, external_userid), limit, True)
        return list(reversed(items))
