"""The AI answerer's caps in the StateTable (keys.ai_calls, keys.ai_spend): model calls per
customer and day and per account and day, and the month's spend against its ceiling.

A call is reserved before it is made, in one transaction: the question's tag joins both day items'
``calls`` sets while each holds fewer than its cap, and the month's spend is under the ceiling. A
retried queue record carries the same tag and finds it reserved, so it takes no second place.
The spend is added after the call from the tokens the model reports; calls made at once near the
ceiling may each pass it, so a month can end over it by at most that many answers.
"""

from __future__ import annotations

import time
from typing import Any

from kefu.store import keys
from kefu.store.dynamo import TableStore, transact

DAY_ITEM_TTL = 3 * 86400


class AiUsage(TableStore):
    def reserve(self, open_kfid: str, euid: str, tag: str, day: str, month: str, per_customer: int, per_day: int,
                ceiling_micro_usd: int) -> str | None:
        """Reserve one model call for the question ``tag``: None when reserved (now, or by an
        earlier attempt of the same question), else which cap refused it."""
        expires = int(time.time()) + DAY_ITEM_TTL
        customer, account = keys.ai_calls(day, open_kfid, euid), keys.ai_calls(day, open_kfid)

        def take(key: dict[str, str], cap: int) -> dict[str, Any]:
            return {"Update": {
                "TableName": self._name, "Key": key,
                "UpdateExpression": "ADD calls :tag SET expires_at = :exp",
                "ConditionExpression": "attribute_not_exists(calls) OR (size(calls) < :cap AND NOT contains(calls, :t))",
                "ExpressionAttributeValues": {":tag": {tag}, ":t": tag, ":cap": cap, ":exp": expires}}}

        spend = {"ConditionCheck": {
            "TableName": self._name, "Key": keys.ai_spend(month),
            "ConditionExpression": "attribute_not_exists(micro_usd) OR micro_usd < :ceiling",
            "ExpressionAttributeValues": {":ceiling": ceiling_micro_usd}}}
        reasons = transact(self._table.meta.client, [take(customer, per_customer), take(account, per_day), spend])
        if reasons is None:
            return None
        if reasons[2] == "ConditionalCheckFailed":
            return "the month's model budget is spent (AiMonthlyBudgetUsd)"
        held = [tag in (self._table.get_item(Key=key, ConsistentRead=True).get("Item") or {}).get("calls", set())
                for key in (customer, account)]
        if all(held):
            return None  # an earlier attempt of this question reserved it
        if reasons[0] == "ConditionalCheckFailed" and not held[0]:
            return f"the customer's {per_customer} model calls of the day are used (per_customer_per_day)"
        return f"the account's {per_day} model calls of the day are used (per_day)"

    def spend(self, month: str, micro_usd: int) -> None:
        if micro_usd > 0:
            self._table.update_item(Key=keys.ai_spend(month), UpdateExpression="ADD micro_usd :n",
                                    ExpressionAttributeValues={":n": micro_usd})
