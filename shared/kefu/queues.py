"""SQS adapter: put jobs on the FIFO queues."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass

from kefu import aws, tenancy
from kefu.callback import SuiteCommand, SyncJob

# The route queue's group for an account's work that names no customer (events without one,
# the sweep's pool drains); every other group is one customer's.
ACCOUNT_GROUP = "_account"


@dataclass(frozen=True)
class QueueMessage:
    body: str
    group_id: str
    deduplication_id: str


def for_corp(message: QueueMessage) -> QueueMessage:
    """``message`` as the corp in scope sends it: in provider mode its body names the corp, its
    group is the corp's own (one corp's backlog never holds up another's groups) and its
    deduplication id differs from any other corp's. Unchanged in single mode."""
    if not tenancy.provider_mode():
        return message
    body = json.loads(message.body)
    body.update(tenancy.stamp())
    dedup = hashlib.sha256(f"{tenancy.require()}\n{message.deduplication_id}".encode()).hexdigest()
    return QueueMessage(json.dumps(body, ensure_ascii=False, separators=(",", ":")),
                        tenancy.qualify(message.group_id), dedup)


def enqueue_sync(queue_url: str, job: SyncJob) -> str:
    message = for_corp(QueueMessage(job.body(), job.group_id, job.deduplication_id))
    response = aws.client("sqs").send_message(
        QueueUrl=queue_url,
        MessageBody=message.body,
        MessageGroupId=message.group_id,
        MessageDeduplicationId=message.deduplication_id,
    )
    return str(response["MessageId"])


COMMAND_GROUP = "provider#commands"  # the suite's commands, one at a time and in order


def enqueue_command(queue_url: str, command: SuiteCommand) -> None:
    """A suite command for the sync function (kefu.provider.Provider.run_command)."""
    from kefu.provider import command_body

    body = json.dumps(command_body(command), separators=(",", ":"))
    aws.client("sqs").send_message(QueueUrl=queue_url, MessageBody=body, MessageGroupId=COMMAND_GROUP,
                                   MessageDeduplicationId=hashlib.sha256(body.encode()).hexdigest())


def send_batch(queue_url: str, messages: list[QueueMessage]) -> None:
    """Send in batches of 10, in order (FIFO keeps order within a group); raise if any failed."""
    sqs = aws.client("sqs")
    messages = [for_corp(m) for m in messages]
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
    message = for_corp(QueueMessage(
        json.dumps({"open_kfid": open_kfid, "why": why}), open_kfid,
        hashlib.sha256(f"{open_kfid}\n{why}\n{time.time_ns()}".encode()).hexdigest()))
    aws.client("sqs").send_message(QueueUrl=queue_url, MessageBody=message.body, MessageGroupId=message.group_id,
                                   MessageDeduplicationId=message.deduplication_id)
