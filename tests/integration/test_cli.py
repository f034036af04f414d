"""The `kefu` operator CLI as a subprocess against this module's local stack, found through the
stack's own state file (KEFU_STATE_FILE: each test stack writes its own, since several run at
once), with WeCom played by the simulator.

The route function's poller is paused, so a dead letter redriven to the route queue stays there
to be seen.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from kefu_cli.messages import local_time
from tests.support.stack import StackProcess, wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
STATE_FILE = Path(tempfile.mkdtemp(prefix="kefu-cli-")) / "local-stack.json"
STACK_ENV = {"KEFU_LOCAL_PAUSED": "RouteFunction", "KEFU_STATE_FILE": str(STATE_FILE)}
ACCOUNT = "wkCLI00000000000000000000000001"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HAS_STATS_ROUTE = "Path: /stats" in (ROOT / "template.yaml").read_text(encoding="utf-8")


@pytest.fixture(scope="module", autouse=True)
def account(simulator) -> None:
    simulator.add_account(open_kfid=ACCOUNT, name="CLI desk")


def kefu(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """Run the installed `kefu` (else `python -m kefu_cli`) with only the state file to go by."""
    return kefu_with({"KEFU_STATE_FILE": str(STATE_FILE)}, *args, timeout=timeout)


def kefu_with(extra_env: dict[str, str], *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEFU_", "WECOM_", "AWS_"))}
    env.update({"PYTHONPATH": os.pathsep.join([str(ROOT / "cli"), str(ROOT / "shared")]), "PYTHONIOENCODING": "utf-8",
                **extra_env})
    script = Path(sys.executable).parent / "kefu"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "kefu_cli"]
    return subprocess.run([*command, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def explain(done: subprocess.CompletedProcess[str]) -> str:
    return f"exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"


def test_the_stack_writes_its_state_for_the_cli(stack, simulator) -> None:
    state = json.loads(STATE_FILE.read_text())
    assert state["url"] == stack.url and state["pid"] == stack.process.pid
    assert state["resources"] == stack.resources
    assert state["wecom_api_base"] == simulator.base_url and state["corp_id"] == simulator.corp_id
    assert state["aws_endpoint"].startswith("http://127.0.0.1:") and state["region"] == "us-east-1"
    assert state["stack_name"].startswith("kefu-t")


# -- preflight ---------------------------------------------------------------------------------

def test_preflight_succeeds_against_the_simulator(stack, simulator) -> None:
    done = kefu("preflight")
    assert done.returncode == 0, explain(done)
    out = done.stdout
    for line in ("✓ corp id", "✓ secrets", "✓ access token", "✓ kf accounts", "✓ qualification", "✓ callback URL"):
        assert line in out, explain(done)
    assert f"✓ {ACCOUNT}  CLI desk  (managed by this app)" in out
    assert "answers as Kefu" in out and out.rstrip().endswith("preflight passed")

    report = json.loads(kefu("preflight", "--json").stdout)
    assert report["ok"] is True and report["egress_ip"] is None
    assert {"open_kfid": ACCOUNT, "name": "CLI desk", "manage_privilege": True} in report["accounts"]
    assert [c["status"] for c in report["checks"]] == ["ok"] * 6


def test_preflight_reports_what_the_corps_qualification_means(stack, simulator) -> None:
    simulator.set_qualification(verified=True, wechat_channels_binding=False)
    try:
        done = kefu("preflight")
    finally:
        simulator.set_qualification(verified=True, wechat_channels_binding=True)
    assert done.returncode == 0, explain(done)  # a warning, not a failure
    assert "! qualification  no 视频号 is bound" in done.stdout or "qualification  no 视频号 is bound" in done.stdout
    assert "100 in all for an unverified corp, 10,000 for a verified one" in done.stdout
    assert "企业验证" in done.stdout and "bind a 视频号" in done.stdout


def test_preflight_reports_60020_with_the_egress_ip_and_the_remedy(stack, simulator) -> None:
    simulator.configure(ip_blocked=True)
    try:
        done = kefu("preflight")
        as_json = kefu("preflight", "--json")
    finally:
        simulator.configure(ip_blocked=False)
    assert done.returncode == 1, explain(done)
    out = done.stdout
    assert f"✗ access token  60020: WeCom refused calls from IP {simulator.egress_ip}" in out, explain(done)
    assert f"Add {simulator.egress_ip} to the app's trusted IPs" in out
    assert "this command's machine used, unless it runs inside the Lambda functions' network" in out
    assert "fixed-egress mode" in out and "Elastic IP" in out
    assert "- kf accounts" in out  # skipped: no token
    assert "✓ callback URL" in out  # the rest is still checked
    assert out.rstrip().endswith("preflight failed: 1 check(s) failed")
    report = json.loads(as_json.stdout)
    assert as_json.returncode == 1 and report["ok"] is False and report["egress_ip"] == simulator.egress_ip


def test_preflight_reports_a_wrong_secret(stack, simulator) -> None:
    simulator.inject_fault("gettoken", errcode=40001)
    try:
        done = kefu("preflight")
    finally:
        simulator.clear_faults()
    assert done.returncode == 1
    assert "✗ access token  40001: WeCom rejected the corp secret" in done.stdout, explain(done)
    assert f"{stack.resources['SecretsPrefix']}/corp-secret" in done.stdout


# -- messages ----------------------------------------------------------------------------------

def stored(clients, stack, external_userid: str) -> list[dict[str, Any]]:
    from boto3.dynamodb.types import TypeDeserializer

    des = TypeDeserializer()
    page = clients.dynamodb.query(
        TableName=stack.resources["MessagesTable"], IndexName="conversation", KeyConditionExpression="conv = :c",
        ExpressionAttributeValues={":c": {"S": f"{ACCOUNT}#{external_userid}"}})
    return [{k: des.deserialize(v) for k, v in item.items()} for item in page["Items"]]


def test_messages_shows_a_conversation_with_media_links(stack, simulator, clients) -> None:
    euid, _ = simulator.customer_enter(ACCOUNT, scene="cli_scene", scene_param="from=上海")
    simulator.customer_says(ACCOUNT, euid, "你好，kefu")
    simulator.customer_sends_media(ACCOUNT, euid, "image", data=b"\xff\xd8\xff\xe0 a tiny jpeg")
    wait_for(lambda: len(items := stored(clients, stack, euid)) == 3 and any(i.get("media_key") for i in items),
             timeout=30, message="the conversation and its image stored")

    done = kefu("messages", euid)
    assert done.returncode == 0, explain(done)
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"Conversation of {euid} with {ACCOUNT}: 3 item(s)")
    assert lines[1].split("  ", 1)[1].strip() == 'event     enter_session: scene "cli_scene", scene_param "from=上海"'
    assert lines[2].split("  ", 1)[1].strip() == "customer  你好，kefu"
    who, media = lines[3].split("  ", 1)[1].strip().split("  ", 1)
    assert who == "customer" and media.startswith("[image] http://127.0.0.1:")
    fetched = httpx.get(media.split(" ", 1)[1], timeout=10)  # the presigned URL works
    assert fetched.status_code == 200 and fetched.content == b"\xff\xd8\xff\xe0 a tiny jpeg"

    latest = kefu("messages", euid, "--account", ACCOUNT, "--limit", "1")
    assert latest.returncode == 0 and "older items exist" in latest.stdout and "[image]" in latest.stdout
    assert "你好" not in latest.stdout

    as_json = json.loads(kefu("messages", euid, "--json").stdout)
    assert [(i["who"], i["msgtype"]) for i in as_json["items"]] == [("event", "event"), ("customer", "text"),
                                                                     ("customer", "image")]
    assert as_json["items"][2]["media_url"] and as_json["more"] is False


def test_messages_of_an_unknown_customer(stack) -> None:
    done = kefu("messages", "wmNOBODY")
    assert done.returncode == 0 and "(no stored messages)" in done.stdout, explain(done)


def put_items(aws: boto3.Session, aws_endpoint: str, table: str, items: list[dict[str, Any]]) -> None:
    """Write items straight into one of the stack's tables (as Kefu and the sync store them)."""
    with aws.resource("dynamodb", endpoint_url=aws_endpoint).Table(table).batch_writer() as batch:
        for item in items:
            batch.put_item(Item=item)


