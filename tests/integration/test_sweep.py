"""Kefu stays true to WeCom when WeCom tells it nothing (design rule 13), through the local stack:
the sweep (the template's Schedule event, run every 2 s here) pulls accounts whose callbacks were
lost, finds sessions that ended at WeCom unseen and gives their places to waiting customers, and
ends idle sessions with the closing message; the route function repairs a stale pool head and a
customer's stale session when they are met. Waits are on effects, never on time alone."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_route import HUMAN, POOL, Env
from tests.integration.test_route import kfid as route_kfid
from tests.support.stack import wait_for

pytestmark = pytest.mark.integration
RULES = Path(__file__).with_name("sweep_rules.yaml")
STACK_ENV = {
    "KEFU_ROUTING_CONFIG": str(RULES),
    "KEFU_LOCAL_SCHEDULE_SECONDS": "2",
    # Pull a quiet account and ask WeCom about a quiet session after 3 s, not 10 and 60 minutes.
    "KEFU_TEMPLATE_PARAMS": json.dumps({"ResyncMinutes": "0.05", "ReconcileMinutes": "0.05"}),
}
NAMES = ("lost", "poolhead", "stale", "unseen", "idle")


def kfid(name: str) -> str:
    return route_kfid(name, prefix="wkSW")  # as in sweep_rules.yaml


@pytest.fixture(scope="module")
def env(stack, simulator, clients) -> Iterator[Env]:
    helper = Env(stack, simulator, clients)
    for name in NAMES:
        simulator.add_account(open_kfid=kfid(name), name=f"sweep {name}")
        simulator.add_servicer(kfid(name), "alice")
    for name in NAMES:
        helper.prime(kfid(name))
    yield helper


def loads(env: Env, open_kfid: str) -> dict[str, int]:
    items = env.clients.dynamodb.query(TableName=env.state_table, ConsistentRead=True,
                                       KeyConditionExpression="pk = :p",
                                       ExpressionAttributeValues={":p": {"S": f"rload#{open_kfid}"}})["Items"]
    return {i["sk"]["S"]: int(i.get("active", {}).get("N", "0")) for i in items}


def wecom_loads(env: Env, open_kfid: str, euids: list[str]) -> dict[str, int]:
    held: dict[str, int] = {"alice": 0}
    for euid in euids:
        session = env.sim.session(open_kfid, euid)
        if session["service_state"] == HUMAN:
            held[session["servicer_userid"]] = held.get(session["servicer_userid"], 0) + 1
    return held


def test_a_lost_callbacks_messages_are_pulled_and_routed_by_the_sweep(env: Env) -> None:
    k = kfid("lost")
    env.sim.lose_callbacks(1, open_kfid=k)
    euid, _ = env.sim.customer_enter(k, welcome=False)
    assert env.sim.lost_callbacks(k) == 1  # no callback reached Kefu for this customer
    before = env.stored_count(k)
    env.sim.customer_says(k, euid, "hello")  # its callback goes through: the enter's stays lost
    wait_for(lambda: env.stored_count(k) >= before + 2, timeout=30, message="the lost items stored")
    env.sim.lose_callbacks(1, open_kfid=k)
    other, _ = env.sim.customer_enter(k, welcome=False)
    env.sim.customer_says(k, other, "anyone?")  # wait: this one's callback is lost too
    assert env.assigned(k, euid) == "alice"
    wait_for(lambda: env.stored_count(k) >= before + 4, timeout=30,
             message="a customer whose every callback was lost is stored within the sweep's interval")
    assert env.wait_state(k, other, POOL, timeout=30)  # and routed: alice is full (capacity 1)


def test_a_silently_ended_pool_head_does_not_stop_the_next_customer_being_assigned(env: Env) -> None:
    k = kfid("poolhead")
    env.sim.set_servicer_status(k, "alice", receiving=False)
    first = env.arrive(k)
    env.wait_state(k, first, POOL)
    second = env.arrive(k)
    env.wait_state(k, second, POOL)
    env.sim.end_session_silently(k, first)  # no event: Kefu's pool still starts with `first`
    env.sim.set_servicer_status(k, "alice", receiving=True)
    assert env.assigned(k, second) == "alice"
    assert env.sim.session(k, first)["service_state"] == 4
    wait_for(lambda: loads(env, k) == wecom_loads(env, k, [first, second]), timeout=20,
             message=f"loads {loads(env, k)} equal to WeCom's")


def test_a_customer_whose_session_ended_unseen_is_served_when_writing_again(env: Env) -> None:
    k = kfid("stale")
    euid = env.arrive(k)
    assert env.assigned(k, euid) == "alice"
    env.sim.end_session_silently(k, euid)
    env.sim.customer_says(k, euid, "hello again")  # a new session at WeCom; Kefu's cache says "human"
    assert env.assigned(k, euid) == "alice"  # served again, not "held"
    wait_for(lambda: loads(env, k) == {"alice": 1}, timeout=20, message=f"alice counted once: {loads(env, k)}")


def test_the_sweep_finds_an_unseen_end_and_gives_the_place_to_the_next_customer(env: Env) -> None:
    k = kfid("unseen")
    first = env.arrive(k)
    assert env.assigned(k, first) == "alice"
    second = env.arrive(k)
    env.wait_state(k, second, POOL)  # alice is full
    env.sim.end_session_silently(k, first)  # nobody writes, nothing tells Kefu: only the sweep can see it
    assert env.wait_state(k, second, HUMAN, timeout=40)["servicer_userid"] == "alice"
    env.wait_decision(first, rule="sweep: ended at WeCom unseen")
    wait_for(lambda: loads(env, k) == {"alice": 1}, timeout=20, message=f"alice counted once: {loads(env, k)}")


def test_an_idle_session_is_ended_by_the_sweep_with_the_closing_message(env: Env) -> None:
    k = kfid("idle")
    euid, _ = env.sim.customer_enter(k, scene="quick")
    env.wait_decision(euid, rule="welcome")
    env.sim.customer_says(k, euid, "价格")
    env.wait_decision(euid, rule="bot keyword")
    steady, _ = env.sim.customer_enter(k, scene="")  # no idle end in the account's own rules
    env.wait_decision(steady, rule="welcome")
    env.sim.customer_says(k, steady, "价格")
    env.wait_decision(steady, rule="bot keyword")
    env.wait_state(k, euid, 4, timeout=40)
    decision = env.wait_decision(euid, rule="idle end")[0]
    assert "closing sent" in decision.get("detail", ""), decision
    closings = [s for s in env.sends(k, euid, via="send_msg_on_event") if "再见" in json.dumps(s, ensure_ascii=False)]
    assert len(closings) == 1
    assert env.sim.session(k, steady)["service_state"] == 1  # still with the bot
