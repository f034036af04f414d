"""The Bedrock Converse stand-in, driven over real HTTP by a real boto3 bedrock-runtime client."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
import pytest
from botocore.config import Config

from local.bedrock_standin import INVALID_MODEL, NO_KNOWLEDGE_REPLY, BedrockStandIn, estimate_tokens
from local.stack import LocalStack

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
MODEL = "amazon.nova-micro-v1:0"
SYSTEM = "Answer only from <knowledge>. Reply with a JSON object {\"answer\": ..., \"sources\": [...]}."
ENTRIES = [
    ("returns", ["怎么退货", "退货流程"], "请在订单页面点击“申请退货”，\n我们会在三个工作日内处理。"),
    ("hours", ["营业时间", "几点上班"], "客服每天 9:00-18:00 在线。"),
    ("wifi", ["How do I reset the WiFi password"], "Hold the reset button for 10 seconds, then log in again."),
]
FAKE_AUTH = ("AWS4-HMAC-SHA256 Credential=testing/20250101/us-east-1/{service}/aws4_request, "
             "SignedHeaders=host;x-amz-date, Signature=" + "0" * 64)


def kefu_prompt(question: str, entries: list[tuple[str, list[str], str]] = ENTRIES) -> str:
    """The user text Kefu's answerer sends: knowledge entries, then the question."""
    blocks = "\n".join(f'<entry id="{eid}">\n问：{"；".join(qs)}\n答：{answer}\n</entry>' for eid, qs, answer in entries)
    return f"<knowledge>\n{blocks}\n</knowledge>\n<question>{question}</question>"


def ask(client: Any, question: str, *, model: str = MODEL, max_tokens: int = 400, **extra: Any) -> dict[str, Any]:
    return client.converse(
        modelId=model,
        system=[{"text": SYSTEM}],
        messages=[{"role": "user", "content": [{"text": kefu_prompt(question)}]}],
        inferenceConfig={"maxTokens": max_tokens, "temperature": 0, **extra},
    )


def reply_text(response: dict[str, Any]) -> str:
    return str(response["output"]["message"]["content"][0]["text"])


def make_client(endpoint: str | None, **config: Any) -> Any:
    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
    settings: dict[str, Any] = {"retries": {"mode": "standard", "total_max_attempts": 1}, **config}
    if endpoint is None:
        return session.client("bedrock-runtime", config=Config(**settings))
    return session.client("bedrock-runtime", endpoint_url=endpoint, config=Config(**settings))