def message(euid: str | None, at: int, raw: dict[str, Any], account: str = ACCOUNT, **extra: Any) -> dict[str, Any]:
    """A MessagesTable item: WeCom's (with ``origin``) or one of Kefu's sends (``sender`` "kefu")."""
    item = {"msgid": f"m-{uuid.uuid4().hex}", "ts": f"{at:010d}#{time.time_ns():020d}", "send_time": at,
            "stored_at": at, "msgtype": raw["msgtype"], "raw": json.dumps(raw, ensure_ascii=False),
            "open_kfid": account, **extra}
    if euid:
        item.update(external_userid=euid, conv=f"{account}#{euid}")
    return item


def kefu_sent(euid: str, at: int, raw: dict[str, Any], rule: str, state: str = "sent", **extra: Any) -> dict[str, Any]:
    return message(euid, at, raw, **{"sender": "kefu", "rule": rule, "cause": "m-cause", "via": "send_msg",
                                     "send_state": state, **extra})


def test_messages_shows_kefus_sends_failures_and_recalls(stack: StackProcess, aws: boto3.Session,
                                                         aws_endpoint: str) -> None:
    euid, at = f"wmKEFU{uuid.uuid4().hex[:8]}", int(time.time()) - 600
    put_items(aws, aws_endpoint, stack.resources["MessagesTable"], [
        message(euid, at, {"msgtype": "text", "text": {"content": "多少钱"}}, origin=3, recalled_at=at + 5,
                recalled_by="customer"),
        kefu_sent(euid, at + 1, {"msgtype": "msgmenu", "msgmenu": {"head_content": "您好", "list": [
            {"type": "click", "click": {"id": "price", "content": "价格"}},
            {"type": "view", "view": {"url": "https://e.com/faq", "content": "常见问题"}}]}}, "welcome",
                  via="send_msg_on_event"),
        kefu_sent(euid, at + 2, {"msgtype": "text", "text": {"content": "100元"}}, "bot keyword '价格'", "failed",
                  send_error="errcode 95018"),
        kefu_sent(euid, at + 3, {"msgtype": "link", "link": {"title": "春季上新", "url": "https://e.com/s",
                                                             "thumb_media_id": "2m"}}, "menu 'news'"),
        kefu_sent(euid, at + 4, {"msgtype": "upgrade_service", "upgrade_service": {
            "type": 1, "member": {"userid": "alice", "wording": "专属顾问"}}}, "menu 'vip'", "pending",
                  via="upgrade_service"),
        message(euid, at + 6, {"msgtype": "text", "text": {"content": "稍等"}, "servicer_userid": "bob"}, origin=5,
                servicer_userid="bob", send_state="failed", fail_type=4),
        message(euid, at + 7, {"msgtype": "text", "text": {"content": "发错了"}}, origin=5, servicer_userid="bob",
                recalled_at=at + 8, recalled_by="bob"),
    ])

    done = kefu("messages", euid, "--account", ACCOUNT)
    assert done.returncode == 0, explain(done)
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"Conversation of {euid} with {ACCOUNT}: 7 item(s)")
    assert [re.split(r"  +", line)[1:] for line in lines[1:]] == [
        ["customer", "多少钱", "[recalled by customer]"],
        ["Kefu (welcome)", "[menu] 您好 / 价格 | 常见问题 <https://e.com/faq>"],
        ["Kefu (bot keyword '价格')", "100元", "[send failed: errcode 95018]"],
        ["Kefu (menu 'news')", '[link] title "春季上新", url "https://e.com/s"'],
        ["Kefu (menu 'vip')", '[upgrade_service] offers servicer alice: "专属顾问"', "[send pending]"],
        ["servicer bob", "稍等", "[send failed: fail_type 4]"],
        ["servicer bob", "发错了", "[recalled by bob]"],
    ], explain(done)

    rows = json.loads(kefu("messages", euid, "--account", ACCOUNT, "--json").stdout)["items"]
    assert [(r["sender"], r["rule"], r["send_state"]) for r in rows[:3]] == [
        (None, None, None), ("kefu", "welcome", "sent"), ("kefu", "bot keyword '价格'", "failed")]
    assert rows[0]["recalled_at"] == at + 5 and rows[0]["recalled_by"] == "customer"
    assert rows[2]["send_error"] == "errcode 95018" and rows[1]["via"] == "send_msg_on_event"
    assert rows[4]["msgtype"] == "upgrade_service" and rows[5]["fail_type"] == 4


