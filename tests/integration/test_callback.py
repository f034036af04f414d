"""The callback function through the local stack's HTTP port: verification, queueing, bad input."""

from __future__ import annotations

import json
import secrets
import time
import urllib.parse

import httpx
import pytest

from kefu.crypto import WXBizMsgCrypt

pytestmark = pytest.mark.integration
STACK_ENV = {"KEFU_LOCAL_PAUSED": "SyncFunction"}  # these tests read the sync queue themselves


@pytest.fixture(scope="module")
def crypto(simulator) -> WXBizMsgCrypt:
    return WXBizMsgCrypt(simulator.token, simulator.encoding_aes_key, simulator.corp_id)


@pytest.fixture
def sync_queue(stack, clients) -> str:
    url = stack.resources["SyncQueue"]
    drain(clients.sqs, url)
    return url


def drain(sqs, url: str) -> list[dict]:
    """Receive and delete everything on the queue; returns the messages."""
    got: list[dict] = []
    while True:
        batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0,
                                    MessageSystemAttributeNames=["All"]).get("Messages", [])
        if not batch:
            return got
        got.extend(batch)
        sqs.delete_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                                                        for i, m in enumerate(batch)])


def kf_event(corp_id: str, open_kfid: str = "wkTESTACCOUNT", token: str | None = None,
             event: str = "kf_msg_or_event", create_time: int | None = None) -> str:
    token = token or "ENC" + secrets.token_hex(16)
    return (f"<xml><ToUserName><![CDATA[{corp_id}]]></ToUserName><CreateTime>{create_time or int(time.time())}</CreateTime>"
            f"<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[{event}]]></Event>"
            f"<Token><![CDATA[{token}]]></Token><OpenKfId><![CDATA[{open_kfid}]]></OpenKfId></xml>")


def envelope(corp_id: str, encrypted: str) -> bytes:
    return (f"<xml><ToUserName><![CDATA[{corp_id}]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt>"
            f"<AgentID><![CDATA[1000002]]></AgentID></xml>").encode()


def signed(crypto: WXBizMsgCrypt, encrypted: str) -> dict[str, str]:
    ts, nonce = str(int(time.time())), str(secrets.randbelow(10**9))
    return {"msg_signature": crypto.sign(ts, nonce, encrypted), "timestamp": ts, "nonce": nonce}


def post(stack, params: dict[str, str], body: bytes) -> httpx.Response:
    return httpx.post(f"{stack.url}/callback", params=params, content=body,
                      headers={"Content-Type": "text/xml"}, timeout=10)


def queued(sqs, url: str) -> int:
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages",
                                                                   "ApproximateNumberOfMessagesNotVisible"])
    return sum(int(v) for v in attrs["Attributes"].values())


def test_get_verification_with_url_encoded_echostr(stack, crypto) -> None:
    plaintext = "1616140317555161061"
    echostr = crypto.encrypt(plaintext)
    params = {**signed(crypto, echostr), "echostr": echostr}
    assert "+" in echostr or "/" in echostr or "=" in echostr  # characters that must be percent-encoded
    query = urllib.parse.urlencode(params, quote_via=urllib.parse.quote, safe="")
    response = httpx.get(f"{stack.url}/callback?{query}", timeout=10)
    assert response.status_code == 200
    assert response.text == plaintext  # nothing but the plaintext: no quotes, no newline
    assert response.headers["content-type"].startswith("text/plain")


def test_get_verification_rejects_a_wrong_signature(stack, crypto) -> None:
    echostr = crypto.encrypt("123")
    params = {**signed(crypto, echostr), "echostr": echostr}
    params["msg_signature"] = "0" * 40
    response = httpx.get(f"{stack.url}/callback", params=params, timeout=10)
    assert response.status_code == 403
    assert response.json()["error"] == "bad_signature"


def test_post_queues_one_sync_job(stack, crypto, clients, sync_queue, simulator) -> None:
    token = "ENC" + secrets.token_hex(20)
    encrypted = crypto.encrypt(kf_event(simulator.corp_id, "wkACCOUNT1", token, create_time=1700000000))
    response = post(stack, signed(crypto, encrypted), envelope(simulator.corp_id, encrypted))
    assert (response.status_code, response.text) == (200, "success")
    messages = drain(clients.sqs, sync_queue)
    assert len(messages) == 1
    assert json.loads(messages[0]["Body"]) == {"open_kfid": "wkACCOUNT1", "token": token, "create_time": 1700000000}
    assert messages[0]["Attributes"]["MessageGroupId"] == "wkACCOUNT1"


def test_a_retried_callback_queues_once(stack, crypto, clients, sync_queue, simulator) -> None:
    encrypted = crypto.encrypt(kf_event(simulator.corp_id, "wkACCOUNT2"))
    params, body = signed(crypto, encrypted), envelope(simulator.corp_id, encrypted)
    for _ in range(3):  # WeCom re-sends the same request when it thinks we were slow
        assert post(stack, params, body).status_code == 200
    assert len(drain(clients.sqs, sync_queue)) == 1


