"""Service-provider mode through the local stack: one deployment, three corps that authorize the
suite, each synced, routed by its own rules and counted in its own figures; no corp can read
another's conversation, links or figures at any API; a corp that cancels is no longer served and,
with CancelledCorpData=delete, its data is gone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from kefu.stats import day_of
from tests.support.stack import ROOT, start_provider_stack, wait_for

pytestmark = pytest.mark.integration
HERE = Path(__file__).parent
A, B, C = "wwcorpa0000000001", "wwcorpb0000000002", "wwcorpc0000000003"
STATE_FILE = ROOT / "build" / f"provider-stack-{uuid.uuid4().hex[:8]}.json"


@pytest.fixture(scope="module")
def provider():
    from local.wecom_sim import ProviderSimulator

    sim = ProviderSimulator()
    sim.start()
    yield sim
    sim.stop()


@pytest.fixture(scope="module")
def pstack(aws_endpoint, provider):
    proc = start_provider_stack(aws_endpoint, provider, STATE_FILE, CancelledCorpData="delete")
    yield proc
    proc.stop()


def kefu(*args: str, **extra_env: str) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEFU_", "WECOM_", "AWS_"))}
    env.update({"PYTHONPATH": os.pathsep.join([str(ROOT / "cli"), str(ROOT / "shared")]),
                "PYTHONIOENCODING": "utf-8", "KEFU_STATE_FILE": str(STATE_FILE), **extra_env})
    done = subprocess.run([sys.executable, "-m", "kefu_cli", *args, "--json"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr + done.stdout
    return json.loads(done.stdout)


def tenant(clients, stack, corp: str) -> dict[str, Any] | None:
    item = clients.dynamodb.get_item(TableName=stack.resources["StateTable"], ConsistentRead=True,
                                     Key={"pk": {"S": "provider#corps"}, "sk": {"S": corp}}).get("Item")
    return item


def active(clients, stack, corp: str) -> bool:
    item = tenant(clients, stack, corp)
    return bool(item) and item["state"]["S"] == "active"


class Corp:
    """One authorized corp: its simulator, its account and servicers, its API key."""

    def __init__(self, provider, clients, stack, corp: str, servicers: tuple[str, ...]) -> None:
        provider.authorize(corp, corp_name=f"Corp {corp[6].upper()}")
        wait_for(lambda: active(clients, stack, corp), timeout=30, message=f"{corp} registered")
        self.id = corp
        self.sim = provider.corp(corp)
        self.kfid = self.sim.add_account(name=f"desk {corp[6]}")
        for userid in servicers:
            self.sim.add_servicer(self.kfid, userid)
        provider.kf_account_auth_change(corp, added=[self.kfid])
        wait_for(lambda: any(c["open_kfid"] == self.kfid and c.get("errcode") == 0 for c in self.sim.sync_calls),
                 timeout=30, message=f"{corp}'s first pull")
        self.key = kefu("corps", "key", corp)["api_key"]

    def headers(self) -> dict[str, str]:
        return {"X-Kefu-Corp-Key": self.key}


@pytest.fixture(scope="module")
def corps(pstack, provider, clients) -> dict[str, Corp]:
    assert provider.push_suite_ticket()
    made = {A: Corp(provider, clients, pstack, A, ("alice",)), B: Corp(provider, clients, pstack, B, ("alice", "bob")),
            C: Corp(provider, clients, pstack, C, ("carol",))}
    assert kefu("corps", "rules", A, str(HERE / "provider_rules_a.yaml"))["stored"].endswith(f"{A}/routing.yaml")
    assert kefu("corps", "rules", B, str(HERE / "provider_rules_b.yaml"))["stored"].endswith(f"{B}/routing.yaml")
    return made


def texts(sim, kfid: str, euid: str) -> list[str]:
    return [m["payload"]["content"] for m in sim.sent_messages(kfid, euid) if m.get("msgtype") == "text"]


def serve_customer(corp: Corp, http: httpx.Client, scene: str) -> tuple[str, str]:
    """A customer of the corp enters through a link of the corp, writes, and is assigned."""
    answer = http.get("/links", params={"corp": corp.id, "scene": scene, "account": corp.kfid})
    assert answer.status_code == 200, answer.text
    assert answer.json()["corp_id"] == corp.id
    euid, _ = corp.sim.customer_enter_via_link(answer.json()["url"])
    corp.sim.customer_says(corp.kfid, euid, "你好，我想咨询")
    wait_for(lambda: corp.sim.session(corp.kfid, euid)["service_state"] == 3, timeout=30,
             message=f"{corp.id}'s customer assigned")
    return euid, corp.sim.session(corp.kfid, euid)["servicer_userid"]


def test_three_corps_served_by_their_own_rules_and_counted_apart(pstack, corps, provider, clients) -> None:
    http = httpx.Client(base_url=pstack.url, timeout=15)
    served = {corp.id: serve_customer(corp, http, f"s{corp.id[6]}") for corp in corps.values()}
    a, b, c = corps[A], corps[B], corps[C]
    # Each corp's rules: A and B their own welcomes (B: always bob); C the deployment's (no welcome).
    wait_for(lambda: "欢迎来到 A 公司" in texts(a.sim, a.kfid, served[A][0]), timeout=20, message="A's welcome")
    wait_for(lambda: "欢迎来到 B 公司" in texts(b.sim, b.kfid, served[B][0]), timeout=20, message="B's welcome")
    assert served[B][1] == "bob"
    assert texts(c.sim, c.kfid, served[C][0]) == []
    # Synced and stored under its corp; routed through its own WeCom (its own token).
    for corp in corps.values():
        answer = http.get(f"/conversations/{served[corp.id][0]}", params={"account": corp.kfid},
                          headers=corp.headers())
        assert answer.status_code == 200, answer.text
        said = [m["message"]["content"] for m in answer.json()["messages"] if m["sender"] == "customer"]
        assert said == ["你好，我想咨询"], answer.json()
        assert provider.corp_token_count(corp.id) >= 1
    day = day_of(time.time(), "Asia/Shanghai")

    def funnel(corp: Corp) -> dict[str, int]:
        body = http.get("/stats", params={"from": day, "to": day}, headers=corp.headers()).json()
        return {row["scene"]: row["sessions_assigned"] for row in body["funnel"] if row.get("scene")}

    for corp in corps.values():
        wait_for(lambda corp=corp: funnel(corp) == {f"s{corp.id[6]}": 1}, timeout=20,
                 message=f"{corp.id}'s own figures only")
    # Its log lines and its counts name it (the corp a property of the metric, not a dimension).
    for corp in corps.values():
        assert any('"RouteDecision"' in line and f'"corp":"{corp.id}"' in line for line in pstack.lines), corp.id
        assert any('"account synced"' in line and f'"corp":"{corp.id}"' in line for line in pstack.lines), corp.id
    # The CLI, for one corp: its stats through its key, its conversation from its own keys.
    stats = kefu("stats", "--corp", A, KEFU_CORP_KEY=a.key)
    assert {row["scene"] for row in stats["funnel"] if row.get("scene")} == {"sa"}
    said = kefu("messages", served[A][0], "--account", a.kfid, "--corp", A)
    assert "你好，我想咨询" in json.dumps(said, ensure_ascii=False)
    assert served[B][0] not in json.dumps(kefu("messages", "--account", b.kfid, "--corp", A), ensure_ascii=False)


def test_a_changed_authorization_is_read_again(pstack, corps, provider, clients) -> None:
    provider.add_corp(A, "Corp A (renamed)")
    provider.change_auth(A)
    wait_for(lambda: (tenant(clients, pstack, A) or {}).get("corp_name", {}).get("S") == "Corp A (renamed)",
             timeout=20, message="the corp's new name")
    listed = {row["corp"]: row for row in kefu("corps", "list")}
    assert (listed[A]["name"], listed[A]["state"], listed[A]["accounts"]) == ("Corp A (renamed)", "active", [corps[A].kfid])


def test_the_provider_gets_an_install_link(pstack, provider) -> None:
    link = kefu("corps", "install-link", "--redirect", "https://provider.example.com/installed", "--state",
                "signup-42", "--test")
    url = httpx.URL(link["url"])
    assert (url.host, url.path) == ("open.work.weixin.qq.com", "/3rdapp/install")
    assert url.params["suite_id"] == provider.suite_id and url.params["state"] == "signup-42"
    assert url.params["pre_auth_code"] and link["expires_in"] == 1200
    assert any(c["path"].endswith("service/set_session_info") for c in provider.calls)


def test_no_corp_reads_another_corps_data_at_any_api(pstack, corps) -> None:
    http = httpx.Client(base_url=pstack.url, timeout=15)
    a, b = corps[A], corps[B]
    b_customer, _ = serve_customer(b, http, "secret")
    # The conversation API, with A's key: B's customer, B's account and B's customer list are not found.
    assert http.get(f"/conversations/{b_customer}", params={"account": b.kfid}, headers=a.headers()).json().get(
        "messages", []) == []
    recent = http.get("/conversations", params={"account": b.kfid}, headers=a.headers())
    assert recent.status_code in (200, 404) and not recent.json().get("conversations"), recent.text
    customer = http.get(f"/customers/{b_customer}", headers=a.headers())
    assert customer.status_code == 404 or not customer.json().get("profile"), customer.text
    # Acting on B's customer with A's key changes nothing at B.
    sent_before = len(b.sim.sent_messages(b.kfid, b_customer))
    send = http.post(f"/conversations/{b_customer}/messages", params={"account": b.kfid}, headers=a.headers(),
                     json={"msgtype": "text", "text": {"content": "from A"}, "idempotency_key": "cross-corp-1"})
    assert send.status_code >= 400, send.text
    assert len(b.sim.sent_messages(b.kfid, b_customer)) == sent_before
    # /stats with A's key: nothing of B's scene.
    day = day_of(time.time(), "Asia/Shanghai")
    body = http.get("/stats", params={"from": day, "to": day}, headers=a.headers()).json()
    assert all(row.get("open_kfid") != b.kfid and row.get("scene") != "secret" for row in body["funnel"]), body
    body = http.get("/stats", params={"from": day, "to": day, "account": b.kfid}, headers=a.headers()).json()
    assert body["funnel"] == [] and body["servicers"] == [], body
    # /links: B's account through corp A is not A's account; an unknown or missing corp is refused.
    cross = http.get("/links", params={"corp": A, "scene": "x", "account": b.kfid})
    assert cross.status_code == 404, cross.text
    assert http.get("/links", params={"scene": "x"}).status_code == 400
    assert http.get("/links", params={"corp": "wwnotacorp000000", "scene": "x"}).status_code == 404
    # No key, a wrong key: refused before anything runs.
    assert http.get("/stats").status_code == 401
    assert http.get("/conversations", params={"account": a.kfid},
                    headers={"X-Kefu-Corp-Key": "kefu_not-a-key"}).status_code == 403


def test_a_corp_that_cancels_is_no_longer_served_and_its_data_is_deleted(pstack, corps, provider, clients) -> None:
    http = httpx.Client(base_url=pstack.url, timeout=15)
    c = corps[C]
    euid, _ = serve_customer(c, http, "before")
    pulls = len(c.sim.sync_calls)
    provider.change_auth(C)  # queued just before the cancellation: it must not bring the corp back
    provider.cancel_auth(C)
    wait_for(lambda: not active(clients, pstack, C), timeout=10, message="C cancelled")
    # C's callbacks are refused, its links, conversation API and figures answer nothing.
    c.sim.auto_callback = True
    c.sim.customer_says(c.kfid, euid, "还在吗")
    assert c.sim.fire_callback(c.kfid) == [400]
    assert http.get("/links", params={"corp": C, "scene": "after"}).status_code == 404
    assert http.get("/stats", headers=c.headers()).status_code == 403
    assert http.get(f"/conversations/{euid}", params={"account": c.kfid}, headers=c.headers()).status_code == 403
    # Its data is deleted (CancelledCorpData=delete): no state item and no message of C is left.
    state, messages = pstack.resources["StateTable"], pstack.resources["MessagesTable"]

    def left() -> int:
        items = clients.dynamodb.scan(TableName=state, FilterExpression="begins_with(pk, :p)",
                                      ExpressionAttributeValues={":p": {"S": f"{C}/"}})["Items"]
        kept = clients.dynamodb.scan(TableName=messages, FilterExpression="corp = :c",
                                     ExpressionAttributeValues={":c": {"S": C}})["Items"]
        return len(items) + len(kept)

    wait_for(lambda: left() == 0, timeout=30, message="C's data deleted")
    wait_for(lambda: "corp data deleted" in pstack.output(), timeout=10, message="the deletion logged")
    time.sleep(3)
    assert len(c.sim.sync_calls) == pulls  # never pulled again
    # The change queued before the cancellation is settled (a retry may meet the revoked code at
    # WeCom first) without bringing C back and without a dead letter.
    def queued(queue: str) -> int:
        attrs = clients.sqs.get_queue_attributes(
            QueueUrl=pstack.resources[queue],
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])

    wait_for(lambda: queued("SyncQueue") == 0, timeout=30, message="the suite's commands settled")
    assert not active(clients, pstack, C)
    assert queued("SyncDeadLetterQueue") == 0
    # The other corps are still served.
    a = corps[A]
    serve_customer(a, http, "after")
