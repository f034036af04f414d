"""The callback, sync, links and stats handlers in process, each with its adapters swapped for
in-memory ones and a fake Lambda context (the route handler: test_route_handler.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kefu.crypto import WXBizMsgCrypt
from kefu.links import LinkService
from kefu.sync import SyncDeps
from tests.unit.lambda_env import LambdaContext, http_event, load_function
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
