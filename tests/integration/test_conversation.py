"""The whole conversation through the local stack: every message kind sent by a rule and checked
by the simulator against WeCom's schema and limits, a customer walking a menu to 升级服务 and to a
human, the conversation read back with Kefu's own sends in it, and offers and 视频号 entries
counted per scene (tests/integration/conversation_rules.yaml)."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from kefu.stats import day_of
from tests.integration.test_cli import kefu_with
from tests.support.stack import wait_for

pytestmark = pytest.mark.integration

RULES = Path(__file__).resolve().with_name("conversation_rules.yaml")
STATE_FILE = Path(tempfile.mkdtemp(prefix="kefu-conversation-")) / "local-stack.json"
STACK_ENV = {"KEFU_ROUTING_CONFIG": str(RULES), "KEFU_STATE_FILE": str(STATE_FILE)}
MINIPROGRAM = "wx0123456789abcdef"
# An MP4 as far as WeCom's checks go: an ftyp box first (the simulator reads the box type).
MP4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + bytes(64)


def kfid(name: str) -> str:
    return ("wkCV" + name).ljust(32, "0")


@pytest.fixture(scope="module")
def world(stack, simulator, clients) -> Any:
    simulator.link_miniprogram(MINIPROGRAM)
    simulator.set_upgrade_config(userids=["alice", "bob"], chat_ids=["wrchat0001"])
    clients.s3.put_object(Bucket=stack.resources["MediaBucket"], Key="assets/intro.mp4", Body=MP4)
    for name in ("kinds", "menu", "channels"):
        simulator.add_account(open_kfid=kfid(name), name=name)
        simulator.add_servicer(kfid(name), "alice")
        simulator.add_servicer(kfid(name), "bob")
        # The account's first pull is a catch-up: a warm-up customer entered now is live (rule 9).
        simulator.customer_enter(kfid(name), external_userid=f"wmwarm{name}")
        wait_for(lambda k=kfid(name): any(c["open_kfid"] == k and c.get("errcode") == 0 for c in simulator.sync_calls),
                 message=f"first pull of {name}")
    return stack


def conversation(clients, stack, open_kfid: str, euid: str) -> list[dict[str, Any]]:
    from boto3.dynamodb.types import TypeDeserializer

    found = clients.dynamodb.query(TableName=stack.resources["MessagesTable"], IndexName="conversation",
                                   KeyConditionExpression="conv = :c",
                                   ExpressionAttributeValues={":c": {"S": f"{open_kfid}#{euid}"}})["Items"]
    plain = TypeDeserializer()
    return [{k: plain.deserialize(v) for k, v in item.items()} for item in found]


def test_every_message_kind_is_sent_by_a_rule_and_accepted_by_wecom(world, simulator, clients) -> None:
    k = kfid("kinds")
    euid, code = simulator.customer_enter(k)
    assert code
    wait_for(lambda: simulator.sent_messages(k, euid), message="the welcome menu")
    kinds = ["text", "link", "mini", "image", "video", "file", "card", "calink"]
    for kind in kinds:
        before = len(simulator.sent_messages(k, euid))
        simulator.customer_says(k, euid, f"kind-{kind} please")
        wait_for(lambda b=before: len(simulator.sent_messages(k, euid)) > b, timeout=20, message=f"the {kind} reply")
    sent = simulator.sent_messages(k, euid)
    assert [s["msgtype"] for s in sent] == ["msgmenu", "text", "link", "miniprogram", "image", "video", "file",
                                            "business_card", "ca_link"]
    assert sent[0]["via"] == "send_msg_on_event" and sent[0]["code_kind"] == "welcome"
    assert {item["type"] for item in sent[0]["payload"]["list"]} == {"click", "view", "miniprogram", "text"}
    assert sent[2]["payload"]["title"] == "a link" and sent[2]["payload"]["thumb_media_id"]
    assert sent[3]["payload"]["thumb_media_id"] == sent[2]["payload"]["thumb_media_id"]  # one upload, reused
    assert sent[4]["payload"]["media_id"] == sent[2]["payload"]["thumb_media_id"]  # the same image, as a thumb
    assert len(simulator.calls_to("media/upload")) == 3  # the card, the video (from S3), the file: each once
    # Each send is in the conversation record, marked as Kefu's, with the rule that sent it.
    # A send is settled in the record after WeCom answers it: the last one may still be on its way.
    def settled() -> dict[str, dict[str, Any]]:
        found = {r["msgid"]: r for r in conversation(clients, world, k, euid) if r.get("sender") == "kefu"}
        return found if all(r["send_state"] == "sent" for r in found.values()) else {}

    stored = wait_for(settled, message="every send settled in the record")
    assert {s["msgid"] for s in sent} == set(stored)
    by_type = {r["msgtype"]: r for r in stored.values()}
    assert by_type["ca_link"]["rule"] == "bot keyword 'kind-calink'" and by_type["msgmenu"]["rule"] == "welcome"
    assert json.loads(by_type["video"]["raw"])["video"]["media_id"] == sent[5]["payload"]["media_id"]


def test_a_customer_walks_a_menu_to_an_advisor_and_a_human_and_the_record_shows_both_sides(
        world, simulator, clients) -> None:
    k = kfid("menu")
    euid, _ = simulator.customer_enter(k, welcome=False)
    simulator.customer_says(k, euid, "menu please")
    wait_for(lambda: len(simulator.sent_messages(k, euid)) == 1, message="level 1")
    simulator.customer_says(k, euid, "More", menu_id="more")
    wait_for(lambda: len(simulator.sent_messages(k, euid)) == 2, message="level 2")
    simulator.customer_says(k, euid, "Add an advisor", menu_id="advisor")
    wait_for(lambda: simulator.upgrade_offers(k, euid), message="the 升级服务 offer")
    simulator.customer_says(k, euid, "Human", menu_id="human")
    wait_for(lambda: simulator.session(k, euid)["service_state"] == 3, message="with a human")
    (offer,) = simulator.upgrade_offers(k, euid)
    assert (offer["type"], offer["target"], offer["wording"]) == (1, "alice", "your advisor")
    sent = simulator.sent_messages(k, euid)
    assert [s["payload"].get("head_content") or s["payload"].get("content") for s in sent] == [
        "level-1", "level-2", "advisor-coming"]
    session = simulator.session(k, euid)
    assert session["sends_in_window"] == 3  # three sends in the window of the customer's one written message

    def record() -> list[dict[str, Any]]:
        items = conversation(clients, world, k, euid)
        return items if len(items) >= 9 else []

    items = wait_for(record, message="the whole conversation stored")
    sides = ["kefu" if i.get("sender") == "kefu" else f"origin {i.get('origin')}" for i in items]
    shown = [(who, i["msgtype"]) for who, i in zip(sides, items, strict=True)]
    assert shown == [("origin 4", "event"), ("origin 3", "text"), ("kefu", "msgmenu"), ("origin 3", "text"),
                     ("kefu", "msgmenu"), ("origin 3", "text"), ("kefu", "text"), ("kefu", "upgrade_service"),
                     ("origin 3", "text")]
    assert [i["rule"] for i in items if i.get("sender") == "kefu"] == [
        "bot keyword 'menu'", "menu 'more'", "menu 'advisor'", "menu 'advisor'"]
    # The operator reads it back: both sides in order, Kefu's marked with the rule that sent them.
    done = kefu("messages", euid, "--account", k, "--json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)["items"]
    assert [r.get("sender") or r.get("origin") for r in rows] == [4, 3, "kefu", 3, "kefu", 3, "kefu", "kefu", 3]
    text = kefu("messages", euid, "--account", k).stdout
    lines = [line for line in text.splitlines() if "Kefu (" in line]
    assert [line.split("Kefu (", 1)[1].split(")", 1)[0] for line in lines] == [
        "bot keyword 'menu'", "menu 'more'", "menu 'advisor'", "menu 'advisor'"], text
    assert "level-2" in text and "advisor-coming" in text and "alice" in lines[-1], text


def kefu(*args: str) -> Any:
    return kefu_with({"KEFU_STATE_FILE": str(STATE_FILE)}, *args)


def test_the_operator_offers_and_cancels_an_upgrade_and_it_is_recorded_and_counted(world, simulator, clients) -> None:
    k = kfid("kinds")
    euid, _ = simulator.customer_enter(k, scene="poster", welcome=False)
    simulator.customer_says(k, euid, "hello")
    wait_for(lambda: any(i.get("origin") == 3 for i in conversation(clients, world, k, euid)), message="stored")
    config = kefu("upgrade", "config", "--json")
    assert json.loads(config.stdout) == {"members": ["alice", "bob"], "departments": [], "groups": ["wrchat0001"]}
    done = kefu("upgrade", "offer", euid, "--account", k, "--group", "auto", "--wording", "join the club")
    assert done.returncode == 0 and "sent" in done.stdout, done.stdout + done.stderr
    (offer,) = simulator.upgrade_offers(k, euid)
    assert (offer["type"], offer["target"], offer["wording"], offer["cancelled"]) == (2, "wrchat0001", "join the club",
                                                                                      False)
    recorded = [i for i in conversation(clients, world, k, euid) if i.get("via") == "upgrade_service"]
    assert len(recorded) == 1 and recorded[0]["rule"] == "operator (kefu upgrade offer)"
    outside = kefu("upgrade", "offer", euid, "--account", k, "--member", "mallory")
    assert outside.returncode == 1 and "not in the enterprise's 升级服务 range" in outside.stdout, outside.stdout
    assert kefu("upgrade", "cancel", euid, "--account", k).returncode == 0
    assert simulator.upgrade_offers(k, euid)[0]["cancelled"] is True
    http = httpx.Client(base_url=world.url, timeout=10)
    day = day_of(time.time(), "Asia/Shanghai")
    rows = http.get("/stats", params={"from": day, "to": day, "account": k, "scene": "poster"}).json()["funnel"]
    assert rows[0]["upgrades_offered"] == 1


def test_a_channels_entry_is_its_own_scene_and_an_entry_offer_is_counted_there(world, simulator) -> None:
    k = kfid("channels")
    euid, _ = simulator.customer_enter(k, wechat_channels={"nickname": "好物小店", "scene": 1})
    wait_for(lambda: simulator.sent_messages(k, euid), message="the channel's welcome")
    assert simulator.sent_messages(k, euid)[0]["payload"]["content"] == "welcome-channels"
    wait_for(lambda: simulator.upgrade_offers(k, euid), message="the offer on entry")
    assert simulator.upgrade_offers(k, euid)[0]["target"] == "wrchat0001"
    day = day_of(time.time(), "Asia/Shanghai")
    http = httpx.Client(base_url=world.url, timeout=10)

    def row() -> dict[str, Any] | None:
        body = http.get("/stats", params={"from": day, "to": day, "account": k, "scene": "channels:好物小店"}).json()
        rows = body["funnel"]
        return rows[0] if rows and rows[0]["upgrades_offered"] == 1 else None

    found = wait_for(row, message="the channels scene's funnel row")
    assert (found["scene"], found["sessions_entered"], found["upgrades_offered"]) == ("channels:好物小店", 1, 1)