def test_messages_lists_an_accounts_recent_conversations(stack: StackProcess, aws: boto3.Session,
                                                         aws_endpoint: str) -> None:
    account = f"wkRECENT{uuid.uuid4().hex[:8]}"  # an account of its own: only these items in its index
    at = int(time.time()) - 3600
    put_items(aws, aws_endpoint, stack.resources["MessagesTable"], [
        message("wmOLD", at, {"msgtype": "text", "text": {"content": "在吗"}}, account, origin=3),
        message("wmA", at + 10, {"msgtype": "text", "text": {"content": "我想问一下价格"}}, account, origin=3),
        message("wmB", at + 20, {"msgtype": "image", "image": {"media_id": "3x"}}, account, origin=3),
        message("wmA", at + 30, {"msgtype": "text", "text": {"content": "好的"}}, account, origin=5,
                servicer_userid="alice"),
        message(None, at + 40, {"msgtype": "event", "event": {"event_type": "servicer_status_change",
                                                               "servicer_userid": "alice", "status": 2}},
                account, origin=4),
        message("wmC", at + 50, {"msgtype": "text", "text": {"content": "欢迎光临"}}, account, sender="kefu",
                rule="welcome", send_state="failed", send_error="errcode 95018"),
    ])
    put_items(aws, aws_endpoint, stack.resources["StateTable"], [
        {"pk": "customer#wmA", "sk": "profile", "external_userid": "wmA", "nickname": "小王", "updated_at": at},
        {"pk": "customer#wmC", "sk": "profile", "external_userid": "wmC", "nickname": "Chen", "updated_at": at}])

    done = kefu("messages", "--account", account)
    assert done.returncode == 0, explain(done)
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"Recent conversations of {account}: 4, newest first")
    assert "older conversations may exist" not in lines[0]
    rows = [re.split(r"  +", line) for line in lines[3:]]
    assert [r[0] for r in rows] == ["wmC", "wmA", "wmB", "wmOLD"], explain(done)
    assert rows[0][1:] == ["Chen", local_time(at + 50), "Kefu (welcome)", "欢迎光临", "[send failed: errcode 95018]"]
    assert rows[1][1:] == ["小王", local_time(at + 30), "servicer alice", "好的"]
    assert rows[2][1] == "-" and rows[2][3:] == ["customer", "[image] (media not stored yet)"]

    two = kefu("messages", "--account", account, "--limit", "2")
    assert two.returncode == 0 and "older conversations may exist: raise --limit above 2" in two.stdout
    listed = json.loads(kefu("messages", "--account", account, "--json").stdout)
    assert listed["open_kfid"] == account and listed["more"] is False
    assert [(c["external_userid"], c["nickname"], c["sender"], c["send_state"]) for c in listed["conversations"]] == [
        ("wmC", "Chen", "kefu", "failed"), ("wmA", "小王", None, None), ("wmB", None, None, None),
        ("wmOLD", None, None, None)]

    empty = kefu("messages", "--account", "wkNOTHING")
    assert empty.returncode == 0 and "(no stored messages)" in empty.stdout
    usage = kefu("messages")
    assert usage.returncode == 2 and "give EXTERNAL_USERID, or --account OPEN_KFID" in usage.stderr


