"""Property-based fuzzing of POST/GET /callback through the local stack: random and mutated
requests always get 2xx or 4xx, never 5xx, and nothing is queued unless it was signed."""

from __future__ import annotations

import secrets
import time
import urllib.parse

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kefu.crypto import WXBizMsgCrypt
from tests.integration.test_callback import drain, envelope, kf_event, queued

pytestmark = pytest.mark.integration
STACK_ENV = {"KEFU_LOCAL_PAUSED": "SyncFunction"}
EXAMPLES = 600


@pytest.fixture(scope="module")
def http(stack):
    with httpx.Client(base_url=stack.url, timeout=10) as client:
        yield client


@pytest.fixture(scope="module")
def crypto(simulator) -> WXBizMsgCrypt:
    return WXBizMsgCrypt(simulator.token, simulator.encoding_aes_key, simulator.corp_id)


def _mutate(data: bytes, draw_ops: list[tuple[str, int, int]]) -> bytes:
    out = bytearray(data)
    for op, position, value in draw_ops:
        if not out:
            break
        i = position % len(out)
        if op == "flip":
            out[i] ^= 1 << (value % 8)
        elif op == "delete":
            del out[i : i + 1 + value % 8]
        elif op == "insert":
            out[i:i] = bytes([value % 256])
        elif op == "truncate":
            del out[i:]
    return bytes(out)


ops = st.lists(st.tuples(st.sampled_from(["flip", "delete", "insert", "truncate"]),
                         st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4)
junk_params = st.dictionaries(st.sampled_from(["msg_signature", "timestamp", "nonce", "echostr", "x"]),
                              st.text(max_size=60), max_size=5)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=st.binary(max_size=2048), params=junk_params,
       content_type=st.sampled_from(["text/xml", "application/xml", "application/octet-stream",
                                     "text/plain; charset=utf-16", "application/json"]))
def test_random_requests_never_5xx(stack, http, clients, body, params, content_type) -> None:
    response = http.post("/callback", params=params, content=body, headers={"Content-Type": content_type})
    assert 200 <= response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.json()["error"]
    get = http.get("/callback", params=params)
    assert 200 <= get.status_code < 500


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(mutation=ops, where=st.sampled_from(["body", "signature", "timestamp", "nonce"]),
       encoding=st.sampled_from(["utf-8", "utf-16", "latin-1"]))
def test_mutated_signed_requests_queue_only_when_still_valid(stack, http, clients, crypto, simulator,
                                                             mutation, where, encoding) -> None:
    token = "ENC" + secrets.token_hex(12)
    encrypted = crypto.encrypt(kf_event(simulator.corp_id, "wkFUZZ", token))
    ts, nonce = str(int(time.time())), str(secrets.randbelow(10**9))
    params = {"msg_signature": crypto.sign(ts, nonce, encrypted), "timestamp": ts, "nonce": nonce}
    body = envelope(simulator.corp_id, encrypted).decode().encode(encoding)
    if where == "body":
        body = _mutate(body, mutation)
    else:
        key = {"signature": "msg_signature"}.get(where, where)
        params[key] = _mutate(params[key].encode(), mutation).decode("latin-1")
    url_sensitive = any(c in "".join(params.values()) for c in "\x00")
    if url_sensitive:
        return
    response = http.post("/callback", params=params, content=body, headers={"Content-Type": "text/xml"})
    assert 200 <= response.status_code < 500, response.text
    messages = drain(clients.sqs, stack.resources["SyncQueue"])
    if response.status_code == 200:
        # Accepted: it must still carry a valid signature over an intact payload with our token.
        assert crypto.verify_and_decrypt(params["msg_signature"].replace(" ", "+"), params["timestamp"],
                                         params["nonce"], _encrypt_of(body)) is not None
        assert len(messages) <= 1
    else:
        assert messages == []


def _encrypt_of(body: bytes) -> str:
    from kefu.xmlsafe import parse_flat

    return parse_flat(body)["Encrypt"]


def test_queue_holds_nothing_after_fuzzing(stack, clients) -> None:
    assert queued(clients.sqs, stack.resources["SyncQueue"]) == 0


def test_oversized_and_odd_requests(stack, http, crypto, simulator) -> None:
    huge = b"<xml><Encrypt>" + b"A" * (2 * 1024 * 1024) + b"</Encrypt></xml>"
    assert http.post("/callback", params={"msg_signature": "a", "timestamp": "1", "nonce": "1"}, content=huge).status_code == 413
    deep = b"<xml>" + b"<a>" * 50_000 + b"</a>" * 50_000 + b"</xml>"
    response = http.post("/callback", params={"msg_signature": "a", "timestamp": "1", "nonce": "1"}, content=deep)
    assert response.status_code in (400, 413)
    # a space where a '+' should be (a client that did not URL-encode) is still understood
    encrypted = crypto.encrypt("12345")
    while "+" not in encrypted:
        encrypted = crypto.encrypt("12345")
    ts, nonce = "1700000000", "42"
    query = urllib.parse.urlencode({"msg_signature": crypto.sign(ts, nonce, encrypted), "timestamp": ts,
                                    "nonce": nonce}) + "&echostr=" + encrypted.replace("+", "%20").replace("/", "%2F").replace("=", "%3D")
    answer = http.get(f"/callback?{query}")
    assert (answer.status_code, answer.text) == (200, "12345")
