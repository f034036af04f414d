"""The shared access_token record in DynamoDB: one item per (corp, secret), with a refresh lease.

Item: pk = "token#<corp_id>#<secret fingerprint>", sk = "token", access_token, expires_at
(epoch seconds), lease_until (epoch seconds while one caller refreshes).
"""

from __future__ import annotations

from dataclasses import dataclass

from kefu import aws
from kefu.store import keys


@dataclass(frozen=True)
class StoredToken:
    access_token: str
    expires_at: float


class TokenTable:
    def __init__(self, table_name: str, key: str) -> None:
        self._table_name = table_name
        self._key = keys.token(key)

    @property
    def _table(self):  # noqa: ANN202 - boto3 Table
        return aws.table(self._table_name)

    def read(self) -> StoredToken | None:
        item = self._table.get_item(Key=self._key, ConsistentRead=True).get("Item")
        if not item or "access_token" not in item:
            return None
        return StoredToken(str(item["access_token"]), float(item["expires_at"]))

    def try_lease(self, now: float, seconds: float) -> bool:
        """Take the refresh lease unless another caller holds a live one."""
        from botocore.exceptions import ClientError

        try:
            self._table.update_item(
                Key=self._key,
                UpdateExpression="SET lease_until = :until",
                ConditionExpression="attribute_not_exists(lease_until) OR lease_until < :now",
                ExpressionAttributeValues={":until": int(now + seconds), ":now": int(now)},
            )
            return True
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise

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
        from botocore.exceptions import ClientError

        try:
            self._table.update_item(
                Key=self._key,
                UpdateExpression="SET expires_at = :zero",
                ConditionExpression="access_token = :t",
                ExpressionAttributeValues={":zero": 0, ":t": access_token},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
