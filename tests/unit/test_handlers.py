"""The callback, sync, links and stats handlers in process, each with its adapters swapped for
in-memory ones and a fake Lambda context (the route handler: test_route_handler.py)."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from typing import Any

import pytest

from kefu.crypto import WXBizMsgCrypt
from kefu.links import LinkService
from kefu.sync import SyncDeps
from tests.unit.lambda_env import ROOT, LambdaContext, http_event, load_function
from tests.unit.test_sync_loop import Cursors, Messages, Nothing, ScriptedWeCom, text

TOKEN, AES_KEY, CORP = "QDG6eK", "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C", "wwcorp"
K = "wkHANDLERS".ljust(32, "0")
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # Powertools: a handler without metrics


@pytest.fixture
def callback(monkeypatch):
    module = load_function("callback", monkeypatch, KEFU_SYNC_QUEUE_URL="https://sqs.example/q.fifo")
    queued: list[Any] = []
    monkeypatch.setattr(module, "_crypto", lambda: WXBizMsgCrypt(TOKEN, AES_KEY, CORP))
    monkeypatch.setattr(module, "enqueue_sync", lambda url, job: queued.append((url, job)) or "mid-1")
    return module, queued


def signed(xml: str, timestamp: str = "1800000000", nonce: str = "123") -> tuple[dict[str, str], str]:
    crypt = WXBizMsgCrypt(TOKEN, AES_KEY, CORP)
    encrypted = crypt.encrypt(xml)
    query = {"msg_signature": crypt.sign(timestamp, nonce, encrypted), "timestamp": timestamp, "nonce": nonce}
    return query, f"<xml><ToUserName><![CDATA[{CORP}]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"


EVENT = (f"<xml><ToUserName><![CDATA[{CORP}]]></ToUserName><CreateTime>1800000000</CreateTime>"
         "<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[kf_msg_or_event]]></Event>"
         f"<Token><![CDATA[tok1]]></Token><OpenKfId><![CDATA[{K}]]></OpenKfId></xml>")


def test_the_callback_queues_a_verified_event_and_answers_success(callback) -> None:
    module, queued = callback
    query, body = signed(EVENT)
    answer = module.handler(http_event("POST", "/callback", query, body), LambdaContext())
    assert answer["statusCode"] == 200 and answer["body"] == "success"
    assert [(url, job.open_kfid, job.token) for url, job in queued] == [("https://sqs.example/q.fifo", K, "tok1")]


def test_the_callback_refuses_a_forged_signature_and_queues_nothing(callback) -> None:
    module, queued = callback
    query, body = signed(EVENT)
    answer = module.handler(http_event("POST", "/callback", {**query, "msg_signature": "0" * 40}, body), LambdaContext())
    assert 400 <= answer["statusCode"] < 500 and json.loads(answer["body"])["error"]
    assert queued == []


def test_the_callback_answers_url_verification_with_the_plaintext(callback) -> None:
    module, _ = callback
    crypt = WXBizMsgCrypt(TOKEN, AES_KEY, CORP)
    echo = crypt.encrypt("8617301234567890123")
    query = {"msg_signature": crypt.sign("1800000000", "9", echo), "timestamp": "1800000000", "nonce": "9", "echostr": echo}
    answer = module.handler(http_event("GET", "/callback", query), LambdaContext())
    assert answer["statusCode"] == 200 and answer["body"] == "8617301234567890123"


def _lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]


def test_a_queued_callback_writes_its_metrics_and_no_line_at_info(callback, capsys) -> None:
    module, queued = callback
    query, body = signed(EVENT)
    module.handler(http_event("POST", "/callback", query, body), LambdaContext())
    (blob,) = _lines(capsys)
    assert blob["CallbackQueued"] == [1.0] and len(queued) == 1


def test_the_callback_logs_and_counts_as_powertools_did(monkeypatch, capsys) -> None:
    module = load_function("callback", monkeypatch, KEFU_SYNC_QUEUE_URL="https://sqs.example/q.fifo",
                           POWERTOOLS_LOG_LEVEL="DEBUG")
    monkeypatch.setattr(module, "_crypto", lambda: WXBizMsgCrypt(TOKEN, AES_KEY, CORP))
    monkeypatch.setattr(module, "enqueue_sync", lambda url, job: "mid-1")
    monkeypatch.setenv("_X_AMZN_TRACE_ID", "Root=1-abc-def;Parent=1;Sampled=0")
    query, body = signed(EVENT)
    module.handler(http_event("POST", "/callback", query, body), LambdaContext())
    module.handler(http_event("POST", "/callback", query, body), LambdaContext())
    log, blob, again, _ = _lines(capsys)
    assert list(log) == ["level", "location", "message", "timestamp", "service", "cold_start", "function_request_id",
                         "open_kfid", "create_time", "sqs_message_id", "xray_trace_id"]
    assert (log["level"], log["message"], log["service"], log["cold_start"]) == ("DEBUG", "callback queued for sync",
                                                                                 "callback", True)
    assert log["location"].startswith("receive_event:") and log["xray_trace_id"] == "1-abc-def"
    assert (log["function_request_id"], log["open_kfid"]) == ("req-1", K)
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}[+-]\d{4}", log["timestamp"])
    assert again["cold_start"] is False
    assert blob["_aws"]["CloudWatchMetrics"] == [{"Namespace": "Kefu", "Dimensions": [["service"]],
                                                  "Metrics": [{"Name": "CallbackQueued", "Unit": "Count"}]}]
    assert isinstance(blob["_aws"]["Timestamp"], int)
    assert {k: v for k, v in blob.items() if k != "_aws"} == {"service": "callback", "CallbackQueued": [1.0]}


def test_the_callback_counts_a_forgery_as_rejected_and_unverified(callback, capsys) -> None:
    module, _ = callback
    query, body = signed(EVENT)
    module.handler(http_event("POST", "/callback", {**query, "msg_signature": "0" * 40}, body), LambdaContext())
    log, blob = _lines(capsys)
    assert (log["level"], log["message"], log["status"], log["error"], log["path"]) == (
        "WARNING", "callback rejected", 403, "bad_signature", "/callback")
    assert [m["Name"] for m in blob["_aws"]["CloudWatchMetrics"][0]["Metrics"]] == ["CallbackRejected", "CallbackUnverified"]
    assert (blob["CallbackRejected"], blob["CallbackUnverified"]) == ([1.0], [1.0])


def test_the_callback_refuses_broken_xml_without_the_unverified_count(callback, capsys) -> None:
    module, queued = callback
    query, _ = signed(EVENT)
    answer = module.handler(http_event("POST", "/callback", query, "<xml><Encrypt>"), LambdaContext())
    assert answer["statusCode"] == 400 and json.loads(answer["body"])["error"] == "xml_malformed"
    assert answer["headers"] == {"Content-Type": "application/json"}
    _, blob = _lines(capsys)
    assert "CallbackUnverified" not in blob and blob["CallbackRejected"] == [1.0]
    assert queued == []


def test_the_callback_acknowledges_other_events_without_queueing(callback, capsys) -> None:
    module, queued = callback
    query, body = signed(EVENT.replace("kf_msg_or_event", "kf_account_auth_change"))
    answer = module.handler(http_event("POST", "/callback", query, body), LambdaContext())
    assert (answer["statusCode"], answer["body"]) == (200, "success") and queued == []
    log, blob = _lines(capsys)
    assert (log["message"], log["event"]) == ("callback acknowledged, not queued", "kf_account_auth_change")
    assert blob["CallbackIgnored"] == [1.0]


def test_the_callback_reads_a_base64_body(callback) -> None:
    module, queued = callback
    query, body = signed(EVENT)
    event = http_event("POST", "/callback", query, base64.b64encode(body.encode()).decode())
    event["isBase64Encoded"] = True
    assert module.handler(event, LambdaContext())["statusCode"] == 200 and len(queued) == 1
    event["body"] = "QQ"  # bad padding
    answer = module.handler(event, LambdaContext())
    assert answer["statusCode"] == 400 and json.loads(answer["body"])["error"] == "bad_body"


@pytest.mark.parametrize(("method", "path"), [("DELETE", "/callback"), ("GET", "/nope"), ("POST", "/callback/")])
def test_the_callback_answers_404_off_its_routes(callback, capsys, method: str, path: str) -> None:
    module, queued = callback
    answer = module.handler(http_event(method, path, {"x": "1"}, "<xml/>"), LambdaContext())
    assert answer["statusCode"] == 404 and json.loads(answer["body"]) == {"statusCode": 404, "message": "Not found"}
    assert _lines(capsys) == [] and queued == []


def test_the_callback_logs_at_the_lambda_log_level(monkeypatch, capsys) -> None:
    monkeypatch.setenv("AWS_LAMBDA_LOG_LEVEL", "WARN")
    module = load_function("callback", monkeypatch, KEFU_SYNC_QUEUE_URL="https://sqs.example/q.fifo",
                           POWERTOOLS_METRICS_NAMESPACE="KefuTest")
    monkeypatch.setattr(module, "_crypto", lambda: WXBizMsgCrypt(TOKEN, AES_KEY, CORP))
    monkeypatch.setattr(module, "enqueue_sync", lambda url, job: "mid-1")
    query, body = signed(EVENT)
    module.handler(http_event("POST", "/callback", query, body), LambdaContext())
    (blob,) = _lines(capsys)  # the INFO line is filtered out; the metrics are not
    assert blob["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "KefuTest"


def test_the_callback_builds_its_crypto_once_per_secrets(monkeypatch) -> None:
    from kefu.secrets import CallbackSecrets

    module = load_function("callback", monkeypatch, KEFU_SYNC_QUEUE_URL="https://sqs.example/q.fifo")
    current = [CallbackSecrets(TOKEN, AES_KEY)]
    monkeypatch.setattr(module, "load_callback_secrets", lambda prefix: current[0])
    first = module._crypto()
    assert module._crypto() is first
    current[0] = CallbackSecrets(TOKEN, AES_KEY)  # re-read after the cache expired
    assert module._crypto() is not first


def test_the_callback_cold_path_imports_no_pydantic_and_no_http_framework() -> None:
    code = """