# -- dead letters ------------------------------------------------------------------------------

def test_dlq_shows_a_dead_letter_and_redrive_moves_it_back(stack, clients) -> None:
    dlq_url, source_url = stack.resources["RouteDeadLetterQueue"], stack.resources["RouteQueue"]
    group = f"{ACCOUNT}#wmDEAD"
    body = json.dumps({"open_kfid": ACCOUNT, "external_userid": "wmDEAD", "items": [
        {"msgid": f"dead-{uuid.uuid4().hex}", "item": {"msgtype": "text", "text": {"content": "lost?"}}}]})
    clients.sqs.send_message(QueueUrl=dlq_url, MessageBody=body, MessageGroupId=group,
                             MessageDeduplicationId=uuid.uuid4().hex)

    shown = kefu("dlq")
    assert shown.returncode == 0, explain(shown)
    assert "sync: 0 dead letter(s)" in shown.stdout
    assert "route: 1 dead letter(s)" in shown.stdout
    assert group in shown.stdout and "route 1 item(s) of wmDEAD: text" in shown.stdout
    assert json.loads(kefu("dlq", "--queue", "route", "--json").stdout)["queues"][0]["count"] == 1  # still there

    moved = kefu("dlq", "--redrive", "--queue", "route")
    assert moved.returncode == 0, explain(moved)
    assert "route: moved 1 dead letter(s) back to" in moved.stdout
    attributes = clients.sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["All"])["Attributes"]
    assert int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"]) == 0

    def back() -> dict[str, Any] | None:
        received = clients.sqs.receive_message(QueueUrl=source_url, MaxNumberOfMessages=10, VisibilityTimeout=1,
                                               MessageSystemAttributeNames=["MessageGroupId"])
        return next((m for m in received.get("Messages", []) if m["Body"] == body), None)

    message = wait_for(back, timeout=15, message="the redriven message on the route queue")
    assert message["Attributes"]["MessageGroupId"] == group
    assert "route: 0 dead letter(s)" in kefu("dlq", "--queue", "route").stdout


