"""The route function through the local stack and the WeCom simulator: the behaviours of the
routing contract, each on its own kf account (tests/integration/route_rules.yaml holds a block per
account), under one stack.

Everything runs by itself once a customer acts: the simulator fires the callback, the callback
queues a sync job, the sync stores the items and hands them to the route queue, the route
function acts on WeCom. The tests wait for the effect in the simulator (never on wall-clock time).

Each account gets a stored sync cursor first (``prime``): items pulled while an account has no
cursor are the first-deploy replay, stored and never acted on.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.support.stack import wait_for

pytestmark = pytest.mark.integration

RULES = Path(__file__).resolve().with_name("route_rules.yaml")
STACK_ENV = {
    "KEFU_ROUTING_CONFIG": str(RULES),
    "KEFU_LOCAL_WORKERS": "20",  # as the template's MaximumConcurrency
    # A record held longer than this comes back to another poller while the first still works on
    # it; Lambda's is 90 s. Long enough for the crowd test's lined-up records, short enough that
    # a genuinely failed record is retried within a test's waits.
    "KEFU_LOCAL_VISIBILITY_TIMEOUT": "10",
}
SERVICERS = ("alice", "bob")
FORBIDDEN = {95018, 95001, 95014}  # send in a wrong state, over the send budget, not a servicer
NAMES = ("welcome", "roundrobin", "leastbusy", "stopped", "scene", "sticky", "capacity", "offhours",
         "bothandoff", "botignore", "replayfirst", "replaykill", "replayold", "closing", "crowd", "repeat")
UNPRIMED = {"replayfirst", "replaykill"}  # their first pull is the subject of a test
HUMAN, POOL = 3, 2
DECODER = json.JSONDecoder()


def kfid(name: str, prefix: str = "wkRT") -> str:
    """The fixed open_kfid of a test's account (32 characters), as in route_rules.yaml."""
    return (prefix + name).ljust(32, "0")


# -- fixtures ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def env(stack, simulator, clients) -> Iterator[Env]:
    helper = Env(stack, simulator, clients)
    for name in NAMES:
        simulator.add_account(open_kfid=kfid(name), name=f"route {name}")
        for userid in SERVICERS:
            simulator.add_servicer(kfid(name), userid)
    for name in NAMES:
        if name not in UNPRIMED:
            helper.prime(kfid(name))
    yield helper
    # Across the whole module: the route function never made WeCom refuse a send or a transfer.
    refused = helper.forbidden_answers()
    assert not refused, f"WeCom refused route calls: {refused}"


