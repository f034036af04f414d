"""The AI answerer (routing rules' bot.ai) through the local stack: the route function asks the
Bedrock stand-in (local/bedrock_standin.py, owned by this module and reached through boto3's
endpoint override, AWS_ENDPOINT_URL_BEDROCK_RUNTIME) and answers from tests/integration/ai_knowledge.md,
or hands the customer to a person. One kf account per behaviour (tests/integration/ai_rules.yaml).
"""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kefu.knowledge_files import S3_CHECK_SECONDS, KnowledgeFiles
from kefu.routing.rules import KnowledgeFile
from local.bedrock_standin import BedrockStandIn
from tests.integration.test_cli import explain, kefu_with
from tests.integration.test_route import Env
from tests.support.stack import StackProcess, stack_env, start_stack, wait_for

pytestmark = pytest.mark.integration

RULES = Path(__file__).resolve().with_name("ai_rules.yaml")
MODEL = "amazon.nova-lite-v1:0"
BUDGET_USD = 5
HUMAN, BOT = 3, 1
ENTRIES = {"shipping", "returns", "invoice", "holiday", "points", "payment"}
SHIPPING = "下单后 48 小时内发货，偏远地区顺延一到两天。"
RETURNS = "签收后 7 天内可在订单页申请无理由退货。"
STATE_FILE = Path(tempfile.mkdtemp(prefix="kefu-ai-")) / "local-stack.json"  # for the `kefu` CLI
NAMES = ("answer", "local", "caps", "fallback", "s3", "gone")


def kfid(name: str) -> str:
    return ("wkAI" + name).ljust(32, "0")


@pytest.fixture(scope="module")
def bedrock() -> Iterator[BedrockStandIn]:
    standin = BedrockStandIn()
    standin.start()
    yield standin
    standin.stop()


@pytest.fixture(scope="module")
def stack(aws_endpoint: str, simulator, bedrock: BedrockStandIn) -> Iterator[StackProcess]:
    params = {"BedrockModelId": MODEL, "AiMonthlyBudgetUsd": str(BUDGET_USD)}
    proc = start_stack(stack_env(aws_endpoint, simulator, f"kefu-t{uuid.uuid4().hex[:8]}",
                                 KEFU_ROUTING_CONFIG=str(RULES), KEFU_LOCAL_VISIBILITY_TIMEOUT="5",
                                 KEFU_TEMPLATE_PARAMS=json.dumps(params), KEFU_STATE_FILE=str(STATE_FILE),
                                 AWS_ENDPOINT_URL_BEDROCK_RUNTIME=bedrock.base_url))
    simulator.set_callback_url(f"{proc.url}/callback")
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def env(stack, simulator, clients) -> Iterator[Env]:
    helper = Env(stack, simulator, clients)
    for name in NAMES:
        simulator.add_account(open_kfid=kfid(name), name=f"ai {name}")
        simulator.add_servicer(kfid(name), "alice")
    for name in NAMES:
        helper.prime(kfid(name))
    yield helper


def ask(env: Env, open_kfid: str, text: str, scene: str = "", euid: str | None = None) -> str:
    """A customer (new, from ``scene``, unless ``euid`` is given) asks ``text``."""
    if euid is None:
        return env.arrive(open_kfid, text, scene=scene)
    env.sim.customer_says(open_kfid, euid, text)
    return euid


def texts(env: Env, open_kfid: str, euid: str) -> list[str]:
    return [str((s.get("payload") or {}).get("content")) for s in env.sends(open_kfid, euid, via="send_msg")
            if s.get("msgtype") == "text"]


def model_calls(bedrock: BedrockStandIn, question: str) -> list[Any]:
    return bedrock.calls(question)


def stored_ai_sends(env: Env, open_kfid: str, euid: str) -> list[dict[str, Any]]:
    items = env.clients.dynamodb.query(
        TableName=env.messages_table, IndexName="conversation", KeyConditionExpression="conv = :c",
        ExpressionAttributeValues={":c": {"S": f"{open_kfid}#{euid}"}})["Items"]
    return [i for i in items if i.get("sender", {}).get("S") == "kefu" and "ai" in i]


def funnel(stack: StackProcess, open_kfid: str) -> dict[str, dict[str, Any]]:
    day = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 8 * 3600))  # the stats' zone: Asia/Shanghai
    body = httpx.get(f"{stack.url}/stats", params={"from": day, "to": day, "account": open_kfid}, timeout=10).json()
    return {row["scene"]: row for row in body["funnel"]}


# -- answered ----------------------------------------------------------------------------------

