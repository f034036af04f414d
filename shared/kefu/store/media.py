"""Media of stored messages: pending downloads (StateTable) and the objects (S3).

A pending item is written with the message, before the cursor moves, so a crash never loses a
download; it expires with the media_id (WeCom keeps media three days).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from kefu import aws, tenancy
from kefu.store import keys
from kefu.store.dynamo import TableStore, put_all

MEDIA_LIFETIME = 3 * 86400


@dataclass(frozen=True)
class PendingMedia:
    open_kfid: str
    msgid: str
    media_id: str
    object_key: str
    attempts: int
    send_time: int = 0


def object_key(open_kfid: str, external_userid: str, msgid: str) -> str:
    return tenancy.qualify(f"media/{open_kfid}/{external_userid or '_'}/{msgid}")


class MediaStore(TableStore):
    def __init__(self, table_name: str, bucket: str, table: Any = None) -> None:
        super().__init__(table_name, table)
        self._bucket = bucket

    @staticmethod
    def _pk(open_kfid: str) -> str:
        return keys.media_pk(open_kfid)

    def add_pending(self, entries: list[tuple[str, str, str, str, int]]) -> None:
        """entries: (open_kfid, msgid, media_id, object_key, send_time)."""
        put_all(self._name, (
            {"pk": self._pk(o), "sk": m, "media_id": media_id, "object_key": key, "attempts": 0,
             "send_time": send_time, "expires_at": send_time + MEDIA_LIFETIME}
            for o, m, media_id, key, send_time in entries
        ))

    def pending(self, open_kfid: str, limit: int = 25) -> list[PendingMedia]:
        from boto3.dynamodb.conditions import Key

        now = int(time.time())
        items = self._table.query(
            KeyConditionExpression=Key("pk").eq(self._pk(open_kfid)), Limit=limit, ConsistentRead=True
        ).get("Items", [])
        return [
            PendingMedia(open_kfid, str(i["sk"]), str(i["media_id"]), str(i["object_key"]), int(i.get("attempts", 0)),
                         int(i.get("send_time", int(i.get("expires_at", now)) - MEDIA_LIFETIME)))
            for i in items
        ]

    def waiting(self, open_kfid: str) -> bool:
        """Any download pending for the account (what the sweep asks)."""
        from boto3.dynamodb.conditions import Key

        return bool(self._table.query(KeyConditionExpression=Key("pk").eq(self._pk(open_kfid)), Limit=1,
                                      ProjectionExpression="pk").get("Items"))

    def upload(self, key: str, data: bytes, content_type: str) -> None:
        aws.client("s3").put_object(Bucket=self._bucket, Key=key, Body=data, ContentType=content_type)

    def done(self, open_kfid: str, msgid: str) -> None:
        self._table.delete_item(Key={"pk": self._pk(open_kfid), "sk": msgid})

    def failed(self, open_kfid: str, msgid: str) -> int:
        """Count a failed download; returns the attempts so far."""
        answer = self._table.update_item(
            Key={"pk": self._pk(open_kfid), "sk": msgid}, UpdateExpression="ADD attempts :one",
            ExpressionAttributeValues={":one": 1}, ReturnValues="UPDATED_NEW",
        )
        return int(answer.get("Attributes", {}).get("attempts", 1))
