"""The state table's sparse ``active`` index: an account's open sessions by last activity. Only
session items that carry ``active_of`` (kefu.routing.session.ACTIVE_FIELDS) are in it, so it
costs a write only where a session is open, and the sweep reads the quiet ones in one query."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from boto3.dynamodb.conditions import Key

from kefu.store import keys
from kefu.store.dynamo import TableStore

INDEX = "active"


@dataclass(frozen=True)
class QuietSession:
    external_userid: str
    scene: str | None
    active_at: int
    checked_at: int | None


class ActiveSessions(TableStore):
    def quiet(self, open_kfid: str, since: int) -> list[QuietSession]:
        """The account's open sessions with no activity after ``since`` (epoch seconds)."""
        args: dict[str, Any] = {
            "IndexName": INDEX,
            "KeyConditionExpression": Key("active_of").eq(keys.indexed(open_kfid)) & Key("active_at").lte(since),
        }
        found: list[QuietSession] = []
        while True:
            page = self._table.query(**args)
            for item in page.get("Items", []):
                euid = keys.session_customer(str(item["pk"]), open_kfid)
                if euid:
                    checked = item.get("checked_at")
                    found.append(QuietSession(euid, str(item.get("scene") or "") or None, int(item["active_at"]),
                                              int(checked) if checked is not None else None))
            if not page.get("LastEvaluatedKey"):
                return found
            args["ExclusiveStartKey"] = page["LastEvaluatedKey"]
