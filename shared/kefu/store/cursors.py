"""The sync cursor per kf account, moved only forward from the value it was read at."""

from __future__ import annotations

import time
from typing import Any

from kefu.store import keys
from kefu.store.dynamo import TableStore, conditionally


class CursorMoved(RuntimeError):
    """Another writer moved the cursor since it was read; this pull must not overwrite it."""


class CursorStore(TableStore):
    def get(self, open_kfid: str) -> str | None:
        item = self._table.get_item(Key=keys.cursor(open_kfid), ConsistentRead=True).get("Item")
        return str(item["cursor"]) if item and item.get("cursor") else None

    def advance(self, open_kfid: str, old: str | None, new: str) -> None:
        args: dict[str, Any] = {
            "Key": keys.cursor(open_kfid),
            "UpdateExpression": "SET #c = :new, updated_at = :now",
            "ExpressionAttributeNames": {"#c": "cursor"},
            "ExpressionAttributeValues": {":new": new, ":now": int(time.time())},
        }
        if old is None:
            args["ConditionExpression"] = "attribute_not_exists(#c)"
        else:
            args["ConditionExpression"] = "#c = :old"
            args["ExpressionAttributeValues"][":old"] = old
        if not conditionally(lambda: self._table.update_item(**args)):
            raise CursorMoved(f"cursor of {open_kfid} was moved by another writer")