# -- links -------------------------------------------------------------------------------------

def test_link_prints_the_url_and_writes_the_qr(stack, tmp_path: Path) -> None:
    from tests.qrcodes import decode_png

    qr = tmp_path / "poster.png"
    done = kefu("link", "cli_home", "--param", "poster=7", "--qr", str(qr))
    assert done.returncode == 0, explain(done)
    url, note = done.stdout.splitlines()
    assert url.startswith("https://work.weixin.qq.com/kf/") and url.endswith("&scene_param=poster%3D7")
    assert note == f"QR code written to {qr}"
    image = qr.read_bytes()
    assert image.startswith(PNG_SIGNATURE)
    assert decode_png(image) == [url]

    answer = json.loads(kefu("link", "cli_home", "--json").stdout)
    assert answer["open_kfid"] == ACCOUNT and answer["scene"] == "cli_home"
    refused = kefu("link", "not a scene")
    assert refused.returncode == 1 and "400 invalid_scene" in refused.stderr


# -- stats -------------------------------------------------------------------------------------

@pytest.mark.skipif(not HAS_STATS_ROUTE, reason="template.yaml has no GET /stats route yet (Path: /stats); "
                    "the table rendering is tested against a canned answer in tests/unit/test_cli_stats.py")
def test_stats_prints_the_figures_of_the_stack(stack) -> None:
    done = kefu("stats")
    assert done.returncode == 0, explain(done)
    assert "Scene funnel" in done.stdout and "Servicers" in done.stdout
    # what the CLI shows is what the route answers, for the same query
    for query in ({}, {"scene": "cli_home"}, {"from": "2026-01-01", "to": "2026-01-03", "account": ACCOUNT}):
        options = [part for key, value in query.items() for part in (f"--{key}", value)]
        shown = kefu("stats", "--json", *options)
        assert shown.returncode == 0, explain(shown)
        answered = httpx.get(f"{stack.url}/stats", params=query, timeout=10).json()
        assert json.loads(shown.stdout) == answered
    text = kefu("stats").stdout
    for row in json.loads(kefu("stats", "--json").stdout)["funnel"]:
        assert row["scene"] in text
    bad = kefu("stats", "--from", "2026-03-05", "--to", "2026-03-01")
    assert bad.returncode == 2 and "after" in bad.stderr