def raw_post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], dict[str, Any]]:
    """POST with urllib, outside boto3; returns status, headers (lower-cased) and the JSON body."""
    request = urllib.request.Request(url, data=body, method="POST", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, got, payload = response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        status, got, payload = exc.code, dict(exc.headers), exc.read()
    return status, {k.lower(): v for k, v in got.items()}, json.loads(payload or b"{}")


def signed_post(standin: BedrockStandIn, body: Any, *, model: str = MODEL, service: str = "bedrock",
                raw: bytes | None = None) -> tuple[int, dict[str, str], dict[str, Any]]:
    """A converse call with a SigV4-shaped Authorization header (the stand-in does not verify the signature)."""
    data = raw if raw is not None else json.dumps(body, ensure_ascii=False).encode()
    headers = {"Authorization": FAKE_AUTH.format(service=service), "X-Amz-Date": "20250101T000000Z",
               "Content-Type": "application/json"}
    return raw_post(f"{standin.base_url}/model/{urllib.parse.quote(model, safe='')}/converse", data, headers)


def error_code(headers: dict[str, str]) -> str:
    return headers["x-amzn-errortype"].split(":", 1)[0]


@pytest.fixture(scope="module")
def server() -> Iterator[BedrockStandIn]:
    standin = BedrockStandIn()
    standin.start()
    yield standin
    standin.stop()


@pytest.fixture()
def standin(server: BedrockStandIn) -> BedrockStandIn:
    server.reset()
    return server


@pytest.fixture(scope="module")
def client(server: BedrockStandIn) -> Any:
    return make_client(server.base_url)


@pytest.fixture(scope="module")
def loose(server: BedrockStandIn) -> Any:
    """A client that skips botocore's own parameter checks, so the stand-in's are the ones tested."""
    return make_client(server.base_url, parameter_validation=False)


# ------------------------------------------------------------------------------ answers

def test_covered_question_gets_the_entry_answer_and_source(standin: BedrockStandIn, client: Any) -> None:
    response = ask(client, "我想退货，该怎么办？")
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert response["ResponseMetadata"]["HTTPHeaders"]["content-type"] == "application/json"
    assert response["output"]["message"]["role"] == "assistant"
    assert response["stopReason"] == "end_turn"
    assert json.loads(reply_text(response)) == {"answer": ENTRIES[0][2], "sources": ["returns"]}
    assert "三个工作日" in reply_text(response)  # not \\u-escaped
    assert isinstance(response["metrics"]["latencyMs"], int)


def test_latin_words_match_casefolded(standin: BedrockStandIn, client: Any) -> None:
    reply = json.loads(reply_text(ask(client, "how to RESET my wifi PASSWORD?")))
    assert reply == {"answer": ENTRIES[2][2], "sources": ["wifi"]}


def test_uncovered_question_answers_null(standin: BedrockStandIn, client: Any) -> None:
    assert json.loads(reply_text(ask(client, "你们卖不卖二手车？"))) == {"answer": None, "sources": []}
    # a single shared bigram is not enough
    assert json.loads(reply_text(ask(client, "退货"))) == {"answer": None, "sources": []}


def test_prompt_without_knowledge_gets_plain_text(standin: BedrockStandIn, client: Any) -> None:
    response = client.converse(modelId=MODEL, messages=[{"role": "user", "content": [{"text": "hello there"}]}])
    assert reply_text(response) == NO_KNOWLEDGE_REPLY


def test_usage_is_the_deterministic_estimate(standin: BedrockStandIn, client: Any) -> None:
    response = client.converse(modelId=MODEL, system=[{"text": "abcd efgh"}],
                               messages=[{"role": "user", "content": [{"text": "你好 hello"}]}])
    # input: 2 CJK + ceil((8 + 5) / 4) = 6; output: the fixed reply's 31 non-space characters -> 8
    assert response["usage"] == {"inputTokens": 6, "outputTokens": 8, "totalTokens": 14}
    covered = ask(client, "我想退货，该怎么办？")
    expected_in = estimate_tokens(SYSTEM + "\n" + kefu_prompt("我想退货，该怎么办？"))
    assert covered["usage"]["inputTokens"] == expected_in
    assert covered["usage"]["outputTokens"] == estimate_tokens(reply_text(covered))


def test_long_reply_is_cut_at_max_tokens(standin: BedrockStandIn, client: Any) -> None:
    response = ask(client, "我想退货，该怎么办？", max_tokens=5)
    assert response["stopReason"] == "max_tokens"
    assert response["usage"]["outputTokens"] <= 5
    assert reply_text(response) and not reply_text(response).endswith("}")


def test_stop_sequence_cuts_the_reply(standin: BedrockStandIn, client: Any) -> None:
    response = ask(client, "我想退货，该怎么办？", stopSequences=["sources"])
    assert response["stopReason"] == "stop_sequence"
    assert reply_text(response).endswith('", "')


def test_inference_profile_ids_are_accepted(standin: BedrockStandIn, client: Any) -> None:
    for model in ("us.amazon.nova-lite-v1:0", "apac.anthropic.claude-3-haiku-20240307-v1:0",
                  "eu.anthropic.claude-3-5-haiku-20241022-v1:0"):
        ask(client, "营业时间是几点？", model=model)
    assert [c.model_id for c in standin.calls()] == [
        "us.amazon.nova-lite-v1:0", "apac.anthropic.claude-3-haiku-20240307-v1:0",
        "eu.anthropic.claude-3-5-haiku-20241022-v1:0"]


def test_request_log_records_the_call(standin: BedrockStandIn, client: Any) -> None:
    ask(client, "营业时间是几点？", model="anthropic.claude-3-haiku-20240307-v1:0")
    (call,) = standin.requests
    assert call.model_id == "anthropic.claude-3-haiku-20240307-v1:0"
    assert call.entry_ids == ("returns", "hours", "wifi")
    assert call.question == "营业时间是几点？" and call.scope == call.question
    assert call.status == 200 and call.error is None and call.stop_reason == "end_turn"
    assert call.body["inferenceConfig"] == {"maxTokens": 400, "temperature": 0}
    assert json.loads(call.reply or "")["sources"] == ["hours"]
    assert abs(call.time - time.time()) < 10


def test_endpoint_from_the_environment(standin: BedrockStandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", standin.base_url)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # the service-specific one wins
    monkeypatch.delenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", raising=False)
    env_client = make_client(None)
    assert env_client.meta.endpoint_url == standin.base_url
    assert json.loads(reply_text(ask(env_client, "我想退货，该怎么办？")))["sources"] == ["returns"]
    assert len(standin.calls("退货")) == 1


def test_concurrent_calls(standin: BedrockStandIn, client: Any) -> None:
    standin.behave("营业", mode="throttled")
    questions = ["我想退货，该怎么办？", "营业时间是几点？"] * 4

    def one(question: str) -> str:
        try:
            return json.loads(reply_text(ask(client, question)))["sources"][0]
        except client.exceptions.ThrottlingException:
            return "throttled"

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(one, questions))
    assert results == ["returns", "throttled"] * 4
    assert len(standin.requests) == 8


# ------------------------------------------------------------------------------ validation

VALID_MESSAGES = [{"role": "user", "content": [{"text": "你好"}]}]


@pytest.mark.parametrize(("body", "fragment"), [
    ({}, "at 'messages' failed to satisfy constraint: Member must not be null"),
    ({"messages": []}, "messages field is empty"),
    ({"messages": "hi"}, "must be a list of Message objects"),
    ({"messages": [{"role": "assistant", "content": [{"text": "hi"}]}]}, "must start with a user message"),
    ({"messages": [*VALID_MESSAGES, *VALID_MESSAGES]}, "must alternate between user and assistant"),
    ({"messages": [*VALID_MESSAGES, {"role": "assistant", "content": [{"text": "a"}]}, {"role": "assistant",
      "content": [{"text": "b"}]}]}, "must alternate"),
    ({"messages": [{"role": "system", "content": [{"text": "hi"}]}]}, "Value 'system' at 'messages.0.member.role'"),
    ({"messages": [{"role": "user", "content": []}]}, "content field in the Message object at messages.0 is empty"),
    ({"messages": [{"role": "user"}]}, "at 'messages.0.member.content'"),
    ({"messages": [{"role": "user", "content": [{"text": "hi", "image": {}}]}]}, "must set exactly one member"),
    ({"messages": [{"role": "user", "content": [{}]}]}, "must set exactly one member"),
    ({"messages": [{"role": "user", "content": [{"txt": "hi"}]}]}, "unknown member 'txt'"),
    ({"messages": [{"role": "user", "content": [{"text": ""}]}]}, "messages.0.content.0 is blank"),
    ({"messages": [{"role": "user", "content": [{"text": "  \n"}]}]}, "is blank"),
    ({"messages": [{"role": "user", "content": [{"text": 5}]}]}, "must be a string"),
    ({"messages": [{"role": "user", "content": [{"toolUse": {}}]}]}, "toolConfig field must be defined"),
    ({"messages": VALID_MESSAGES, "system": [{"text": ""}]}, "SystemContentBlock object at system.0 is blank"),
    ({"messages": VALID_MESSAGES, "system": "be nice"}, "system field must be a list"),
    ({"messages": VALID_MESSAGES, "system": [{"image": {}}]}, "unknown member 'image'"),
    ({"messages": VALID_MESSAGES, "inferenceConfig": {"maxTokens": 0}}, "at 'inferenceConfig.maxTokens'"),
    ({"messages": VALID_MESSAGES, "inferenceConfig": {"maxTokens": 10.5}}, "maxTokens field in inferenceConfig must be an integer"),
    ({"messages": VALID_MESSAGES, "inferenceConfig": {"maxTokens": True}}, "must be an integer"),
    ({"messages": VALID_MESSAGES, "inferenceConfig": {"temperature": 1.5}}, "at 'inferenceConfig.temperature'"),
    ({"messages": VALID_MESSAGES, "inferenceConfig": {"temperature": "0"}}, "temperature field in inferenceConfig must be a number"),
    ({"messages": VALID_MESSAGES, "inferenceConfig": {"topP": -0.1}}, "at 'inferenceConfig.topP'"),
    ({"messages": VALID_MESSAGES, "inferenceConfig": {"stopSequences": ["a", "b", "c", "d", "e"]}}, "at most 4"),
    ({"messages": VALID_MESSAGES, "inferenceConfig": {"stopSequences": "END"}}, "must be a list of strings"),
    ({"messages": VALID_MESSAGES, "inferenceConfig": {"stopSequences": [""]}}, "inferenceConfig.stopSequences.0"),
    ({"messages": VALID_MESSAGES, "inferenceConfig": {"max_tokens": 5}}, "unknown field 'max_tokens'"),
    ({"messages": VALID_MESSAGES, "inferenceConfig": 5}, "inferenceConfig field must be a JSON object"),
    ({"messages": VALID_MESSAGES, "modelId": MODEL}, "unknown field 'modelId'"),
    ({"messages": VALID_MESSAGES, "temperature": 0}, "unknown field 'temperature'"),
    ({"messages": VALID_MESSAGES, "toolConfig": {}}, "at 'toolConfig.tools'"),
    ({"messages": VALID_MESSAGES, "requestMetadata": {}}, "requestMetadata field must map 1 to 16 keys"),
    ([{"messages": VALID_MESSAGES}], "must be a JSON object"),
])
def test_invalid_body_is_a_validation_exception(standin: BedrockStandIn, body: Any, fragment: str) -> None:
    status, headers, answer = signed_post(standin, body)
    assert (status, error_code(headers)) == (400, "ValidationException")
    assert headers["x-amzn-errortype"].endswith(":http://internal.amazon.com/coral/com.amazon.bedrock/")
    assert fragment in answer["message"]
    assert standin.requests[-1].status == 400


def test_text_only_model_refuses_an_image(standin: BedrockStandIn) -> None:
    image = {"image": {"format": "png", "source": {"bytes": "iVBORw0KGgo="}}}
    body = {"messages": [{"role": "user", "content": [{"text": "what is this?"}, image]}]}
    status, headers, answer = signed_post(standin, body, model="us.amazon.nova-micro-v1:0")
    assert (status, error_code(headers)) == (400, "ValidationException")
    assert "doesn't support the image content block" in answer["message"]
    status, _, _ = signed_post(standin, body, model="us.amazon.nova-lite-v1:0")
    assert status == 200


@pytest.mark.parametrize("raw", [b"", b"{not json", b'{"messages": NaN}', "{\"messages\": \"\u4f60\"}".encode("gbk")])
def test_unparseable_body_is_a_validation_exception(standin: BedrockStandIn, raw: bytes) -> None:
    status, headers, answer = signed_post(standin, None, raw=raw)
    assert (status, error_code(headers)) == (400, "ValidationException")
    assert "not valid UTF-8 JSON" in answer["message"]


def test_allowed_optional_fields_pass(standin: BedrockStandIn) -> None:
    body = {"messages": [*VALID_MESSAGES, {"role": "assistant", "content": [{"text": "{"}]}],
            "system": [{"text": "x"}, {"cachePoint": {"type": "default"}}],
            "inferenceConfig": {"maxTokens": 50, "temperature": 1, "topP": 0.9, "stopSequences": ["#1", "#2", "#3", "#4"]},
            "additionalModelRequestFields": {"top_k": 5}, "additionalModelResponseFieldPaths": ["/stop_sequence"],
            "promptVariables": {}, "requestMetadata": {"tenant": "t1"}, "performanceConfig": {"latency": "standard"}}
    status, _, answer = signed_post(standin, body)
    assert status == 200, answer
    assert answer["output"]["message"]["content"] == [{"text": NO_KNOWLEDGE_REPLY}]


def test_botocore_raises_the_modeled_validation_exception(standin: BedrockStandIn, loose: Any) -> None:
    cases: list[dict[str, Any]] = [
        {"messages": [{"role": "user", "content": [{"text": "a"}]}, {"role": "user", "content": [{"text": "b"}]}]},
        {"messages": [{"role": "user", "content": [{"text": ""}]}]},
        {"messages": VALID_MESSAGES, "inferenceConfig": {"maxTokens": 0}},
        {"messages": VALID_MESSAGES, "inferenceConfig": {"temperature": 2.0}},
        {"messages": []},
    ]
    for kwargs in cases:
        with pytest.raises(loose.exceptions.ValidationException) as caught:
            loose.converse(modelId=MODEL, **kwargs)
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert caught.value.response["ResponseMetadata"]["RequestId"]


@pytest.mark.parametrize("model", [
    "amazon.titan-text-express-v1", "anthropic.claude-v2", "amazon.nova-micro-v1", "US.amazon.nova-micro-v1:0",
    "ca.amazon.nova-micro-v1:0", "arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-micro-v1:0",
])
def test_unknown_model_is_refused(standin: BedrockStandIn, client: Any, model: str) -> None:
    with pytest.raises(client.exceptions.ValidationException) as caught:
        ask(client, "营业时间是几点？", model=model)
    assert caught.value.response["Error"]["Message"] == INVALID_MODEL
    assert standin.requests[-1].model_id == model  # decoded from the path


# ------------------------------------------------------------------------------ knobs

@pytest.mark.parametrize(("mode", "exception", "status"), [
    ("throttled", "ThrottlingException", 429),
    ("failing", "InternalServerException", 500),
    ("model_error", "ModelErrorException", 424),
    ("unavailable", "ServiceUnavailableException", 503),
    ("denied", "AccessDeniedException", 403),
    ("model_timeout", "ModelTimeoutException", 408),
])
def test_knob_modes_raise_the_modeled_exception(standin: BedrockStandIn, client: Any, mode: str, exception: str,
                                                status: int) -> None:
    standin.behave(mode=mode)
    with pytest.raises(getattr(client.exceptions, exception)) as caught:
        ask(client, "营业时间是几点？")
    assert caught.value.response["Error"]["Code"] == exception
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    if mode == "throttled":
        assert caught.value.response["Error"]["Message"] == "Too many requests, please wait before trying again."
    assert standin.requests[-1].status == status and standin.requests[-1].error == exception


def test_throttling_is_retried_by_botocore(standin: BedrockStandIn) -> None:
    standin.behave("营业", mode="throttled")
    retrying = make_client(standin.base_url, retries={"mode": "standard", "total_max_attempts": 2})
    with pytest.raises(retrying.exceptions.ThrottlingException):
        ask(retrying, "营业时间是几点？")
    assert len(standin.calls("营业")) == 2


def test_slow_answer_times_the_client_out(standin: BedrockStandIn) -> None:
    standin.behave("营业", mode="slow", delay=3)
    impatient = make_client(standin.base_url, read_timeout=1, retries={"max_attempts": 1})
    started = time.monotonic()
    with pytest.raises(botocore.exceptions.ReadTimeoutError):
        ask(impatient, "营业时间是几点？")
    assert time.monotonic() - started < 5
    assert standin.calls("营业") and all(c.delay == 3 for c in standin.calls("营业"))


def test_slow_answer_still_comes(standin: BedrockStandIn, client: Any) -> None:
    standin.behave("营业", mode="slow", delay=0.3)
    started = time.monotonic()
    response = ask(client, "营业时间是几点？")
    assert time.monotonic() - started >= 0.3
    assert json.loads(reply_text(response))["sources"] == ["hours"]
    assert response["metrics"]["latencyMs"] >= 300


def test_slow_defaults_to_thirty_seconds(standin: BedrockStandIn) -> None:
    standin.behave("nobody asks this", mode="slow")
    assert standin.rules()[-1]["delay"] == 30.0


def test_scoped_knob_leaves_other_questions_alone(standin: BedrockStandIn, client: Any) -> None:
    standin.behave("退货", mode="failing")
    with pytest.raises(client.exceptions.InternalServerException):
        ask(client, "我想退货，该怎么办？")
    assert json.loads(reply_text(ask(client, "营业时间是几点？")))["sources"] == ["hours"]
    assert [c.status for c in standin.calls("退货")] == [500]
    assert [c.status for c in standin.calls("营业")] == [200]


def test_latest_matching_rule_wins(standin: BedrockStandIn, client: Any) -> None:
    standin.behave(mode="unavailable")
    standin.behave("营业", mode="normal")
    assert json.loads(reply_text(ask(client, "营业时间是几点？")))["sources"] == ["hours"]
    with pytest.raises(client.exceptions.ServiceUnavailableException):
        ask(client, "我想退货，该怎么办？")
    standin.reset()
    assert standin.requests == [] and standin.rules() == []
    assert json.loads(reply_text(ask(client, "我想退货，该怎么办？")))["sources"] == ["returns"]


def test_knob_does_not_hide_a_bad_request(standin: BedrockStandIn, loose: Any) -> None:
    standin.behave(mode="throttled")
    with pytest.raises(loose.exceptions.ValidationException):
        loose.converse(modelId=MODEL, messages=[{"role": "user", "content": [{"text": ""}]}])


@pytest.mark.parametrize("reply", ['{"answer": "我们包邮", "sources": ["ghost"]}', "当然可以！这不是 JSON。"])
def test_reply_override_is_returned_verbatim(standin: BedrockStandIn, client: Any, reply: str) -> None:
    standin.behave("营业", reply=reply)
    response = ask(client, "营业时间是几点？")
    assert reply_text(response) == reply
    assert response["usage"]["outputTokens"] == estimate_tokens(reply)
    assert json.loads(reply_text(ask(client, "我想退货，该怎么办？")))["sources"] == ["returns"]


def test_behave_rejects_bad_arguments(standin: BedrockStandIn) -> None:
    with pytest.raises(ValueError, match="mode must be one of"):
        standin.behave(mode="sleepy")
    with pytest.raises(ValueError, match="delay"):
        standin.behave(mode="slow", delay=-1)
    with pytest.raises(TypeError):
        standin.behave(reply=5)  # type: ignore[arg-type]
    assert standin.rules() == []


def test_knobs_over_http(standin: BedrockStandIn, client: Any) -> None:
    base = f"{standin.base_url}/_standin"
    status, _, answer = raw_post(f"{base}/behave", json.dumps({"contains": "营业", "mode": "unavailable"}).encode())
    assert (status, answer) == (200, {"ok": True})
    with pytest.raises(client.exceptions.ServiceUnavailableException):
        ask(client, "营业时间是几点？")
    ask(client, "我想退货，该怎么办？")
    with urllib.request.urlopen(f"{base}/requests?contains=%E8%90%A5%E4%B8%9A", timeout=10) as response:
        listed = json.loads(response.read())["requests"]
    assert [(c["question"], c["status"], c["error"]) for c in listed] == [("营业时间是几点？", 503, "ServiceUnavailableException")]
    with urllib.request.urlopen(f"{base}/requests", timeout=10) as response:
        assert len(json.loads(response.read())["requests"]) == 2
    status, _, answer = raw_post(f"{base}/behave", json.dumps({"mode": "sleepy"}).encode())
    assert status == 400 and "mode must be one of" in answer["error"]
    status, _, answer = raw_post(f"{base}/behave", json.dumps({"mode": "slow", "seconds": 3}).encode())
    assert status == 400 and "seconds" in answer["error"]
    status, _, answer = raw_post(f"{base}/behave", b"[]")
    assert status == 400
    status, _, _ = raw_post(f"{base}/nothing", b"{}")
    assert status == 404
    status, _, answer = raw_post(f"{base}/reset", b"")
    assert (status, answer) == (200, {"ok": True})
    assert standin.requests == [] and standin.rules() == []
    assert json.loads(reply_text(ask(client, "营业时间是几点？")))["sources"] == ["hours"]


# ------------------------------------------------------------------------------ auth and routes

def test_missing_auth_is_refused(standin: BedrockStandIn) -> None:
    body = json.dumps({"messages": VALID_MESSAGES}).encode()
    status, headers, answer = raw_post(f"{standin.base_url}/model/{MODEL}/converse", body,
                                       {"Content-Type": "application/json"})
    assert (status, error_code(headers)) == (403, "MissingAuthenticationTokenException")
    assert answer == {"message": "Missing Authentication Token"}


def test_credential_for_another_service_is_refused(standin: BedrockStandIn) -> None:
    status, headers, answer = signed_post(standin, {"messages": VALID_MESSAGES}, service="bedrock-runtime")
    assert (status, error_code(headers)) == (403, "InvalidSignatureException")
    assert "'bedrock'" in answer["message"]


@pytest.mark.parametrize("authorization", [
    "Bearer some-api-key",
    "AWS4-HMAC-SHA256 Credential=testing/20250101/us-east-1/bedrock/aws4_request, SignedHeaders=host",
    "AWS4-HMAC-SHA256 Credential=testing/us-east-1/bedrock, SignedHeaders=host, Signature=00",
])
def test_malformed_auth_is_refused(standin: BedrockStandIn, authorization: str) -> None:
    body = json.dumps({"messages": VALID_MESSAGES}).encode()
    status, headers, _ = raw_post(f"{standin.base_url}/model/{MODEL}/converse", body,
                                  {"Authorization": authorization, "X-Amz-Date": "20250101T000000Z"})
    assert (status, error_code(headers)) == (403, "IncompleteSignatureException")


def test_unknown_routes_are_unknown_operations(standin: BedrockStandIn) -> None:
    headers = {"Authorization": FAKE_AUTH.format(service="bedrock"), "X-Amz-Date": "20250101T000000Z"}
    for path in (f"/model/{MODEL}/converse-stream", f"/model/{MODEL}/invoke", "/", "/model//converse"):
        status, got, _ = raw_post(f"{standin.base_url}{path}", b"{}", headers)
        assert (status, error_code(got)) == (404, "UnknownOperationException"), path
    request = urllib.request.Request(f"{standin.base_url}/model/{MODEL}/converse", headers=headers)
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    assert caught.value.code == 404


# ------------------------------------------------------------------------------ entry points

def test_module_entry_serves_until_interrupted() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "local.bedrock_standin", "--port", "0"], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("bedrock stand-in ready: http://127.0.0.1:")
        url = line.split()[3]
        response = ask(make_client(url), "我想退货，该怎么办？")
        assert json.loads(reply_text(response))["sources"] == ["returns"]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_local_stack_starts_a_stand_in_unless_one_is_named(monkeypatch: pytest.MonkeyPatch, server: BedrockStandIn) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", raising=False)
    stack = LocalStack(env={})
    stack._start_bedrock()  # noqa: SLF001 - the one step under test
    try:
        assert stack.bedrock is not None
        assert os.environ["AWS_ENDPOINT_URL_BEDROCK_RUNTIME"] == stack.bedrock.base_url
        assert json.loads(reply_text(ask(make_client(None), "营业时间是几点？")))["sources"] == ["hours"]
    finally:
        stack.stop()
    named = LocalStack(env={"AWS_ENDPOINT_URL_BEDROCK_RUNTIME": server.base_url})
    named._start_bedrock()  # noqa: SLF001
    assert named.bedrock is None and named._closers == []  # noqa: SLF001
    assert os.environ["AWS_ENDPOINT_URL_BEDROCK_RUNTIME"] == server.base_url
