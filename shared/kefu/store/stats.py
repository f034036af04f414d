"""Counters for kefu.stats in the StateTable: counted once per causing event, read per day."""

from __future__ import annotations

import time
from typing import Any

from kefu import aws
from kefu.stats import Increment

MARKER_TTL = 8 * 86400  # longer than any queue retention: a retry always finds its marker


def _update(table: str, inc: Increment) -> dict[str, Any]:
    names = {"#f": inc.field}
    values: dict[str, Any] = {":n": inc.amount}
    sets = []
    for i, (key, value) in enumerate(inc.labels):
        names[f"#l{i}"] = key
        values[f":l{i}"] = value
        sets.append(f"#l{i} = :l{i}")
    expression = "ADD #f :n" + (" SET " + ", ".join(sets) if sets else "")
    return {"TableName": table, "Key": {"pk": inc.pk, "sk": inc.sk}, "UpdateExpression": expression,
            "ExpressionAttributeNames": names, "ExpressionAttributeValues": values}


class StatsStore:
    def __init__(self, table_name: str) -> None:
        self._name = table_name

    def add(self, increments: list[Increment]) -> None:
        """Count without a marker (for counts where each request is its own event)."""
        table = aws.table(self._name)
        for inc in increments:
            args = _update(self._name, inc)
            args.pop("TableName")
            table.update_item(**args)

    def count_once(self, event_id: str, increments: list[Increment]) -> bool:
        """Apply ``increments`` unless ``event_id`` was counted already; True when counted now."""
        if not increments:
            return False
        client = aws.table(self._name).meta.client
        marker = {"Put": {"TableName": self._name,
                          "Item": {"pk": f"counted#{event_id}", "sk": "c", "expires_at": int(time.time()) + MARKER_TTL},
                          "ConditionExpression": "attribute_not_exists(pk)"}}
        try:
            client.transact_write_items(TransactItems=[marker, *({"Update": _update(self._name, i)} for i in increments)])
            return True
        except client.exceptions.TransactionCanceledException as exc:
            reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
            if reasons and reasons[0] == "ConditionalCheckFailed":
                return False  # a retry of an event already counted
            raise

    def day_items(self, kind: str, day: str, open_kfid: str | None = None) -> list[dict[str, Any]]:
        from boto3.dynamodb.conditions import Key

        condition = Key("pk").eq(f"{kind}#{day}")
        if open_kfid:
            condition = condition & Key("sk").begins_with(f"{open_kfid}#")
        items: list[dict[str, Any]] = []
        args: dict[str, Any] = {"KeyConditionExpression": condition}
        while True:
            page = aws.table(self._name).query(**args)
            items.extend(page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return items
            args["ExclusiveStartKey"] = page["LastEvaluatedKey"]
