"""Reading what the stack stored, as the tests and benchmarks check it (boto3 low-level client)."""

from __future__ import annotations

from typing import Any


# WeCom's items only: Kefu's own sends are stored beside them (``sender`` "kefu"), and WeCom's
# sync_msg never returns those.
FROM_WECOM = "attribute_not_exists(sender)"


def stored_msgids(dynamodb: Any, table: str, open_kfid: str) -> list[str]:
    """Every msgid of WeCom's the MessagesTable holds for an account (paging through the account index)."""
    msgids: list[str] = []
    args: dict[str, Any] = {"TableName": table, "IndexName": "account", "KeyConditionExpression": "open_kfid = :o",
                            "ExpressionAttributeValues": {":o": {"S": open_kfid}}, "ProjectionExpression": "msgid",
                            "FilterExpression": FROM_WECOM}
    while True:
        page = dynamodb.query(**args)
        msgids += [i["msgid"]["S"] for i in page["Items"]]
        if "LastEvaluatedKey" not in page:
            return msgids
        args["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def stored_count(dynamodb: Any, table: str, open_kfid: str) -> int:
    """How many of WeCom's items the MessagesTable holds for an account."""
    total, args = 0, {"TableName": table, "IndexName": "account", "Select": "COUNT", "FilterExpression": FROM_WECOM,
                      "KeyConditionExpression": "open_kfid = :o", "ExpressionAttributeValues": {":o": {"S": open_kfid}}}
    while True:
        page = dynamodb.query(**args)
        total += int(page["Count"])
        if "LastEvaluatedKey" not in page:
            return total
        args["ExclusiveStartKey"] = page["LastEvaluatedKey"]
