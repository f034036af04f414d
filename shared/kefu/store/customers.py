"""Customer profiles (kf/customer/batchget), one item per external_userid."""

from __future__ import annotations

import time
from typing import Any

from kefu import aws, tenancy
from kefu.store import keys
from kefu.store.dynamo import batch_get, put_all


class CustomerStore:
    def __init__(self, table_name: str) -> None:
        self._name = table_name

    def by_unionid(self, unionid: str) -> list[str]:
        """The external_userids whose profile carries ``unionid`` (the sparse ``unionid`` index)."""
        from boto3.dynamodb.conditions import Key

        found = aws.table(self._name).query(IndexName="unionid", KeyConditionExpression=Key("unionid").eq(keys.indexed(unionid)))
        return sorted(str(item["pk"]).split("#", 1)[1] for item in found.get("Items", []))

    def known(self, external_userids: list[str]) -> set[str]:
        found = batch_get(self._name, (keys.customer(e) for e in external_userids), projection="pk")
        return {str(item["pk"]).split("#", 1)[1] for item in found}

    def get(self, external_userid: str) -> dict[str, Any] | None:
        found = batch_get(self._name, [keys.customer(external_userid)])
        if not found:
            return None
        profile = dict(found[0])
        if isinstance(profile.get("unionid"), str):
            profile["unionid"] = tenancy.unqualify(profile["unionid"])
        return profile

    def save(self, profiles: list[dict[str, Any]]) -> int:
        now = int(time.time())
        records = []
        for profile in profiles:
            euid = str(profile.get("external_userid") or "")
            if not euid:
                continue
            record: dict[str, Any] = {**keys.customer(euid), "external_userid": euid, "updated_at": now}
            for field in ("nickname", "avatar"):
                if profile.get(field):
                    record[field] = str(profile[field])
            if profile.get("unionid"):
                record["unionid"] = keys.indexed(str(profile["unionid"]))
            if isinstance(profile.get("gender"), int):
                record["gender"] = profile["gender"]
            context = profile.get("enter_session_context")
            if isinstance(context, dict):
                record["enter_session_context"] = _plain(context)
            records.append(record)
        return put_all(self._name, records)


def _plain(value: Any) -> Any:
    """DynamoDB takes no floats: keep numbers as ints or strings."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        return str(value)
    return value