def test_a_covered_question_is_answered_from_the_matching_entries_only(env: Env, bedrock: BedrockStandIn) -> None:
    k = kfid("answer")
    euid = ask(env, k, "请问你们多久发货？", scene="help")
    wait_for(lambda: SHIPPING in texts(env, k, euid), message="the AI answer")
    assert env.state(k, euid) == BOT  # answered by the bot: nobody was called in
    calls = model_calls(bedrock, "请问你们多久发货")
    assert len(calls) == 1
    call = calls[0]
    assert call.model_id == MODEL
    # Only what retrieval picked went to the model: the shipping entry among at most top_k (3).
    assert "shipping" in call.entry_ids and len(call.entry_ids) <= 3 and set(call.entry_ids) < ENTRIES
    assert call.question == "请问你们多久发货？"
    # Stored in the conversation, marked as AI with its source and token counts.
    [stored] = stored_ai_sends(env, k, euid)
    ai = stored["ai"]["M"]
    assert ai["model"]["S"] == MODEL and [s["S"] for s in ai["sources"]["L"]] == ["shipping"]
    assert int(ai["input_tokens"]["N"]) > 0 and int(ai["output_tokens"]["N"]) > 0
    assert stored["rule"]["S"] == "bot ai"
    wait_for(lambda: funnel(env.stack, k).get("help", {}).get("ai_answered") == 1, message="ai_answered counted")
    # The operator sees it in `kefu messages`, marked as AI with its source.
    done = kefu_with({"KEFU_STATE_FILE": str(STATE_FILE)}, "messages", euid, "--account", k)
    assert done.returncode == 0, explain(done)
    line = next(line for line in done.stdout.splitlines() if SHIPPING in line)
    assert "Kefu (bot ai)" in line and f"[AI answer, model {MODEL}; sources: shipping]" in line, done.stdout


def test_without_consent_an_entry_is_sent_as_written_and_nothing_reaches_the_model(
        env: Env, bedrock: BedrockStandIn) -> None:
    k = kfid("local")
    euid = ask(env, k, "可以退货吗？我想退")
    wait_for(lambda: RETURNS in texts(env, k, euid), message="the entry's answer")
    assert model_calls(bedrock, "可以退货吗？我想退") == []
    [stored] = stored_ai_sends(env, k, euid)
    assert stored["ai"]["M"]["model"]["S"] == "knowledge"


# -- handed to a person --------------------------------------------------------------------------

def hands_off(env: Env, open_kfid: str, euid: str) -> None:
    env.assigned(open_kfid, euid)
    assert texts(env, open_kfid, euid) == []  # nothing was said for the AI: a person answers


def test_an_uncovered_question_goes_to_a_person_without_a_model_call(env: Env, bedrock: BedrockStandIn) -> None:
    k = kfid("answer")
    euid = ask(env, k, "你们老板叫什么名字", scene="help")
    hands_off(env, k, euid)
    assert model_calls(bedrock, "你们老板叫什么名字") == []
    env.wait_decision(euid, rule="bot ai uncovered: hand-off")
    wait_for(lambda: funnel(env.stack, k).get("help", {}).get("ai_handed_off", 0) >= 1, message="ai_handed_off")


def test_asking_for_a_person_hands_off_at_once(env: Env, bedrock: BedrockStandIn) -> None:
    k = kfid("answer")
    euid = ask(env, k, "发货太慢了，转人工")
    hands_off(env, k, euid)
    assert model_calls(bedrock, "发货太慢了，转人工") == []


def test_a_throttled_model_hands_off(env: Env, bedrock: BedrockStandIn) -> None:
    k = kfid("answer")
    bedrock.behave("节假日发货吗", mode="throttled")
    euid = ask(env, k, "节假日发货吗")
    hands_off(env, k, euid)
    assert [c.status for c in model_calls(bedrock, "节假日发货吗")] == [429]  # asked once, not retried
    env.wait_decision(euid, rule="throttled")


def test_a_slow_model_hands_off_at_the_deadline(env: Env, bedrock: BedrockStandIn) -> None:
    k = kfid("answer")
    bedrock.behave("会员积分怎么用", mode="slow", delay=12)
    started = time.monotonic()
    euid = ask(env, k, "会员积分怎么用")
    hands_off(env, k, euid)
    waited = time.monotonic() - started
    assert waited < 12, f"the customer waited for the slow model ({waited:.1f} s); the deadline is 2 s"
    assert len(model_calls(bedrock, "会员积分怎么用")) == 1
    env.wait_decision(euid, rule="within 2.0 s")


def test_an_answer_citing_an_entry_it_was_not_given_is_never_sent(env: Env, bedrock: BedrockStandIn) -> None:
    k = kfid("answer")
    bedrock.behave("支持哪些支付方式", reply='{"answer": "我们支持比特币。", "sources": ["crypto"]}')
    euid = ask(env, k, "支持哪些支付方式")
    hands_off(env, k, euid)
    assert "我们支持比特币。" not in texts(env, k, euid)


def test_the_fallback_text_when_the_rules_say_so(env: Env, bedrock: BedrockStandIn) -> None:
    k = kfid("fallback")
    euid = ask(env, k, "你们老板叫什么名字", scene="help")
    wait_for(lambda: texts(env, k, euid) == ["ai-fallback-text"], message="the fallback text")
    assert env.state(k, euid) == BOT
    wait_for(lambda: funnel(env.stack, k).get("help", {}).get("ai_fallback") == 1, message="ai_fallback counted")


