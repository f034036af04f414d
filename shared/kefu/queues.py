"""SQS adapter: put jobs on the FIFO queues."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass

from kefu import aws
from kefu.callback import SyncJob

# The route queue's group for an account's work that names no customer (events without one,
# the sweep's pool drains); every other group is one customer's.
ACCOUNT_GROUP = "_account"


@dataclass(frozen=True)
class QueueMessage:
    body: str
    group_id: str
    deduplication_id: str


def enqueue_sync(queue_url: str, job: SyncJob) -> str:
    response = aws.client("sqs").send_message(
        QueueUrl=queue_url,
        MessageBody=job.body(),
        MessageGroupId=job.group_id,
        MessageDeduplicationId=job.deduplication_id,
    )
    return str(response["MessageId"])


def send_batch(queue_url: str, messages: list[QueueMessage]) -> None:
    """Send in batches of 10, in order (FIFO keeps order within a group); raise if any failed."""
    sqs = aws.client("sqs")
    for start in range(0, len(messages), 10):
        chunk = messages[start : start + 10]
        response = sqs.send_message_batch(QueueUrl=queue_url, Entries=[
            {"Id": str(i), "MessageBody": m.body, "MessageGroupId": m.group_id,
             "MessageDeduplicationId": m.deduplication_id}
            for i, m in enumerate(chunk)
        ])
        failed = response.get("Failed") or []
        if failed:
            reasons = ", ".join(f"{f.get('Code')}: {f.get('Message')}" for f in failed)
            raise RuntimeError(f"{len(failed)} message(s) not queued: {reasons}")


def enqueue_media(queue_url: str, open_kfid: str, why: str) -> None:
    """A media job for the account (kefu.media); one group per account, so one worker at a time.
    Each job is its own message: a repeated one finds nothing left to do."""
    aws.client("sqs").send_message(
        QueueUrl=queue_url, MessageBody=json.dumps({"open_kfid": open_kfid, "why": why}), MessageGroupId=open_kfid,
        MessageDeduplicationId=hashlib.sha256(f"{open_kfid}\n{why}\n{time.time_ns()}".encode()).hexdigest(),
    )
