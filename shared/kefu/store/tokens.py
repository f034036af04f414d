"""The shared access_token record in DynamoDB: one item per (corp, secret), with a refresh lease.

Item: pk = "token#<corp_id>#<secret fingerprint>", sk = "token", access_token, expires_at
(epoch seconds), lease_until (epoch seconds while one caller refreshes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kefu.store import keys
from kefu.store.dynamo import TableStore, conditionally


@dataclass(frozen=True)
class StoredToken:
    access_token: str
    expires_at: float


class TokenTable(TableStore):
    def __init__(self, table_name: str, key: str, table: Any = None) -> None:
        super().__init__(table_name, table)
        self._key = keys.token(key)

    def read(self) -> StoredToken | None:
        item = self._table.get_item(Key=self._key, ConsistentRead=True).get("Item")
        if not item or "access_token" not in item:
            return None
        return StoredToken(str(item["access_token"]), float(item["expires_at"]))

    def try_lease(self, now: float, seconds: float) -> bool:
        """Take the refresh lease unless another caller holds a live one."""
        return conditionally(lambda: self._table.update_item(
            Key=self._key,
            UpdateExpression="SET lease_until = :until",
            ConditionExpression="attribute_not_exists(lease_until) OR lease_until < :now",
            ExpressionAttributeValues={":until": int(now + seconds), ":now": int(now)},
        ))

    def save(self, token: StoredToken) -> None:
        """Store a fresh token and release the lease."""
        self._table.update_item(
            Key=self._key,
            UpdateExpression="SET access_token = :t, expires_at = :e REMOVE lease_until",
            ExpressionAttributeValues={":t": token.access_token, ":e": int(token.expires_at)},
        )

    def release(self) -> None:
        self._table.update_item(Key=self._key, UpdateExpression="REMOVE lease_until")

    def expire(self, access_token: str) -> None:
        """Mark ``access_token`` dead if it is still the stored one (WeCom rejected it)."""
        conditionally(lambda: self._table.update_item(
            Key=self._key,
            UpdateExpression="SET expires_at = :zero",
            ConditionExpression="access_token = :t",
            ExpressionAttributeValues={":zero": 0, ":t": access_token},
        ))
