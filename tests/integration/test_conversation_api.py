"""The conversation API through the local stack: a helpdesk (handler: external) fed by
message.received events with content, answering through POST .../messages; idempotent sends,
the 409s that name WeCom's rule (and never call WeCom), transfers, the end, and every 4xx.

Locally the HTTP API does not check IAM signatures (as for /stats); the deployed template's
routes are checked to require them in tests/unit/test_template.py."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.stack import wait_for

pytestmark = pytest.mark.integration
BUS = "kefu-api-events"
RULES = Path(__file__).resolve().with_name("conversation_api_rules.yaml")
STACK_ENV = {"KEFU_ROUTING_CONFIG": str(RULES),
             "KEFU_TEMPLATE_PARAMS": json.dumps({"EventBusName": BUS, "EventContent": "full"})}
HELPDESK = "wkAPIhelpdesk".ljust(32, "0")
PLAIN = "wkAPIplain".ljust(32, "0")


@pytest.fixture(scope="module")
def world(stack, simulator, aws, aws_endpoint) -> Any:
    events = aws.client("events", endpoint_url=aws_endpoint)
    sqs = aws.client("sqs", endpoint_url=aws_endpoint)
    events.create_event_bus(Name=BUS)
    queue = sqs.create_queue(QueueName=f"helpdesk-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    # What the template's optional HelpdeskRule does with an API destination, here into a queue.
    events.put_rule(Name="helpdesk", EventBusName=BUS, EventPattern=json.dumps(
        {"source": ["kefu"], "detail-type": ["message.received", "message.sent", "message.failed"]}))
    events.put_targets(Rule="helpdesk", EventBusName=BUS, Targets=[{"Id": "helpdesk", "Arn": arn}])
    for k in (HELPDESK, PLAIN):
        simulator.add_account(open_kfid=k, name=k[:10])
        simulator.add_servicer(k, "alice")
        simulator.add_servicer(k, "bob")
        simulator.customer_enter(k, external_userid=f"wmwarm{k[5:12]}")
        wait_for(lambda k=k: any(c["open_kfid"] == k and c.get("errcode") == 0 for c in simulator.sync_calls),
                 message="first pull")

    class World:
        http = httpx.Client(base_url=stack.url, timeout=15)
        sim = simulator
        seen: list[dict[str, Any]] = []

        def events(self) -> list[dict[str, Any]]:
            for m in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", []):
                self.seen.append(json.loads(m["Body"]))
                sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
            return self.seen

        def send(self, k: str, euid: str, message: Any, key: str | None = None) -> httpx.Response:
            headers = {"Idempotency-Key": key} if key else {}
            return self.http.post(f"/conversations/{euid}/messages", params={"account": k}, headers=headers,
                                  json={"message": message})

    return World()


def test_a_helpdesk_gets_the_customers_words_and_answers_through_the_api(world) -> None:
    sim = world.sim
    euid, _ = sim.customer_enter(HELPDESK)
    sim.customer_says(HELPDESK, euid, "where is my order 42?")

    def question() -> dict[str, Any] | None:
        return next((e["detail"] for e in world.events() if e["detail-type"] == "message.received"
                     and e["detail"]["external_userid"] == euid), None)

    asked = wait_for(question, timeout=20, message="message.received with content")
    assert asked["message"] == {"msgtype": "text", "text": {"content": "where is my order 42?"}}
    assert sim.session(HELPDESK, euid)["service_state"] in (0, 1)  # never handed to a WeCom servicer
    # The helpdesk answers; its retry (same Idempotency-Key) delivers nothing more.
    first = world.send(HELPDESK, euid, "Order 42 ships today.", key="ticket-42-reply-1")
    again = world.send(HELPDESK, euid, "Order 42 ships today.", key="ticket-42-reply-1")
    assert first.status_code == 200 and again.status_code == 200, (first.text, again.text)
    assert first.json()["msgid"] == again.json()["msgid"] and again.json()["repeated"] is True
    sent = [s for s in sim.sent_messages(HELPDESK, euid) if s["via"] == "send_msg"]
    assert [s["payload"]["content"] for s in sent] == ["Order 42 ships today."]
    announced = wait_for(lambda: {e["detail"]["rule"]: e["detail"] for e in world.events()
                                  if e["detail-type"] == "message.sent" and e["detail"]["external_userid"] == euid
                                  and e["detail"]["rule"] == "conversation API"}, message="message.sent")
    assert announced["conversation API"]["message"]["text"]["content"] == "Order 42 ships today."
    welcome = next(e["detail"] for e in world.events() if e["detail-type"] == "message.sent"
                   and e["detail"]["external_userid"] == euid and e["detail"]["rule"] == "welcome")
    assert welcome["sender"] == "kefu" and welcome["message"]["text"]["content"] == "welcome-helpdesk"
    # The conversation reads back with both sides, Kefu's answer marked.
    read = world.http.get(f"/conversations/{euid}", params={"account": HELPDESK}).json()
    # The welcome and the customer's words fall in one second: Kefu's send sorts after what was
    # stored before it. The helpdesk's answer, made after both, comes last.
    shown = [(m["sender"], m["msgtype"]) for m in read["messages"]]
    assert sorted(shown[1:3]) == [("customer", "text"), ("kefu", "text")] and shown[0] == ("system", "event")
    assert shown[3:] == [("kefu", "text")] and read["messages"][3]["rule"] == "conversation API"
    assert read["accounts"][0]["session"]["state"] == 1


def test_a_send_outside_the_budget_is_a_409_and_wecom_is_never_called(world) -> None:
    sim = world.sim
    euid, _ = sim.customer_enter(HELPDESK, welcome=False)
    sim.customer_says(HELPDESK, euid, "hi")
    wait_for(lambda: any(e["detail"]["external_userid"] == euid for e in world.events()), message="received")
    for n in range(5):
        assert world.send(HELPDESK, euid, f"answer {n}", key=f"b{n}").status_code == 200
    calls = len(sim.calls_to("kf/send_msg"))
    refused = world.send(HELPDESK, euid, "one too many", key="b5")
    assert refused.status_code == 409 and refused.json()["rule"] == "send_budget", refused.text
    assert len(sim.calls_to("kf/send_msg")) == calls
    quiet, _ = sim.customer_enter(HELPDESK, welcome=False)  # entered, never wrote: no window
    no_window = world.send(HELPDESK, quiet, "hello?", key="w1")
    assert no_window.status_code == 409 and no_window.json()["rule"] == "send_window"


def test_transfer_to_a_servicer_then_sends_are_refused_and_end_ends(world) -> None:
    sim = world.sim
    euid, _ = sim.customer_enter(HELPDESK, welcome=False)
    sim.customer_says(HELPDESK, euid, "I want a person")
    wait_for(lambda: any(e["detail"]["external_userid"] == euid for e in world.events()), message="received")
    moved = world.http.post(f"/conversations/{euid}/transfer", params={"account": HELPDESK},
                            json={"to": "servicer", "servicer": "bob"})
    assert moved.status_code == 200 and moved.json()["servicer"] == "bob", moved.text
    assert sim.session(HELPDESK, euid) == {**sim.session(HELPDESK, euid), "service_state": 3, "servicer_userid": "bob"}
    refused = world.send(HELPDESK, euid, "still there?", key="t1")
    assert refused.status_code == 409 and refused.json()["rule"] == "session_state"
    back = world.http.post(f"/conversations/{euid}/transfer", params={"account": HELPDESK}, json={"to": "bot"})
    assert back.status_code == 409 and back.json()["rule"] == "session_state"
    nobody = world.http.post(f"/conversations/{euid}/transfer", params={"account": HELPDESK},
                             json={"to": "servicer", "servicer": "mallory"})
    assert nobody.status_code == 409 and nobody.json()["rule"] == "not_a_servicer"
    ended = world.http.post(f"/conversations/{euid}/end", params={"account": HELPDESK})
    assert ended.status_code == 200 and sim.session(HELPDESK, euid)["service_state"] == 4
    again = world.http.post(f"/conversations/{euid}/end", params={"account": HELPDESK})
    assert again.status_code == 409


def test_recent_conversations_and_customers(world) -> None:
    sim = world.sim
    euid, _ = sim.customer_enter(PLAIN, scene="poster", welcome=False)
    sim.customer_says(PLAIN, euid, "price?")
    wait_for(lambda: any(s["payload"].get("content") == "bot-price" for s in sim.sent_messages(PLAIN, euid)),
             message="the bot's reply")
    recent = world.http.get("/conversations", params={"account": PLAIN, "limit": 1}).json()
    assert [c["external_userid"] for c in recent["conversations"]] == [euid] and recent["next"]
    older = world.http.get("/conversations", params={"account": PLAIN, "limit": 5, "cursor": recent["next"]}).json()
    assert euid not in [c["external_userid"] for c in older["conversations"]]
    customer = wait_for(lambda: (r := world.http.get(f"/customers/{euid}", params={"account": PLAIN})).status_code == 200
                        and r.json(), message="the customer")
    assert customer["accounts"][0]["entries"][-1]["scene"] == "poster"
    assert world.http.get("/customers", params={"unionid": "nobody"}).json() == {"unionid": "nobody", "customers": []}


@pytest.mark.parametrize(("method", "path", "params", "body", "headers", "status", "error"), [
    ("GET", "/conversations", {}, None, {}, 400, "invalid_account"),
    ("GET", "/conversations", {"account": PLAIN, "limit": "0"}, None, {}, 400, "invalid_limit"),
    ("GET", "/conversations", {"account": PLAIN, "since": "yesterday"}, None, {}, 400, "invalid_since"),
    ("GET", "/conversations", {"account": PLAIN, "cursor": "not-a-cursor"}, None, {}, 400, "invalid_cursor"),
    ("GET", "/conversations/not-a-customer", {"account": PLAIN}, None, {}, 400, "invalid_external_userid"),
    ("GET", "/conversations/wmnobodyatall000", {"account": PLAIN}, None, {}, 404, "not_found"),
    ("POST", "/conversations/wmnobodyatall000/messages", {"account": PLAIN}, {"message": "hi"}, {}, 400,
     "invalid_idempotency_key"),
    ("POST", "/conversations/wmnobodyatall000/messages", {"account": PLAIN}, {"text": "hi"}, {"Idempotency-Key": "k"},
     400, "invalid_message"),
    ("POST", "/conversations/wmnobodyatall000/messages", {"account": PLAIN}, {"message": {"image": "a.png"}},
     {"Idempotency-Key": "k"}, 400, "invalid_message"),
    ("POST", "/conversations/wmnobodyatall000/messages", {"account": PLAIN}, {"message": "字" * 700},
     {"Idempotency-Key": "k"}, 400, "invalid_message"),
    ("POST", "/conversations/wmnobodyatall000/transfer", {"account": PLAIN}, {"to": "moon"}, {}, 400, "invalid_to"),
    ("POST", "/conversations/wmnobodyatall000/transfer", {"account": PLAIN}, {"to": "servicer"}, {}, 400,
     "invalid_servicer"),
    ("POST", "/conversations/wmnobodyatall000/end", {}, None, {}, 400, "invalid_account"),
    ("GET", "/customers", {}, None, {}, 400, "invalid_unionid"),
    ("GET", "/customers/wmnobodyatall000", {"account": PLAIN}, None, {}, 404, "not_found"),
])
def test_every_bad_request_is_a_4xx_that_says_what_to_fix(world, method: str, path: str, params: dict[str, str],
                                                         body: Any, headers: dict[str, str], status: int,
                                                         error: str) -> None:
    answer = world.http.request(method, path, params=params, headers=headers,
                                content=None if body is None else json.dumps(body))
    assert answer.status_code == status and answer.json()["error"] == error, answer.text
    assert answer.json()["message"]
    raw = world.http.post("/conversations/wmnobodyatall000/messages", params={"account": PLAIN},
                          headers={"Idempotency-Key": "k"}, content=b"{not json")
    assert raw.status_code == 400 and raw.json()["error"] == "invalid_body"
