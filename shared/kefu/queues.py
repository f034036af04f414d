"""SQS adapter: put jobs on the FIFO queues."""

from __future__ import annotations

from kefu import aws
from kefu.callback import SyncJob


def enqueue_sync(queue_url: str, job: SyncJob) -> str:
    response = aws.client("sqs").send_message(
        QueueUrl=queue_url,
        MessageBody=job.body(),
        MessageGroupId=job.group_id,
        MessageDeduplicationId=job.deduplication_id,
    )
    return str(response["MessageId"])
