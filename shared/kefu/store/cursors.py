"""The sync cursor per kf account, moved only forward from the value it was read at, and the
account's catch-up state (design rule 9) kept on the same item.

An account catches up from its first pull until a pull of that catch-up reaches has_more 0; the
time of the callback that started it is stored before the first page, so a catch-up that dies
after some pages is resumed as a catch-up (its remaining history is never routed) and a retry
started by a later callback still measures history from the first one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from kefu.store import keys
from kefu.store.dynamo import TableStore, conditionally


class CursorMoved(RuntimeError):
    """Another writer moved the cursor since it was read; this pull must not overwrite it."""


@dataclass(frozen=True)
class CursorState:
    cursor: str | None = None
    catchup_since: int | None = None  # set while the account catches up: the callback that started it
    updated_at: int | None = None  # when a pull last moved the cursor (or began the catch-up)

    @property
    def catching_up(self) -> bool:
        return self.catchup_since is not None


class CursorStore(TableStore):
    def read(self, open_kfid: str) -> CursorState:
        item = self._table.get_item(Key=keys.cursor(open_kfid), ConsistentRead=True).get("Item") or {}
        since, updated = item.get("catchup_since"), item.get("updated_at")
        return CursorState(str(item["cursor"]) if item.get("cursor") else None,
                           int(since) if since is not None else None,
                           int(updated) if updated is not None else None)

    def get(self, open_kfid: str) -> str | None:
        return self.read(open_kfid).cursor

    def begin_catchup(self, open_kfid: str, since: int) -> CursorState:
        """Start the account's catch-up at ``since`` unless it has a cursor or a catch-up already;
        returns the state that holds afterwards."""
        started = conditionally(lambda: self._table.update_item(
            Key=keys.cursor(open_kfid), UpdateExpression="SET catchup_since = :since, updated_at = :now",
            ConditionExpression="attribute_not_exists(#c) AND attribute_not_exists(catchup_since)",
            ExpressionAttributeNames={"#c": "cursor"},
            ExpressionAttributeValues={":since": int(since), ":now": int(time.time())},
        ))
        return CursorState(None, int(since)) if started else self.read(open_kfid)

    def advance(self, open_kfid: str, old: str | None, new: str | None, *, caught_up: bool = False) -> None:
        """Move the cursor from ``old`` to ``new`` (None: keep it) and, with ``caught_up``, end the
        catch-up in the same write; refused if another writer moved the cursor meanwhile."""
        sets = ["updated_at = :now"]
        values: dict[str, Any] = {":now": int(time.time())}
        if new is not None:
            sets.append("#c = :new")
            values[":new"] = new
        args: dict[str, Any] = {
            "Key": keys.cursor(open_kfid),
            "UpdateExpression": "SET " + ", ".join(sets) + (" REMOVE catchup_since" if caught_up else ""),
            "ExpressionAttributeNames": {"#c": "cursor"},
            "ExpressionAttributeValues": values,
        }
        if old is None:
            args["ConditionExpression"] = "attribute_not_exists(#c)"
        else:
            args["ConditionExpression"] = "#c = :old"
            values[":old"] = old
        if not conditionally(lambda: self._table.update_item(**args)):
            raise CursorMoved(f"cursor of {open_kfid} was moved by another writer")