import json, sys
sys.path[:0] = [sys.argv[1], sys.argv[2], sys.argv[3]]
import app
from kefu.crypto import WXBizMsgCrypt
from tests.unit.lambda_env import LambdaContext, http_event
from tests.unit.test_callback_parse import CRYPT, GOOD_FIELDS, _post
app._crypto = lambda: CRYPT
app.enqueue_sync = lambda url, job: "mid"
query, body = _post("<xml>" + "".join(f"<{k}>{v}</{k}>" for k, v in GOOD_FIELDS.items()) + "</xml>")
answer = app.handler(http_event("POST", "/callback", query, body.decode()), LambdaContext())
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"pydantic", "pydantic_core", "defusedxml"})
heavy += sorted(m for m in sys.modules if m.startswith(("aws_lambda_powertools.event_handler", "aws_lambda_powertools.utilities.parameters")))
print(json.dumps([answer["statusCode"], heavy]))
"""
    env = {**os.environ, "WECOM_CORP_ID": CORP, "KEFU_STATE_TABLE": "kefu-state",
           "KEFU_SYNC_QUEUE_URL": "https://sqs.example/q.fifo"}
    out = subprocess.run([sys.executable, "-c", code, str(ROOT / "functions" / "callback"), str(ROOT / "shared"), str(ROOT)],
                         env=env, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [200, []]


def test_the_sync_handler_pulls_each_account_once_per_batch(monkeypatch) -> None:
    module = load_function("sync", monkeypatch, KEFU_MESSAGES_TABLE="kefu-messages", KEFU_ROUTE_QUEUE_URL="https://sqs.example/r.fifo",
                           KEFU_MEDIA_BUCKET="kefu-media", KEFU_MEDIA_QUEUE_URL="https://sqs.example/m.fifo")
    wecom, messages, handed = ScriptedWeCom([{"next_cursor": "c1", "has_more": 0, "msg_list": [text(1)]}]), Messages(), []
    module._deps = SyncDeps(wecom=wecom, messages=messages, cursors=Cursors("c0"), customers=Nothing(),  # type: ignore[arg-type]
                            media=Nothing(), hand_on=handed.extend)
    job = json.dumps({"open_kfid": "wkSYNC".ljust(32, "0"), "token": None, "create_time": 1})
    records = [{"messageId": f"id{n}", "receiptHandle": "h", "body": job, "md5OfBody": "", "eventSource": "aws:sqs",
                "attributes": {"ApproximateReceiveCount": "1", "MessageGroupId": "g"}, "messageAttributes": {},
                "eventSourceARN": "arn", "awsRegion": "us-east-1"} for n in (1, 2)]  # a repeated callback's job
    assert module.handler({"Records": records}, LambdaContext()) == {"batchItemFailures": []}
    assert len(wecom.pulls) == 1 and list(messages.records) == ["m1"] and len(handed) == 1


class LinkStore:
    def __init__(self) -> None:
        self.links: dict[tuple[str, str], str] = {}
        self.counted: list[tuple[str, str]] = []

    def get(self, open_kfid: str, scene: str) -> str | None:
        return self.links.get((open_kfid, scene))

    def put_first(self, open_kfid: str, scene: str, url: str) -> str:
        return self.links.setdefault((open_kfid, scene), url)

    def count_issued(self, open_kfid: str, scene: str, day: str, count: int = 1) -> None:
        self.counted.append((open_kfid, scene))


class Accounts:
    def default(self) -> str:
        return K

    def knows(self, open_kfid: str) -> bool:
        return open_kfid == K


def test_the_links_handler_issues_one_link_per_scene_and_refuses_a_bad_scene(monkeypatch) -> None:
    module = load_function("links", monkeypatch, KEFU_LINK_ACCOUNTS=f"sales={K}")
    asked: list[tuple[str, str]] = []
    store = LinkStore()
    module.service = LinkService(store, lambda k, s: asked.append((k, s)) or f"https://work.weixin.qq.com/kf?k={s}",
                                 Accounts())
    first = module.handler(http_event("GET", "/links", {"scene": "poster", "scene_param": "p1"}), LambdaContext())
    again = module.handler(http_event("GET", "/links", {"scene": "poster", "account": "sales"}), LambdaContext())
    assert first["statusCode"] == again["statusCode"] == 200
    assert json.loads(first["body"])["url"] == "https://work.weixin.qq.com/kf?k=poster&scene_param=p1"
    assert asked == [(K, "poster")] and store.counted == [(K, "poster"), (K, "poster")]
    bad = module.handler(http_event("GET", "/links", {"scene": "a b"}), LambdaContext())
    assert bad["statusCode"] == 400 and json.loads(bad["body"])["error"] == "invalid_scene"
    assert asked == [(K, "poster")]


def test_the_stats_handler_answers_the_days_asked_and_names_a_bad_parameter(monkeypatch) -> None:
    module = load_function("stats", monkeypatch)

    class Figures:
        def day_items(self, kind: str, day: str, open_kfid: str | None = None) -> list[dict[str, Any]]:
            if kind != "funnel" or day != "2026-03-01":
                return []
            return [{"day": day, "open_kfid": K, "scene": "poster", "sessions_entered": 3}]

    module.store = Figures()
    answer = module.handler(http_event("GET", "/stats", {"from": "2026-03-01", "to": "2026-03-02"}), LambdaContext())
    body = json.loads(answer["body"])
    assert answer["statusCode"] == 200 and [(r["scene"], r["sessions_entered"]) for r in body["funnel"]] == [("poster", 3)]
    bad = module.handler(http_event("GET", "/stats", {"from": "2026-03-02", "to": "2026-03-01"}), LambdaContext())
    assert bad["statusCode"] == 400 and json.loads(bad["body"])["error"].startswith("invalid_")
