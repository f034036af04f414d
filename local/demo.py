"""The scripted demo `make dev` runs against the built-in simulator: WeCom verifies the callback
URL, a customer enters from a scene link and writes, and the console shows what each part did."""

from __future__ import annotations

import time
from typing import Any

import httpx

SCENE = "spring_sale"
SCENE_PARAM = "poster=metro-line-2&city=上海"


def say(line: str) -> None:
    print(f"[demo] {line}", flush=True)


def run_demo(stack: Any) -> None:
    try:
        _script(stack)
    except Exception as exc:  # the demo must never take the stack down
        say(f"demo failed: {type(exc).__name__}: {exc}")


def _script(stack: Any) -> None:
    sim = stack.simulator
    sim.auto_callback = False  # the demo fires callbacks itself, to show each step
    time.sleep(0.2)
    say("1. WeCom saves the callback URL and verifies it with a signed GET /callback")
    response = httpx.get(f"{stack.url}/callback", params=sim.signed_echo("8617301234567890123"), timeout=5)
    say(f"   -> {response.status_code} {response.text!r}: the decrypted echostr, so WeCom accepts the URL")

    open_kfid = sim.add_account(name="Kefu Demo")
    sim.add_servicer(open_kfid, "alice")
    sim.add_servicer(open_kfid, "bob")
    # What config/routing.yaml's menus name: its mini program, and the 升级服务 range an admin sets.
    sim.link_miniprogram("wx0123456789abcdef")
    sim.set_upgrade_config(userids=["alice", "bob"], chat_ids=["wrdemo-members"])
    say(f"2. kf account {open_kfid} (servicers alice, bob); a customer wrote before Kefu was deployed")
    early, _ = sim.customer_enter(open_kfid, scene="old_poster")
    sim.customer_says(open_kfid, early, "有人吗？")
    sim.fire_callback(open_kfid)
    _wait(lambda: stack_messages(stack, open_kfid) >= 2)
    say(f"   -> first pull stored {stack_messages(stack, open_kfid)} items and handed none to routing "
        "(a first pull is a replay: stored, never acted on)")

    customer, code = sim.customer_enter(open_kfid, scene=SCENE, scene_param=SCENE_PARAM)
    say(f"3. customer {customer} opens the {SCENE!r} link (scene_param {SCENE_PARAM!r}); "
        f"welcome_code {'issued' if code else 'not issued'}")
    sim.customer_says(open_kfid, customer, "你好，我想问一下价格")
    say("   and writes: 你好，我想问一下价格")
    say("4. WeCom posts an encrypted kf_msg_or_event callback, and retries it twice (it thought us slow)")
    statuses = sim.fire_callback(open_kfid, repeat=3)
    say(f"   -> answered {statuses}; retries carry one deduplication id (AWS drops them for 5 minutes; "
        "moto only while the first is queued) and the sync skips msgids it already stored")
    _wait(lambda: stack_messages(stack, open_kfid) >= 4)
    pulls = len(sim.calls_to("kf/sync_msg"))
    say(f"5. the sync function pulled kf/sync_msg {pulls} time(s) in all and stored "
        f"{stack_messages(stack, open_kfid)} items for the account, each once")
    _wait(lambda: sim.session(open_kfid, customer).get("service_state") == 3)
    for sent in sim.sent_messages(open_kfid, customer):
        payload = sent.get("payload") or {}
        text = payload.get("content") or payload.get("head_content") or sent.get("msgtype")
        say(f"6. the route function sent ({sent['via']}, {sent.get('code_kind') or 'no code'}): {text!r}")
    session = sim.session(open_kfid, customer)
    say(f"7. and handed the session to a human: WeCom state {session.get('service_state')} (3 = servicer), "
        f"servicer {session.get('servicer_userid')!r}")
    say("demo done; the stack keeps serving on " + stack.url + " (Ctrl-C to stop)")


def _wait(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.1)


def stack_messages(stack: Any, open_kfid: str) -> int:
    import boto3

    response = boto3.client("dynamodb").query(
        TableName=stack.template.physical["MessagesTable"], IndexName="account", Select="COUNT",
        FilterExpression="attribute_not_exists(sender)",  # WeCom's items (Kefu's own sends are stored too)
        KeyConditionExpression="open_kfid = :o", ExpressionAttributeValues={":o": {"S": open_kfid}},
    )
    return int(response["Count"])
