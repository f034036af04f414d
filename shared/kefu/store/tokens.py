"""The shared access_token record in DynamoDB: one item per (corp, secret), with a refresh lease.

Item: pk = "token#<corp_id>#<secret fingerprint>", sk = "token", access_token, expires_at
(epoch seconds), lease_until (epoch seconds while one caller refreshes), and after failed refreshes
refresh_failures (how many in a row) and refresh_after (epoch seconds, to the millisecond: nobody
takes the lease before it). A successful refresh removes the last two.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from kefu.store import keys
from kefu.store.dynamo import TableStore, conditionally


@dataclass(frozen=True)
class StoredToken:
    access_token: str
    expires_at: float


@dataclass(frozen=True)
class TokenState:
    """The shared item: the token, if one was stored, and the backoff after failed refreshes."""

    token: StoredToken | None = None
    failures: int = 0  # consecutive failed refreshes
    refresh_after: float = 0.0  # epoch seconds: no refresh before this


def _seconds(value: float) -> Decimal:
    return Decimal(f"{value:.3f}")  # DynamoDB numbers from boto3 are Decimals, never floats


class TokenTable(TableStore):
    def __init__(self, table_name: str, key: str, table: Any = None, item_key: dict[str, str] | None = None) -> None:
        """``key``: the token's (kefu.wecom.tokens.token_key); ``item_key`` replaces the whole
        item key (the provider's suite_access_token, kefu.store.keys.suite_token)."""
        super().__init__(table_name, table)
        self._key = item_key if item_key is not None else keys.token(key)

    def read(self) -> TokenState:
        item = self._table.get_item(Key=self._key, ConsistentRead=True).get("Item") or {}
        token = StoredToken(str(item["access_token"]), float(item["expires_at"])) if "access_token" in item else None
        return TokenState(token, int(item.get("refresh_failures", 0)), float(item.get("refresh_after", 0)))

    def try_lease(self, now: float, seconds: float) -> bool:
        """Take the refresh lease unless another caller holds a live one or refreshes back off."""
        return conditionally(lambda: self._table.update_item(
            Key=self._key,
            UpdateExpression="SET lease_until = :until",
            ConditionExpression="(attribute_not_exists(lease_until) OR lease_until < :now)"
                                " AND (attribute_not_exists(refresh_after) OR refresh_after <= :clock)",
            ExpressionAttributeValues={":until": int(now + seconds), ":now": int(now), ":clock": _seconds(now)},
        ))

    def save(self, token: StoredToken) -> None:
        """Store a fresh token, release the lease and end any backoff."""
        self._table.update_item(
            Key=self._key,
            UpdateExpression="SET access_token = :t, expires_at = :e REMOVE lease_until, refresh_failures, refresh_after",
            ExpressionAttributeValues={":t": token.access_token, ":e": int(token.expires_at)},
        )

    def back_off(self, failures: int, refresh_after: float) -> None:
        """Record a failed refresh (the lease holder's ``failures``-th in a row) and release the lease:
        no caller takes it again before ``refresh_after``."""
        self._table.update_item(
            Key=self._key,
            UpdateExpression="SET refresh_failures = :n, refresh_after = :after REMOVE lease_until",
            ExpressionAttributeValues={":n": failures, ":after": _seconds(refresh_after)},
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