def test_other_events_are_acknowledged_not_queued(stack, crypto, clients, sync_queue, simulator) -> None:
    encrypted = crypto.encrypt(kf_event(simulator.corp_id, event="kf_account_auth_change"))
    response = post(stack, signed(crypto, encrypted), envelope(simulator.corp_id, encrypted))
    assert response.status_code == 200
    assert queued(clients.sqs, sync_queue) == 0


def _bad_requests(crypto: WXBizMsgCrypt, corp_id: str) -> dict[str, tuple[dict[str, str], bytes, int, str]]:
    good = crypto.encrypt(kf_event(corp_id))
    good_params = signed(crypto, good)
    other_corp = WXBizMsgCrypt(crypto._token, "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C", corp_id)  # noqa: SLF001
    wrong_key = other_corp.encrypt(kf_event(corp_id))
    wrong_receiver = WXBizMsgCrypt(crypto._token, "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR", "wwother")  # noqa: SLF001
    hostile_payload = crypto.encrypt('<!DOCTYPE xml [<!ENTITY x "boom">]><xml><Event>&x;</Event></xml>')
    garbage_payload = crypto.encrypt("<xml><Event>kf_msg_or_event")
    bad_b64 = "@@not-base64@@"
    cases = {
        "missing signature": ({k: v for k, v in good_params.items() if k != "msg_signature"}, envelope(corp_id, good), 400, "missing_parameter"),
        "missing timestamp": ({k: v for k, v in good_params.items() if k != "timestamp"}, envelope(corp_id, good), 400, "missing_parameter"),
        "wrong signature": ({**good_params, "msg_signature": "f" * 40}, envelope(corp_id, good), 403, "bad_signature"),
        "signature of other body": (signed(crypto, crypto.encrypt("x")), envelope(corp_id, good), 403, "bad_signature"),
        "bad base64": (signed(crypto, bad_b64), envelope(corp_id, bad_b64), 400, "bad_base64"),
        "bad padding (other key)": (signed(crypto, wrong_key), envelope(corp_id, wrong_key), 400, "bad_padding"),
        "wrong receiveid": (signed(crypto, enc := _as(crypto, wrong_receiver, corp_id)), envelope(corp_id, enc), 400, "bad_receiveid"),
        "malformed envelope": (good_params, b"<xml><Encrypt>", 400, "xml_malformed"),
        "no Encrypt element": (good_params, b"<xml><ToUserName>x</ToUserName></xml>", 400, "missing_encrypt"),
        "DOCTYPE in envelope": (good_params, b'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
                                b"<xml><Encrypt>&e;</Encrypt></xml>", 400, "xml_forbidden"),
        "billion laughs": (good_params, b'<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
                           b"<xml><Encrypt>&lol2;</Encrypt></xml>", 400, "xml_forbidden"),
        "entity in payload": (signed(crypto, hostile_payload), envelope(corp_id, hostile_payload), 400, "xml_forbidden"),
        "malformed payload": (signed(crypto, garbage_payload), envelope(corp_id, garbage_payload), 400, "xml_malformed"),
        "empty body": (good_params, b"", 400, "empty_body"),
        "body over 64 KiB": (good_params, envelope(corp_id, good) + b" " * (64 * 1024), 413, "body_too_large"),
    }
    return cases


def _as(crypto: WXBizMsgCrypt, wrong_receiver: WXBizMsgCrypt, corp_id: str) -> str:
    """Encrypted with our key but naming another receiveid."""
    sender = WXBizMsgCrypt(crypto._token, "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR", "wwother")  # noqa: SLF001
    sender._key = crypto._key  # noqa: SLF001
    return sender.encrypt(kf_event(corp_id))


CASES = ["missing signature", "missing timestamp", "wrong signature", "signature of other body", "bad base64",
         "bad padding (other key)", "wrong receiveid", "malformed envelope", "no Encrypt element",
         "DOCTYPE in envelope", "billion laughs", "entity in payload", "malformed payload", "empty body",
         "body over 64 KiB"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_gets_4xx_and_queues_nothing(case: str, stack, crypto, clients, sync_queue, simulator) -> None:
    params, body, status, error = _bad_requests(crypto, simulator.corp_id)[case]
    response = post(stack, params, body)
    assert response.status_code == status, response.text
    assert response.json()["error"] == error
    assert response.json()["message"]
    assert queued(clients.sqs, sync_queue) == 0


def test_unknown_route_and_method(stack) -> None:
    assert httpx.get(f"{stack.url}/nope", timeout=5).status_code == 404
    assert httpx.delete(f"{stack.url}/callback", timeout=5).status_code in (404, 405)
