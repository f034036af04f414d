"""The route function's handler in process, as Powertools' examples test handlers: a fake Lambda
context, an SQS batch, and the engine on in-memory ports (tests/unit/fakes.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kefu.config import ConfigError
from kefu.routing.assigner import EngineSettings
from kefu.routing.engine import RoutingEngine
from kefu.routing.rules import parse_rules
from kefu.wecom.errors import WeComError
from tests.unit.fakes import Clock, FakeState, FakeTranscript, FakeWeCom
from tests.unit.lambda_env import LambdaContext, load_function

K = "wkHANDLER".ljust(32, "0")


@pytest.fixture
def route(monkeypatch):
    module = load_function("route", monkeypatch, KEFU_MESSAGES_TABLE="kefu-messages")
    wecom = FakeWeCom(servicers={K: {"alice": True}})
    module._engine = RoutingEngine(wecom, FakeState(), lambda: parse_rules('timezone: Asia/Shanghai\naccounts: {"*": {}}'),
                                   EngineSettings(), module._record, FakeTranscript(), clock=Clock())
    return module, wecom


def record(n: int, euid: str, item: dict[str, Any]) -> dict[str, Any]:
    body = {"open_kfid": K, "external_userid": euid, "items": [{"msgid": item["msgid"], "item": item}]}
    return {"messageId": f"id{n}", "receiptHandle": f"h{n}", "body": json.dumps(body),
            "attributes": {"ApproximateReceiveCount": "1", "MessageGroupId": f"{K}#{euid}"},
            "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs", "eventSourceARN": "arn", "awsRegion": "us-east-1"}


def says(n: int, euid: str, text: str) -> dict[str, Any]:
    return record(n, euid, {"msgid": f"m{n}", "open_kfid": K, "external_userid": euid, "send_time": 1_800_000_000,
                            "origin": 3, "msgtype": "text", "text": {"content": text}})


def test_a_batch_is_routed_and_reports_only_the_failing_customer(route, caplog) -> None:
    module, wecom = route
    broken = record(2, "c2", {"msgid": "m2", "open_kfid": K, "external_userid": "c2", "origin": 3, "msgtype": "text",
                              "text": {"content": "x"}})
    wecom.fail("kf/service_state/trans", WeComError("kf/service_state/trans", 60020, "not allow to access from your ip"))
    answer = module.handler({"Records": [broken, says(3, "c3", "hello")]}, LambdaContext())
    assert answer == {"batchItemFailures": [{"itemIdentifier": "id2"}]}
    assert wecom.states[(K, "c3")] == (3, "alice")  # the other customer went on at once
    failed = [r for r in caplog.records if r.getMessage() == "record failed"]
    assert len(failed) == 1 and failed[0].errcode == 60020 and failed[0].external_userid == "c2"
    decisions = [r for r in caplog.records if r.getMessage() == "route decision"]
    assert [(d.external_userid, d.outcome) for d in decisions] == [("c3", "assigned")]
    assert not any("hello" in str(r.__dict__) for r in caplog.records)  # no message text in the logs


def test_a_bad_message_in_the_rules_stops_the_route_function_at_start(monkeypatch, tmp_path) -> None:
    rules = tmp_path / "routing.yaml"
    rules.write_text('accounts:\n  "*":\n    queue_notice:\n      image: card.png\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_function("route", monkeypatch, KEFU_MESSAGES_TABLE="kefu-messages", KEFU_ROUTING_CONFIG=str(rules))
    assert "line 3: accounts.*.queue_notice" in str(caught.value) and "takes only text, not image" in str(caught.value)
