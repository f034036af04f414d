"""Outbound events on EventBridge (bus configured through the template parameter): a rule on the
bus forwards them to a queue, where the test reads what the enterprise's systems would get."""

from __future__ import annotations

import json

import pytest

from tests.support.stack import wait_for

pytestmark = pytest.mark.integration
BUS = "kefu-events-test"
STACK_ENV = {"KEFU_TEMPLATE_PARAMS": json.dumps({"EventBusName": BUS})}


def test_session_events_reach_the_bus(stack, simulator, aws, aws_endpoint) -> None:
    events = aws.client("events", endpoint_url=aws_endpoint)
    sqs = aws.client("sqs", endpoint_url=aws_endpoint)
    events.create_event_bus(Name=BUS)
    queue = sqs.create_queue(QueueName="kefu-events-sink")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="all-kefu", EventBusName=BUS, EventPattern=json.dumps({"source": ["kefu"]}))
    events.put_targets(Rule="all-kefu", EventBusName=BUS, Targets=[{"Id": "sink", "Arn": arn}])

    k = simulator.add_account(name="events")
    simulator.add_servicer(k, "alice")
    simulator.customer_enter(k)  # the first pull, a replay: announces nothing
    wait_for(lambda: any(c["open_kfid"] == k for c in simulator.sync_calls), message="first pull")
    euid, _ = simulator.customer_enter(k, scene="ad_spring", scene_param="c=1")
    simulator.customer_says(k, euid, "hello")
    wait_for(lambda: simulator.session(k, euid)["service_state"] == 3, message="assignment")
    simulator.end_session(k, euid, "alice")

    received: list[dict] = []

    def collect() -> set[str]:
        for message in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", []):
            received.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
        return {e["detail-type"] for e in received if e["detail"].get("external_userid") == euid}

    wanted = {"session.entered", "message.received", "session.assigned", "session.ended"}
    wait_for(lambda: wanted <= collect(), timeout=20, message=f"events {wanted}")
    mine = [e for e in received if e["detail"].get("external_userid") == euid]
    assert all(e["source"] == "kefu" and e["detail"]["open_kfid"] == k and e["detail"]["id"] for e in mine)
    entered = next(e["detail"] for e in mine if e["detail-type"] == "session.entered")
    assert (entered["scene"], entered["scene_param"]) == ("ad_spring", "c=1")
    assigned = next(e["detail"] for e in mine if e["detail-type"] == "session.assigned")
    assert assigned["servicer"] == "alice"
    assert "hello" not in json.dumps(mine)  # events carry no message text
