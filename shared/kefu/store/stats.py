"""Counters for kefu.stats in the StateTable: counted once per causing event, read per day; and
WeCom's own figures (kefu.wecom_stats), stored as WeCom gave them."""

from __future__ import annotations

import time
from typing import Any

from kefu import wecom_stats
from kefu.stats import Increment
from kefu.store import keys
from kefu.store.dynamo import TableStore, batch_get, put_all, transact

MARKER_TTL = 8 * 86400  # longer than any queue retention: a retry always finds its marker


def _updates(table: str, increments: list[Increment]) -> list[dict[str, Any]]:
    """One UpdateItem per counter item, with every field it adds (a transaction may touch an
    item once)."""
    by_item: dict[tuple[str, str], list[Increment]] = {}
    for inc in increments:
        by_item.setdefault((inc.pk, inc.sk), []).append(inc)
    updates = []
    for (pk, sk), incs in by_item.items():
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        adds, sets = [], []
        for i, inc in enumerate(incs):
            names[f"#f{i}"] = inc.field
            values[f":n{i}"] = inc.amount
            adds.append(f"#f{i} :n{i}")
        for j, (key, value) in enumerate(dict(label for inc in incs for label in inc.labels).items()):
            names[f"#l{j}"] = key
            values[f":l{j}"] = value
            sets.append(f"#l{j} = :l{j}")
        expression = "ADD " + ", ".join(adds) + (" SET " + ", ".join(sets) if sets else "")
        updates.append({"TableName": table, "Key": {"pk": pk, "sk": sk}, "UpdateExpression": expression,
                        "ExpressionAttributeNames": names, "ExpressionAttributeValues": values})
    return updates


class StatsStore(TableStore):
    def add(self, increments: list[Increment]) -> None:
        """Count without a marker (for counts where each request is its own event)."""
        table = self._table
        for args in _updates(self._name, increments):
            args.pop("TableName")
            table.update_item(**args)

    def count_once(self, event_id: str, increments: list[Increment]) -> bool:
        """Apply ``increments`` unless ``event_id`` was counted already; True when counted now."""
        if not increments:
            return False
        marker = {"Put": {"TableName": self._name,
                          "Item": {**keys.counted(event_id), "expires_at": int(time.time()) + MARKER_TTL},
                          "ConditionExpression": "attribute_not_exists(pk)"}}
        # Counters are shared by every customer of a day and scene: concurrent counts conflict,
        # and transact() retries them; only the marker's condition means "counted already".
        reasons = transact(self._table.meta.client, [marker, *({"Update": u} for u in _updates(self._name, increments))])
        return reasons is None

    def day_items(self, kind: str, day: str, open_kfid: str | None = None) -> list[dict[str, Any]]:
        from boto3.dynamodb.conditions import Key

        condition = Key("pk").eq(keys.figures_pk(kind, day))
        if open_kfid:
            condition = condition & Key("sk").begins_with(f"{open_kfid}#")
        items: list[dict[str, Any]] = []
        args: dict[str, Any] = {"KeyConditionExpression": condition}
        while True:
            page = self._table.query(**args)
            items.extend(page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return items
            args["ExclusiveStartKey"] = page["LastEvaluatedKey"]


class WeComStatsStore(StatsStore):
    """WeCom's figures (kefu.wecom_stats): ``wecom#<day>`` items, read with day_items("wecom", ...),
    and which servicers Kefu counted on a day."""

    def settled_days(self, open_kfid: str, days: list[str]) -> set[str]:
        """The days whose account item holds WeCom's figures already (or its word that it had none)."""
        wanted = [{"pk": keys.figures_pk(wecom_stats.KIND, day), "sk": f"{open_kfid}#{wecom_stats.ACCOUNT}"}
                  for day in days]
        found = batch_get(self._name, wanted) if wanted else []
        return {str(item["day"]) for item in found if wecom_stats.settled(item)}

    def put(self, items: list[dict[str, Any]]) -> None:
        """Write (overwrite) whole items."""
        if items:
            put_all(self._name, items)

    def kefu_servicers(self, open_kfid: str, days: list[str]) -> set[str]:
        """The servicers Kefu counted figures for on ``days``."""
        return {str(item["servicer"]) for day in days for item in self.day_items("servicer", day, open_kfid)
                if item.get("servicer")}
