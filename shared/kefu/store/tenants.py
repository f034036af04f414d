"""The provider's registry (kefu.store.keys: ``provider#...`` items of the state table): the corps
that authorized the suite, the latest suite_ticket and the corps' API keys.

A corp's item: ``state`` (active | cancelled), ``corp_name``, ``agent_id``, ``code`` (the permanent
code, encrypted with KMS by kefu.provider.PermanentCodes: never stored in clear), ``authorized_at``,
``cancelled_at``, ``accounts`` (the kf accounts it granted the app, from kf_account_auth_change)
and ``api_keys`` (SHA-256 digests of the keys issued to it).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from kefu.store import keys
from kefu.store.dynamo import TableStore, conditionally

ACTIVE, CANCELLED = "active", "cancelled"
API_KEY_BYTES = 32


@dataclass(frozen=True)
class Tenant:
    corp_id: str
    state: str
    corp_name: str = ""
    agent_id: int | None = None
    code: bytes = b""
    authorized_at: int = 0
    cancelled_at: int | None = None
    accounts: frozenset[str] = frozenset()

    @property
    def active(self) -> bool:
        return self.state == ACTIVE

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Tenant:
        code: Any = item.get("code") or b""
        raw = bytes(getattr(code, "value", code))
        agent = item.get("agent_id")
        cancelled = item.get("cancelled_at")
        return cls(str(item["sk"]), str(item.get("state") or CANCELLED), str(item.get("corp_name") or ""),
                   int(agent) if agent is not None else None, raw, int(item.get("authorized_at") or 0),
                   int(cancelled) if cancelled is not None else None, frozenset(item.get("accounts") or ()))


def key_digest(api_key: str) -> str:
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()


class TenantStore(TableStore):
    # -- corps ----------------------------------------------------------------------------------

    def get(self, corp_id: str) -> Tenant | None:
        item = self._table.get_item(Key=keys.tenant(corp_id), ConsistentRead=True).get("Item")
        return Tenant.from_item(item) if item else None

    def authorized(self, corp_id: str, corp_name: str, agent_id: int | None, code: bytes, at: int) -> None:
        """The corp authorized the suite (again): active, with this permanent code."""
        values: dict[str, Any] = {":a": ACTIVE, ":n": corp_name, ":c": code, ":t": at}
        sets = ["#s = :a", "corp_name = :n", "code = :c", "authorized_at = :t"]
        if agent_id is not None:
            sets.append("agent_id = :g")
            values[":g"] = agent_id
        expression = "SET " + ", ".join(sets) + " REMOVE cancelled_at"
        self._table.update_item(Key=keys.tenant(corp_id), UpdateExpression=expression,
                                ExpressionAttributeNames={"#s": "state"}, ExpressionAttributeValues=values)

    def renamed(self, corp_id: str, corp_name: str, agent_id: int | None) -> bool:
        """The corp's name and agent as WeCom has them now; only while it is active (False else:
        a change never brings a cancelled corp back)."""
        values: dict[str, Any] = {":n": corp_name, ":a": ACTIVE}
        expression = "SET corp_name = :n"
        if agent_id is not None:
            expression += ", agent_id = :g"
            values[":g"] = agent_id
        return conditionally(lambda: self._table.update_item(
            Key=keys.tenant(corp_id), UpdateExpression=expression, ConditionExpression="#s = :a",
            ExpressionAttributeNames={"#s": "state"}, ExpressionAttributeValues=values))

    def cancel(self, corp_id: str, at: int) -> bool:
        """Mark the corp cancelled (False when it was never authorized or is cancelled already)."""
        return conditionally(lambda: self._table.update_item(
            Key=keys.tenant(corp_id), UpdateExpression="SET #s = :c, cancelled_at = :t",
            ConditionExpression="attribute_exists(sk) AND #s = :a",
            ExpressionAttributeNames={"#s": "state"}, ExpressionAttributeValues={":c": CANCELLED, ":a": ACTIVE, ":t": at}))

    def grant_accounts(self, corp_id: str, added: list[str], removed: list[str]) -> None:
        for expression, ids in (("ADD accounts :ids", added), ("DELETE accounts :ids", removed)):
            if ids:
                self._change_accounts(corp_id, expression, ids)

    def _change_accounts(self, corp_id: str, expression: str, ids: list[str]) -> None:
        conditionally(lambda: self._table.update_item(
            Key=keys.tenant(corp_id), UpdateExpression=expression, ConditionExpression="attribute_exists(sk)",
            ExpressionAttributeValues={":ids": set(ids)}))

    def all(self) -> list[Tenant]:
        """Every corp the registry knows, active or cancelled."""
        from boto3.dynamodb.conditions import Key

        args: dict[str, Any] = {"KeyConditionExpression": Key("pk").eq(keys.PROVIDER_CORPS), "ConsistentRead": True}
        found: list[Tenant] = []
        while True:
            page = self._table.query(**args)
            found.extend(Tenant.from_item(item) for item in page.get("Items", []))
            if not page.get("LastEvaluatedKey"):
                return found
            args["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def active(self) -> list[str]:
        return sorted(t.corp_id for t in self.all() if t.active)

    # -- the suite_ticket -----------------------------------------------------------------------

    def save_ticket(self, ticket: str, timestamp: int) -> bool:
        """Keep the newest ticket WeCom pushed (and the one before it); False for an older push."""
        return conditionally(lambda: self._table.update_item(
            Key=keys.suite_ticket(), UpdateExpression="SET previous = if_not_exists(ticket, :t), ticket = :t, pushed_at = :at",
            ConditionExpression="attribute_not_exists(pushed_at) OR pushed_at < :at",
            ExpressionAttributeValues={":t": ticket, ":at": timestamp}))

    def ticket(self) -> str | None:
        item = self._table.get_item(Key=keys.suite_ticket(), ConsistentRead=True).get("Item") or {}
        return str(item["ticket"]) if item.get("ticket") else None

    # -- API keys: which corp a caller of the conversation API and /stats speaks for -----------------

    def issue_key(self, corp_id: str) -> str:
        """A new API key for an active corp (shown once; only its digest is kept)."""
        api_key = "kefu_" + secrets.token_urlsafe(API_KEY_BYTES)
        digest = key_digest(api_key)
        self._table.put_item(Item={**keys.corp_api_key(digest), "corp": corp_id})
        self._table.update_item(Key=keys.tenant(corp_id), UpdateExpression="ADD api_keys :d",
                                ExpressionAttributeValues={":d": {digest}})
        return api_key

    def corp_of_key(self, api_key: str) -> str | None:
        item = self._table.get_item(Key=keys.corp_api_key(key_digest(api_key))).get("Item")
        return str(item["corp"]) if item else None

    def revoke_keys(self, corp_id: str) -> int:
        item = self._table.get_item(Key=keys.tenant(corp_id), ConsistentRead=True,
                                    ProjectionExpression="api_keys").get("Item") or {}
        digests = sorted(item.get("api_keys") or ())
        for digest in digests:
            self._table.delete_item(Key=keys.corp_api_key(digest))
        if digests:
            self._table.update_item(Key=keys.tenant(corp_id), UpdateExpression="REMOVE api_keys")
        return len(digests)
