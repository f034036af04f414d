"""Lambda's SQS semantics through the local stack: a failing sync job is retried after the
visibility timeout and reaches the dead-letter queue after maxReceiveCount receives."""

from __future__ import annotations

import json

import pytest

from tests.support.stack import max_receive_count, wait_for

pytestmark = pytest.mark.integration
STACK_ENV = {"KEFU_LOCAL_VISIBILITY_TIMEOUT": "1"}


def dlq_messages(clients, url: str) -> list[dict]:
    return clients.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0,
                                       VisibilityTimeout=0).get("Messages", [])


def test_failing_job_is_retried_then_dead_lettered_and_nothing_is_lost(stack, simulator, clients) -> None:
    open_kfid = simulator.add_account(name="dlq")
    simulator.auto_callback = False
    euid, _ = simulator.customer_enter(open_kfid)
    simulator.customer_says(open_kfid, euid, "anyone there?")
    receives = max_receive_count("SyncQueue")
    simulator.inject_fault("kf/sync_msg", errcode=60020, times=receives)  # every receive fails
    simulator.fire_callback(open_kfid)  # one sync job
    dlq = stack.resources["SyncDeadLetterQueue"]
    found = wait_for(lambda: [m for m in dlq_messages(clients, dlq) if json.loads(m["Body"])["open_kfid"] == open_kfid],
                     timeout=10 + 3 * receives, message="the job in the DLQ")
    assert found
    failed_calls = [c for c in simulator.calls_to("kf/sync_msg") if (c.get("body") or {}).get("open_kfid") == open_kfid]
    assert len(failed_calls) == receives  # one pull per receive (60020 is not retried inside a receive)
    # The account's next callback pulls from the same (absent) cursor: nothing was lost.
    simulator.auto_callback = True
    simulator.customer_says(open_kfid, euid, "hello?")
    table = stack.resources["MessagesTable"]

    def stored() -> int:
        items = clients.dynamodb.query(TableName=table, IndexName="account",
                                       KeyConditionExpression="open_kfid = :o",
                                       FilterExpression="attribute_not_exists(sender)",
                                       ExpressionAttributeValues={":o": {"S": open_kfid}})["Items"]
        return len(items)

    wait_for(lambda: stored() == 3, timeout=15, message="enter_session and both messages stored")