class Env:
    """The stack, the simulator and the waits and look-ups the tests share."""

    def __init__(self, stack, simulator, clients) -> None:
        self.stack = stack
        self.sim = simulator
        self.clients = clients
        self.state_table = stack.resources["StateTable"]
        self.messages_table = stack.resources["MessagesTable"]

    # -- set-up ----------------------------------------------------------------------------

    def cursor(self, open_kfid: str) -> str | None:
        item = self.clients.dynamodb.get_item(TableName=self.state_table, ConsistentRead=True,
                                              Key={"pk": {"S": f"cursor#{open_kfid}"}, "sk": {"S": "cursor"}})
        found = item.get("Item", {}).get("cursor", {}).get("S")
        return found or None

    def prime(self, open_kfid: str) -> None:
        """Give the account a stored cursor: a warm-up customer enters (stored, never routed)."""
        self.sim.customer_enter(open_kfid, external_userid=f"wmwarmup{open_kfid[4:24]}", welcome=False)
        wait_for(lambda: self.cursor(open_kfid), timeout=20, message=f"a sync cursor for {open_kfid}")

    # -- customers ---------------------------------------------------------------------------

    def arrive(self, open_kfid: str, text: str = "hello", scene: str = "") -> str:
        """A new customer opens the chat (optionally from a scene) and, once the entry is routed
        (its scene remembered), writes."""
        euid, _ = self.sim.customer_enter(open_kfid, scene=scene)
        self.wait_decision(euid, rule="welcome")
        self.sim.customer_says(open_kfid, euid, text)
        return euid

    def state(self, open_kfid: str, euid: str) -> int:
        return int(self.sim.session(open_kfid, euid)["service_state"])

    def wait_state(self, open_kfid: str, euid: str, state: int, timeout: float = 15) -> dict[str, Any]:
        wait_for(lambda: self.state(open_kfid, euid) == state, timeout=timeout,
                 message=f"{euid} in state {state} (now {self.sim.session(open_kfid, euid)})")
        return self.sim.session(open_kfid, euid)

    def assigned(self, open_kfid: str, euid: str) -> str:
        """Wait until the customer is with a human; returns the servicer."""
        return str(self.wait_state(open_kfid, euid, HUMAN)["servicer_userid"])

    def arrive_and_assign(self, open_kfid: str, **kwargs: Any) -> tuple[str, str]:
        euid = self.arrive(open_kfid, **kwargs)
        return euid, self.assigned(open_kfid, euid)

    # -- what happened -----------------------------------------------------------------------

    def calls(self, path: str, open_kfid: str | None = None, euid: str | None = None) -> list[dict[str, Any]]:
        out = []
        for call in self.sim.calls_to(path):
            body = call.get("body") or {}
            if open_kfid is not None and body.get("open_kfid") != open_kfid:
                continue
            if euid is not None and euid not in (body.get("external_userid"), body.get("touser")):
                continue
            out.append(call)
        return out

    def transfers(self, open_kfid: str, euid: str, state: int | None = None, ok: bool = True) -> list[dict[str, Any]]:
        return [c for c in self.calls("kf/service_state/trans", open_kfid, euid)
                if (state is None or c["body"].get("service_state") == state) and (not ok or c["errcode"] == 0)]

    def sends(self, open_kfid: str, euid: str, via: str | None = None) -> list[dict[str, Any]]:
        return [s for s in self.sim.sent_messages(open_kfid, euid) if via is None or s["via"] == via]

    def decisions(self, euid: str | None = None, open_kfid: str | None = None) -> list[dict[str, Any]]:
        """The route function's structured decision lines (one per decision)."""
        out = []
        for line in list(self.stack.lines):
            if '"route decision"' not in line:
                continue
            # A log record is one write, but a concurrent print may have run into it on the line.
            start = line.find('{"level"')
            try:
                record, _ = DECODER.raw_decode(line, start)
            except ValueError:
                continue
            if euid is not None and record.get("external_userid") != euid:
                continue
            if open_kfid is not None and record.get("open_kfid") != open_kfid:
                continue
            out.append(record)
        return out

    def wait_decision(self, euid: str, count: int = 1, **match: str) -> list[dict[str, Any]]:
        def found() -> list[dict[str, Any]]:
            hits = [d for d in self.decisions(euid) if all(match[k] in str(d.get(k, "")) for k in match)]
            return hits if len(hits) >= count else []

        return wait_for(found, message=f"{count} decision(s) {match} for {euid}: {self.decisions(euid)}")

    def session_item(self, open_kfid: str, euid: str) -> dict[str, Any]:
        item = self.clients.dynamodb.get_item(TableName=self.state_table, ConsistentRead=True, Key={
            "pk": {"S": f"rsession#{open_kfid}#{euid}"}, "sk": {"S": "s"}}).get("Item", {})
        return item

    def stored_count(self, open_kfid: str) -> int:
        return len(self.clients.dynamodb.query(
            TableName=self.messages_table, IndexName="account", KeyConditionExpression="open_kfid = :o",
            FilterExpression="attribute_not_exists(sender)",  # WeCom's items, not Kefu's own sends
            ExpressionAttributeValues={":o": {"S": open_kfid}})["Items"])

    def route_queue_empty(self) -> bool:
        attrs = self.clients.sqs.get_queue_attributes(
            QueueUrl=self.stack.resources["RouteQueue"],
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        return attrs["ApproximateNumberOfMessages"] == "0" and attrs["ApproximateNumberOfMessagesNotVisible"] == "0"

    def forbidden_answers(self) -> list[tuple[str, int, dict[str, Any]]]:
        return [(c["path"], c["errcode"], c.get("body") or {}) for c in self.sim.calls if c.get("errcode") in FORBIDDEN]


# -- welcome -----------------------------------------------------------------------------------

def test_welcome_is_sent_with_the_customers_code_scene_text_first(env: Env) -> None:
    k = kfid("welcome")
    expected = {"vip": "welcome-vip", "promo": "welcome-account", "": "welcome-account"}
    for scene, text in expected.items():
        euid, code = env.sim.customer_enter(k, scene=scene)
        assert code, "the simulator gives a welcome_code to a new customer"
        sent = wait_for(lambda: env.sends(k, euid, via="send_msg_on_event"), message=f"welcome for scene {scene!r}")
        assert len(sent) == 1
        assert sent[0]["code"] == code and sent[0]["code_kind"] == "welcome"
        assert sent[0]["payload"] == {"content": text}
        # WeCom accepted it: the code was used once, while still alive (it lives 20 s).
        used = [c for c in env.sim.calls_to("kf/send_msg_on_event") if (c["body"] or {}).get("code") == code]
        assert [c["errcode"] for c in used] == [0]


# -- assignment strategies ---------------------------------------------------------------------

def test_round_robin_alternates_between_servicers(env: Env) -> None:
    k = kfid("roundrobin")
    order = [env.arrive_and_assign(k)[1] for _ in range(4)]
    assert set(order) == set(SERVICERS)
    assert all(a != b for a, b in zip(order, order[1:])), order


def test_least_busy_picks_the_least_loaded_servicer(env: Env) -> None:
    k = kfid("leastbusy")
    first = [env.arrive_and_assign(k) for _ in range(3)]
    # Every session goes to alice (servicers hand them over): alice 3, bob 0.
    for euid, servicer in first:
        if servicer != "alice":
            env.sim.transfer(k, euid, "alice")
            env.wait_decision(euid, rule="transferred", servicer="alice")
    # The next two customers both go to bob, the less loaded; a rotation would alternate.
    later = [env.arrive_and_assign(k)[1] for _ in range(2)]
    assert later == ["bob", "bob"]


def test_a_stopped_servicer_never_gets_a_session(env: Env) -> None:
    k = kfid("stopped")
    env.arrive_and_assign(k)  # the duty roster is known now, with both servicers receiving
    event = env.sim.set_servicer_status(k, "bob", receiving=False)
    wait_for(lambda: any(d.get("servicer") == "bob" and d.get("outcome") == "off duty"
                         for d in env.decisions(open_kfid=k)), message=f"the status change {event} routed")
    before = len(env.calls("kf/service_state/trans", k))
    order = [env.arrive_and_assign(k)[1] for _ in range(4)]
    assert order == ["alice"] * 4
    # Not even tried: a transfer to a stopped servicer is refused (95014).
    assert not [c for c in env.calls("kf/service_state/trans", k)[before:] if c["body"].get("servicer_userid") == "bob"]


def test_scene_allow_list_wins_over_the_accounts(env: Env) -> None:
    k = kfid("scene")
    vip = [env.arrive_and_assign(k, scene="vip")[1] for _ in range(2)]
    plain = [env.arrive_and_assign(k)[1] for _ in range(2)]
    assert vip == ["bob", "bob"]
    assert plain == ["alice", "alice"]


def test_sticky_returns_a_customer_to_the_last_servicer(env: Env) -> None:
    k = kfid("sticky")
    euid, first = env.arrive_and_assign(k)
    env.sim.end_session(k, euid, first)
    env.wait_state(k, euid, 4)
    env.wait_decision(euid, rule="session ended")
    env.sim.customer_says(k, euid, "me again")
    wait_for(lambda: len(env.transfers(k, euid, HUMAN)) == 2, message="the returning customer assigned")
    # The rotation alone would give the other servicer (round robin alternates).
    assert env.assigned(k, euid) == first


# -- capacity and the pool ---------------------------------------------------------------------

def test_capacity_full_pools_the_third_customer_and_a_session_ending_hands_it_over(env: Env) -> None:
    k = kfid("capacity")
    a, servicer_a = env.arrive_and_assign(k)
    b, servicer_b = env.arrive_and_assign(k)
    assert {servicer_a, servicer_b} == set(SERVICERS)
    c = env.arrive(k)
    env.wait_state(k, c, POOL)
    assert not env.transfers(k, c, HUMAN)
    env.sim.end_session(k, a, servicer_a)
    assert env.assigned(k, c) == servicer_a
    # the simulator records a call just after applying it: wait for the record, not only the effect
    wait_for(lambda: len(env.transfers(k, c, HUMAN)) == 1, message="one transfer of the pooled customer")


# -- working hours -----------------------------------------------------------------------------

def test_off_hours_replies_once_per_session_and_assigns_nobody(env: Env) -> None:
    k = kfid("offhours")
    euid = env.arrive(k, text="hello?")
    env.wait_state(k, euid, POOL)
    env.sim.customer_says(k, euid, "anyone there?")
    env.wait_decision(euid, count=2, outcome="pool")
    replies = env.sends(k, euid, via="send_msg")
    assert [r["payload"] for r in replies] == [{"content": "off-hours-reply"}]
    assert replies[0]["state"] in (0, 1)  # sent before the session went to the pool
    assert env.state(k, euid) == POOL
    assert not env.transfers(k, euid, HUMAN)
    # The next session (picked up, ended, the customer writes again) gets its own reply.
    env.sim.pickup(k, euid, "alice")
    env.wait_decision(euid, rule="picked from pool")
    env.sim.end_session(k, euid, "alice")
    env.wait_decision(euid, rule="session ended")
    env.sim.customer_says(k, euid, "hello again")
    wait_for(lambda: len(env.sends(k, euid, via="send_msg")) == 2, message="the second session's reply")
    env.wait_state(k, euid, POOL)
    assert len(env.transfers(k, euid, HUMAN)) == 0


# -- the bot -----------------------------------------------------------------------------------

def test_bot_keyword_reply_keeps_the_session_with_the_bot(env: Env) -> None:
    k = kfid("bothandoff")
    euid = env.arrive(k, text="What is the PRICE?")
    sent = wait_for(lambda: env.sends(k, euid, via="send_msg"), message="the bot's reply")
    assert [s["payload"] for s in sent] == [{"content": "bot-price-reply"}]
    env.wait_decision(euid, outcome="sent")
    assert env.state(k, euid) == 1
    assert not env.transfers(k, euid)
    # A hand-off keyword (any case) takes it from the bot to a human.
    env.sim.customer_says(k, euid, "I want a Human please")
    assert env.assigned(k, euid) in SERVICERS
    # the simulator records a call just after applying it: wait for the record, not only the effect
    wait_for(lambda: len(env.transfers(k, euid, HUMAN)) == 1, message="one transfer to a human")
    assert len(env.sends(k, euid)) == 1


def test_unmatched_message_hands_off_or_is_ignored_per_account(env: Env) -> None:
    handoff, ignore = kfid("bothandoff"), kfid("botignore")
    euid, servicer = env.arrive_and_assign(handoff, text="something else entirely")
    assert servicer in SERVICERS
    assert not env.sends(handoff, euid)
    quiet = env.arrive(ignore, text="something else entirely")
    env.wait_decision(quiet, rule="bot unmatched", outcome="ignored")
    wait_for(env.route_queue_empty, message="nothing left to route")
    assert env.state(ignore, quiet) == 0
    assert not env.transfers(ignore, quiet) and not env.sends(ignore, quiet)
    # The same account does answer a keyword: the silence above was the policy.
    env.sim.customer_says(ignore, quiet, "price?")
    wait_for(lambda: env.sends(ignore, quiet, via="send_msg"), message="the bot's reply")


# -- replay ------------------------------------------------------------------------------------

def add_history(env: Env, open_kfid: str, euid: str, texts: list[str], at: float) -> list[str]:
    """A customer's visit long before the deploy: entry and messages, as the first pull replays them."""
    env.sim.add_customer(euid)
    msgids = [env.sim.add_raw_item(open_kfid, {"origin": 4, "msgtype": "event", "event": {
        "event_type": "enter_session", "open_kfid": open_kfid, "external_userid": euid, "scene": "",
        "welcome_code": "long-dead-welcome-code"}}, send_time=at)]
    for i, text in enumerate(texts, 1):
        msgids.append(env.sim.add_raw_item(open_kfid, {"open_kfid": open_kfid, "external_userid": euid, "origin": 3,
                                                       "msgtype": "text", "text": {"content": text}}, send_time=at + i))
    return msgids


def assert_untouched(env: Env, open_kfid: str, euid: str) -> None:
    assert not env.sends(open_kfid, euid), "history was answered"
    assert not env.calls("kf/service_state/trans", open_kfid, euid), "history was routed"
    assert not [d for d in env.decisions(euid) if d.get("outcome") != "skipped"], env.decisions(euid)


def test_a_customer_who_writes_after_the_first_deploy_is_served_and_the_history_is_not(env: Env) -> None:
    """Rule 9: the first pull replays two days of history (stored, acted on by nobody), and the
    customer who came after the deploy is welcomed and assigned by the same pull."""
    k = kfid("replayfirst")
    assert env.cursor(k) is None
    env.sim.configure(auto_callback=False)
    try:
        history = add_history(env, k, "wmhistoryfirst0000000000001", ["human please, I have waited"],
                              env.sim.now() - 47 * 3600)  # inside the session window: only rule 9 holds it back
        live, code = env.sim.customer_enter(k, welcome=True)  # 30 s after the deploy, say
        assert code
    finally:
        env.sim.configure(auto_callback=True)
    env.sim.fire_callback(k)
    wait_for(lambda: env.sends(k, live, via="send_msg_on_event"), message="the live customer's welcome")
    env.sim.customer_says(k, live, "hello, anyone there?")
    assert env.assigned(k, live) in SERVICERS
    wait_for(lambda: env.stored_count(k) >= len(history) + 2, message="the history stored")
    wait_for(env.route_queue_empty, message="nothing left to route")
    assert_untouched(env, k, "wmhistoryfirst0000000000001")


def test_a_catch_up_killed_after_its_first_page_is_resumed_as_a_catch_up(env: Env) -> None:
    k = kfid("replaykill")
    old = "wmhistorykill00000000000001"
    env.sim.configure(auto_callback=False, page_cap=2)
    try:
        add_history(env, k, old, ["hello?", "human please", "is anyone there", "human!!"], env.sim.now() - 47 * 3600)
        # The pull dies after its first page (every in-process retry of page 2 fails): the sync
        # job comes back after its visibility timeout and pulls on from the stored cursor.
        env.sim.inject_fault("kf/sync_msg", http_status=503, times=4, after=1)
        env.sim.fire_callback(k)
        wait_for(lambda: env.sim.pending_faults("kf/sync_msg") == 0 and env.cursor(k), timeout=30,
                 message="the first page stored and the second page's pull failed")
        wait_for(lambda: env.stored_count(k) == 5, timeout=40, message="the catch-up resumed and finished")
    finally:
        env.sim.configure(auto_callback=True, page_cap=None)
        env.sim.clear_faults()
    later, _ = env.sim.customer_enter(k)  # routed: the barrier for anything the history left queued
    wait_for(lambda: env.sends(k, later, via="send_msg_on_event"), message="the later customer's welcome")
    wait_for(env.route_queue_empty, message="nothing left to route")
    assert_untouched(env, k, old)


def test_an_item_older_than_48h_triggers_nothing_but_a_late_one_is_routed(env: Env) -> None:
    k = kfid("replayold")
    now = env.sim.now()
    old_customer, _ = env.sim.customer_enter(k)
    env.sim.add_raw_item(k, {"open_kfid": k, "external_userid": old_customer, "origin": 3, "msgtype": "text",
                             "text": {"content": "human please"}}, send_time=now - 49 * 3600)
    # The customer's next message travels in the same queue group, after the old item if it
    # had been handed on: once it is routed (an ignored unmatched text), the old one would be too.
    env.sim.customer_says(k, old_customer, "just looking")
    env.wait_decision(old_customer, rule="bot unmatched", outcome="ignored")
    wait_for(env.route_queue_empty, message="nothing left to route")
    assert not env.calls("kf/service_state/trans", k, old_customer)
    assert not env.sends(k, old_customer, via="send_msg")
    # Delivered late (2 h) but inside the session window: routed, the customer is waiting.
    late_customer, _ = env.sim.customer_enter(k)
    env.sim.add_raw_item(k, {"open_kfid": k, "external_userid": late_customer, "origin": 3, "msgtype": "text",
                             "text": {"content": "human please"}}, send_time=now - 2 * 3600)
    assert env.assigned(k, late_customer) in SERVICERS


# -- repeats -----------------------------------------------------------------------------------

def test_a_copy_handed_on_after_the_deduplication_window_changes_nothing(env: Env) -> None:
    """The sync hands a re-pulled page on again; SQS drops the copies only for five minutes. A
    copy of a customer's message arriving after their session ended must not try to assign the
    ended session again (WeCom refuses 4 -> 3 with 95016, and the record would poison the queue)."""
    k = kfid("repeat")
    euid, servicer = env.arrive_and_assign(k)
    env.sim.end_session(k, euid, servicer)
    env.wait_decision(euid, rule="session ended")
    transfers = len(env.transfers(k, euid, ok=False))
    message = next(m for m in env.sim.messages(k) if m.get("origin") == 3 and m.get("external_userid") == euid)
    body = json.dumps({"open_kfid": k, "external_userid": euid, "items": [{"msgid": message["msgid"], "item": message}]})
    env.clients.sqs.send_message(QueueUrl=env.stack.resources["RouteQueue"], MessageBody=body,
                                 MessageGroupId=f"{k}#{euid}", MessageDeduplicationId=message["msgid"] + "-later")
    env.wait_decision(euid, rule="repeat", outcome="skipped")
    wait_for(env.route_queue_empty, message="the copy settled")
    assert len(env.transfers(k, euid, ok=False)) == transfers
    assert env.sim.session(k, euid)["service_state"] == 4


# -- session end -------------------------------------------------------------------------------

def test_closing_menu_after_the_session_ends_and_a_click_is_stored_as_the_rating(env: Env) -> None:
    k = kfid("closing")
    euid, servicer = env.arrive_and_assign(k)
    env.sim.end_session(k, euid, servicer)
    menu = wait_for(lambda: env.sends(k, euid, via="send_msg_on_event"), message="the closing menu")
    assert len(menu) == 1 and menu[0]["code_kind"] == "end" and menu[0]["msgtype"] == "msgmenu"
    assert menu[0]["payload"]["head_content"] == "rate us"
    assert [i["click"]["id"] for i in menu[0]["payload"]["list"]] == ["rate_good", "rate_ok", "rate_bad"]
    env.sim.customer_says(k, euid, "good", menu_id="rate_good")
    item = wait_for(lambda: "rating" in env.session_item(k, euid) and env.session_item(k, euid),
                    message="the rating stored")
    assert item["rating"] == {"N": "5"}
    assert item["rating_item"] == {"S": "rate_good"}
    # The click is a rating, not a new conversation: nobody is assigned and nothing is sent.
    # the simulator records a call just after applying it: wait for the record, not only the effect
    wait_for(lambda: len(env.transfers(k, euid, HUMAN)) == 1, message="one transfer to a human")
    assert len(env.sends(k, euid)) == 1


# -- concurrency -------------------------------------------------------------------------------

@contextmanager
def lined_up(sim, path: str, parties: int, timeout: float = 3.0) -> Iterator[list[int]]:
    """Hold the simulator's answers to ``path`` until ``parties`` calls wait (or ``timeout``
    passes), then answer them all at once: the callers go on in step, as in a real rush."""
    condition = threading.Condition()
    seen, opened = [0], [False]
    original = sim._handle_api

    def gated(method: str, api: str, query: dict[str, str], raw: bytes) -> Any:
        if api == path and not opened[0]:
            with condition:
                seen[0] += 1
                if seen[0] < parties:
                    condition.wait_for(lambda: opened[0], timeout=timeout)
                opened[0] = True
                condition.notify_all()
        return original(method, api, query, raw)

    sim._handle_api = gated
    try:
        yield seen
    finally:
        del sim._handle_api  # back to the class's method


def test_twenty_customers_at_once_never_overfill_a_servicer(env: Env) -> None:
    """least_busy is the hard case: route records deciding at the same moment all see the same
    least loaded servicer; only the conditional load counts keep each servicer at 5."""
    k = kfid("crowd")
    together = 16  # more than the 10 places: without conditional counts they would all get one
    env.sim.configure(auto_callback=False, page_cap=2)  # one customer per page: records reach many pollers
    try:
        customers = []
        for _ in range(20):
            euid, _ = env.sim.customer_enter(k, welcome=False)
            env.sim.customer_says(k, euid, "hello, I need help")
            customers.append(euid)
        # Every record first asks WeCom for the session state: line those calls up so that the
        # route records go on to choose a servicer together.
        # Wait as long as it takes for them to line up (a slow machine brings them slowly; 20
        # pollers and 20 new customers, so 16 always arrive): the test must not measure speed.
        with lined_up(env.sim, "kf/service_state/get", parties=together, timeout=60) as seen:
            env.sim.fire_callback(k)
            wait_for(lambda: all(env.state(k, e) in (HUMAN, POOL) for e in customers), timeout=90,
                     message="every customer assigned or pooled")
        assert seen[0] >= together  # they did run side by side
    finally:
        env.sim.configure(auto_callback=True, page_cap=None)
    wait_for(env.route_queue_empty, timeout=20, message="the route queue drained")
    states = Counter(env.state(k, e) for e in customers)
    assert states == {HUMAN: 10, POOL: 10}
    per_servicer = Counter(env.sim.session(k, e)["servicer_userid"] for e in customers if env.state(k, e) == HUMAN)
    assert per_servicer == {"alice": 5, "bob": 5}
    for euid in customers:
        assert len(env.transfers(k, euid, HUMAN)) <= 1, env.transfers(k, euid, ok=False)
        assert len(env.transfers(k, euid, POOL)) <= 1, env.transfers(k, euid, ok=False)
        assert not env.sends(k, euid)
    duplicates = [c for c in env.calls("kf/send_msg", k) + env.sim.calls_to("kf/send_msg_on_event")
                  if c["errcode"] == 40058]
    assert not duplicates
    # Every customer's message was decided, and the stored load counts agree with WeCom's sessions.
    decided = {d["external_userid"] for d in env.decisions(open_kfid=k) if d.get("rule") != "welcome"}
    assert decided == set(customers)
    loads = env.clients.dynamodb.query(TableName=env.state_table, ConsistentRead=True,
                                       KeyConditionExpression="pk = :p",
                                       ExpressionAttributeValues={":p": {"S": f"rload#{k}"}})["Items"]
    assert {i["sk"]["S"]: int(i["active"]["N"]) for i in loads} == {"alice": 5, "bob": 5}


# -- across the module ---------------------------------------------------------------------------

def test_no_route_record_failed_and_wecom_refused_nothing(env: Env) -> None:
    wait_for(env.route_queue_empty, timeout=60, message="the route queue drained")
    assert not env.forbidden_answers()
    failed = [line for line in env.stack.lines if "-> RouteFunction:" in line and ": ok (" not in line]
    assert not failed, failed
    dlq = env.clients.sqs.get_queue_attributes(QueueUrl=env.stack.resources["RouteDeadLetterQueue"],
                                               AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
    assert dlq["ApproximateNumberOfMessages"] == "0"


def test_a_failed_reply_is_sent_before_the_customers_next_message_is_routed(env: Env) -> None:
    """A record that fails (its reply refused as not run, more times than the client retries)
    holds up its customer's later records, as an SQS FIFO group does: the retried record sends
    the reply with the same msgid, and only then is the hand-off that followed it routed."""
    k = kfid("bothandoff")
    euid, _ = env.sim.customer_enter(k)
    env.wait_decision(euid, rule="welcome")
    env.sim.inject_fault("kf/send_msg", errcode=45033, times=4)  # every attempt of one record
    env.sim.customer_says(k, euid, "价格")
    env.sim.customer_says(k, euid, "人工")  # queued behind the failed record, in the same group
    assert env.assigned(k, euid) in SERVICERS
    calls = [c for c in env.sim.calls if (c.get("body") or {}).get("touser") == euid
             or (c.get("body") or {}).get("external_userid") == euid]
    sends = [n for n, c in enumerate(calls) if c["path"] == "kf/send_msg" and c.get("errcode") == 0]
    transfer = next(n for n, c in enumerate(calls) if c["path"] == "kf/service_state/trans"
                    and c["body"].get("service_state") == HUMAN and c.get("errcode") == 0)
    assert sends and sends[0] < transfer, [(c["path"], c.get("errcode")) for c in calls]
    assert len({c["body"]["msgid"] for c in calls if c["path"] == "kf/send_msg"}) == 1  # one msgid throughout