# -- caps ----------------------------------------------------------------------------------------

def test_the_per_customer_cap_stops_model_calls_and_hands_off(env: Env, bedrock: BedrockStandIn) -> None:
    k = kfid("caps")
    question = "退货怎么操作呢"
    euid = ask(env, k, question)
    wait_for(lambda: texts(env, k, euid).count(RETURNS) == 1, message="answer 1")
    ask(env, k, question + "？", euid=euid)
    wait_for(lambda: texts(env, k, euid).count(RETURNS) == 2, message="answer 2")
    ask(env, k, question + "？？", euid=euid)
    env.assigned(k, euid)
    assert len(model_calls(bedrock, question)) == 2  # the third question never reached the model
    env.wait_decision(euid, rule="per_customer_per_day")


def test_the_accounts_daily_cap_stops_model_calls(env: Env, bedrock: BedrockStandIn) -> None:
    k = kfid("caps")  # per_day 3, and the test before used 2
    first = ask(env, k, "发票怎么开呀")
    wait_for(lambda: texts(env, k, first), message="the third call of the day answered")
    second = ask(env, k, "发票怎么开啊")
    env.assigned(k, second)
    assert model_calls(bedrock, "发票怎么开啊") == []
    env.wait_decision(second, rule="per_day")


def test_the_months_cost_ceiling_stops_model_calls(env: Env, bedrock: BedrockStandIn, clients) -> None:
    k = kfid("answer")
    month = time.strftime("%Y-%m", time.gmtime(time.time() + 8 * 3600))
    key = {"pk": {"S": f"aispend#{month}"}, "sk": {"S": "usd"}}
    table = env.state_table
    before = clients.dynamodb.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item")
    assert before and int(before["micro_usd"]["N"]) > 0, "the answers so far were paid for"
    clients.dynamodb.put_item(TableName=table, Item={**key, "micro_usd": {"N": str(BUDGET_USD * 1_000_000)}})
    try:
        euid = ask(env, k, "什么时候发货呢")
        hands_off(env, k, euid)
        assert model_calls(bedrock, "什么时候发货呢") == []
        env.wait_decision(euid, rule="AiMonthlyBudgetUsd")
    finally:
        clients.dynamodb.put_item(TableName=table, Item=before)


# -- knowledge in S3 -----------------------------------------------------------------------------

def test_knowledge_in_s3_is_read_from_the_media_bucket(env: Env, bedrock: BedrockStandIn, clients) -> None:
    k = kfid("s3")
    bucket = env.stack.resources["MediaBucket"]
    clients.s3.put_object(Bucket=bucket, Key="knowledge/faq.md",
                          Body="## 门店在哪里 {#stores}\n上海市南京东路 100 号。\n".encode())
    euid = ask(env, k, "你们的门店在哪里")
    wait_for(lambda: "上海市南京东路 100 号。" in texts(env, k, euid), message="the answer from S3's knowledge")
    assert model_calls(bedrock, "你们的门店在哪里")[0].entry_ids == ("stores",)


def test_a_missing_s3_knowledge_file_hands_off(env: Env, bedrock: BedrockStandIn) -> None:
    k = kfid("gone")  # its rules name knowledge/none.md, which is not in the bucket
    euid = ask(env, k, "门店在哪里呀")
    hands_off(env, k, euid)
    env.wait_decision(euid, rule="NoSuchKey")
    assert model_calls(bedrock, "门店在哪里呀") == []


def test_an_s3_knowledge_file_is_read_again_when_it_changed(aws_endpoint: str, clients, monkeypatch) -> None:
    """kefu.knowledge_files on the emulator's S3, with a clock of its own: one conditional GET a
    minute, and a new parse only when the object changed."""
    for name, value in {"AWS_ENDPOINT_URL": aws_endpoint, "AWS_DEFAULT_REGION": "us-east-1",
                        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    bucket = f"kefu-knowledge-{uuid.uuid4().hex[:8]}"
    clients.s3.create_bucket(Bucket=bucket)
    clients.s3.put_object(Bucket=bucket, Key="knowledge/a.md", Body="## 几点开门 {#open}\n九点。\n".encode())
    now = [1000.0]
    files = KnowledgeFiles(lambda: None, bucket, clock=lambda: now[0])
    ref = KnowledgeFile(s3="knowledge/a.md")
    first = files(ref)
    assert [e.answer for e in first.entries] == ["九点。"]
    clients.s3.put_object(Bucket=bucket, Key="knowledge/a.md", Body="## 几点开门 {#open}\n十点。\n".encode())
    assert files(ref) is first  # within the minute: not looked at
    now[0] += S3_CHECK_SECONDS
    assert [e.answer for e in files(ref).entries] == ["十点。"]
    now[0] += S3_CHECK_SECONDS
    unchanged = files(ref)
    now[0] += S3_CHECK_SECONDS
    assert files(ref) is unchanged  # not modified (304): the parsed file is kept
