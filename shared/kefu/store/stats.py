"""Counts for kefu.stats in the StateTable, read per day; and WeCom's own figures
(kefu.wecom_stats), stored as WeCom gave them.

A count caused by an event is one item keyed by that event: ``<kind>#<day>#e`` /
``<open_kfid>#<event id>``, holding its amounts and the labels of the figure it adds to (scene or
servicer). Writing it again - a retried queue record - writes the same item, so an event is
counted once with one plain write and no transaction; the figures are the sums of a day's items,
made when they are read. One item per event also keeps a busy day off a single hot counter item.
Counts that are their own events (links issued) are added to a counter item per day and figure
(``<kind>#<day>`` / ``<open_kfid>#<scene>``); a day's figures are the sum of both.
"""

from __future__ import annotations

from typing import Any

from kefu import wecom_stats
from kefu.stats import Increment
from kefu.store import keys
from kefu.store.dynamo import TableStore, batch_get, put_all

EVENTS = "#e"  # the suffix of a day's event items' partition key


def _updates(table: str, increments: list[Increment]) -> list[dict[str, Any]]:
    """One UpdateItem per counter item, with every field it adds."""
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


def event_items(event_id: str, increments: list[Increment]) -> list[dict[str, Any]]:
    """The items that count one event: one per kind of figure it adds to (funnel, servicer). An
    event adds to one figure of each kind; its items are keyed by the event alone (not by the
    figure), so a retry that finds, say, another scene still counts the event once."""
    by_pk: dict[str, dict[str, Any]] = {}
    for inc in increments:
        open_kfid = inc.sk.split("#", 1)[0]
        item = by_pk.setdefault(inc.pk, {"pk": inc.pk + EVENTS, "sk": f"{open_kfid}#{event_id}", "of": inc.sk,
                                         "n": {}})
        if item["of"] != inc.sk:
            kind = inc.pk.split("#", 1)[0]
            raise ValueError(f"event {event_id} adds to two {kind} figures ({item['of']}, {inc.sk})")
        item["n"][inc.field] = item["n"].get(inc.field, 0) + inc.amount
        item.update(dict(inc.labels))
    return list(by_pk.values())


def day_figures(counters: list[dict[str, Any]], events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A day's figures: its counter items plus the sums of its event items, one item per figure
    (same shape as a counter item: the labels and one number per field)."""
    figures: dict[str, dict[str, Any]] = {str(item["sk"]): dict(item) for item in counters}
    for event in events:
        sk = str(event["of"])
        figure = figures.setdefault(sk, {"pk": str(event["pk"])[: -len(EVENTS)], "sk": sk})
        for key, value in event.items():
            if key not in ("pk", "sk", "of", "n"):
                figure[key] = value
        for field, amount in (event.get("n") or {}).items():
            figure[field] = figure.get(field, 0) + amount
    return list(figures.values())


class StatsStore(TableStore):
    def add(self, increments: list[Increment]) -> None:
        """Add to counter items (for counts where each request is its own event)."""
        table = self._table
        for args in _updates(self._name, increments):
            args.pop("TableName")
            table.update_item(**args)

    def count_once(self, event_id: str, increments: list[Increment]) -> None:
        """Count the event ``event_id`` with ``increments``; a repeat changes nothing."""
        if increments:
            put_all(self._name, event_items(event_id, increments))

    def _items(self, pk: str, open_kfid: str | None) -> list[dict[str, Any]]:
        from boto3.dynamodb.conditions import Key

        condition = Key("pk").eq(pk)
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

    def day_items(self, kind: str, day: str, open_kfid: str | None = None) -> list[dict[str, Any]]:
        pk = keys.figures_pk(kind, day)
        if kind == wecom_stats.KIND:  # WeCom's figures are whole items, never counted here
            return self._items(pk, open_kfid)
        return day_figures(self._items(pk, open_kfid), self._items(pk + EVENTS, open_kfid))


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