# -- a deployed stack, found through CloudFormation ------------------------------------------------

def test_a_deployed_stack_is_found_by_name_through_cloudformation(stack, simulator, clients, aws, aws_endpoint) -> None:
    """A CloudFormation stack in the emulator stands in for `sam deploy`'s: its outputs point at this
    module's local stack, its parameters name the corp, the secrets prefix and WeCom. The CLI then
    goes the deployed way: describe-stacks, AWS through the default chain (here AWS_ENDPOINT_URL),
    /stats signed with SigV4 (the local route ignores the signature)."""
    outputs = {"ApiBaseUrl": stack.url, "CallbackUrl": f"{stack.url}/callback", "LinksUrl": f"{stack.url}/links",
               "StatsUrl": f"{stack.url}/stats", "MessagesTableName": stack.resources["MessagesTable"],
               "MediaBucketName": stack.resources["MediaBucket"], "SyncQueueUrl": stack.resources["SyncQueue"],
               "SyncDeadLetterQueueUrl": stack.resources["SyncDeadLetterQueue"],
               "RouteQueueUrl": stack.resources["RouteQueue"],
               "RouteDeadLetterQueueUrl": stack.resources["RouteDeadLetterQueue"]}
    parameters = {"WeComCorpId": simulator.corp_id, "SecretsPrefix": stack.resources["SecretsPrefix"],
                  "WeComApiBase": simulator.base_url}
    template = {
        "Parameters": {**{k: {"Type": "String"} for k in parameters}, **{f"Out{k}": {"Type": "String"} for k in outputs}},
        "Resources": {"Marker": {"Type": "AWS::SQS::Queue", "Properties": {}}},
        "Outputs": {k: {"Value": {"Ref": f"Out{k}"}} for k in outputs},
    }
    name = f"kefu-deployed-{uuid.uuid4().hex[:6]}"
    aws.client("cloudformation", endpoint_url=aws_endpoint).create_stack(
        StackName=name, TemplateBody=json.dumps(template),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()]
        + [{"ParameterKey": f"Out{k}", "ParameterValue": v} for k, v in outputs.items()])

    env = {"AWS_ENDPOINT_URL": aws_endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    done = kefu_with(env, "--stack", name, "--region", "us-east-1", "preflight")
    assert done.returncode == 0, explain(done)
    assert done.stdout.startswith(f"Kefu preflight: stack {name} (us-east-1)")
    assert f"✓ {ACCOUNT}  CLI desk  (managed by this app)" in done.stdout
    dead = kefu_with(env, "dlq", "--stack", name, "--region", "us-east-1", "--json")
    assert dead.returncode == 0 and [q["queue"] for q in json.loads(dead.stdout)["queues"]] == ["sync", "route"]
    link = kefu_with(env, "link", "deployed", "--stack", name, "--region", "us-east-1")
    assert link.returncode == 0 and link.stdout.startswith("https://work.weixin.qq.com/kf/"), explain(link)
    if HAS_STATS_ROUTE:
        signed = kefu_with(env, "stats", "--stack", name, "--region", "us-east-1", "--json")
        assert signed.returncode == 0, explain(signed)
        assert set(json.loads(signed.stdout)) >= {"from", "to", "funnel", "servicers"}
    missing = kefu_with(env, "dlq", "--stack", "no-such-stack", "--region", "us-east-1")
    assert missing.returncode == 1 and "cannot read stack 'no-such-stack'" in missing.stderr
