"""The route function's pure decisions: bot keywords, who is eligible, the order servicers are
tried in, sticky memory, closing messages, ratings and our send msgids."""

from __future__ import annotations

import re

import pytest

from kefu.routing import decide, outbound
from kefu.routing.rules import Bot, BotReply, Closing, MenuItem, Policy, Satisfaction
from kefu.routing.session import Session

BOT = Bot(replies=[BotReply(keywords=["price", "价格"], text="price-text"),
                   BotReply(keywords=["Straße"], text="street-text")],
          handoff_keywords=["human", "人工"])
NOW = 1_800_000_000


# -- bot keywords ----------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["price?", "What is the PRICE", "PrIcE list", "请问价格多少"])
def test_a_reply_keyword_matches_inside_the_message_ignoring_latin_case(text: str) -> None:
    decision = decide.match_bot(BOT, text)
    assert decision.outcome == "reply" and decision.reply is not None and decision.reply.reply == outbound.text("price-text")


def test_case_folding_goes_beyond_ascii_for_latin_letters() -> None:
    assert decide.match_bot(BOT, "STRASSE 1").outcome == "reply"
    assert decide.match_bot(BOT, "straße").reply == BOT.replies[1]


@pytest.mark.parametrize("text", ["HUMAN please", "I want a Human", "转人工"])
def test_a_handoff_keyword_hands_off(text: str) -> None:
    assert decide.match_bot(BOT, text).outcome == "handoff"


def test_handoff_wins_over_a_reply_and_the_keyword_is_reported() -> None:
    decision = decide.match_bot(BOT, "price? no, a human")
    assert (decision.outcome, decision.keyword) == ("handoff", "human")


@pytest.mark.parametrize("text", [None, "", "hello", "pri ce", "人 工"])
def test_no_keyword_or_no_text_is_unmatched(text: str | None) -> None:
    assert decide.match_bot(BOT, text).outcome == "unmatched"


# -- who may get the session -----------------------------------------------------------------

def test_eligible_servicers_are_on_duty_allowed_and_under_capacity_in_a_stable_order() -> None:
    roster = {"carol": True, "alice": True, "bob": False, "dave": True}
    loads = {"dave": 3, "alice": 2}
    assert decide.eligible_servicers(Policy(max_active_per_servicer=3), roster, loads) == ["alice", "carol"]
    assert decide.eligible_servicers(Policy(max_active_per_servicer=4), roster, loads) == ["alice", "carol", "dave"]
    allowed = Policy(servicers=["bob", "carol", "erin"])  # bob is off duty, erin not a servicer
    assert decide.eligible_servicers(allowed, roster, loads) == ["carol"]
    assert decide.eligible_servicers(Policy(), {}, {}) == []


def test_round_robin_rotates_the_start() -> None:
    eligible = ["alice", "bob", "carol"]
    orders = [decide.order_candidates(eligible, {}, "round_robin", n) for n in range(4)]
    assert [o[0] for o in orders] == ["alice", "bob", "carol", "alice"]
    assert orders[1] == ["bob", "carol", "alice"]  # the others stay as fallbacks


def test_least_busy_orders_by_load_with_ties_broken_by_the_rotation() -> None:
    eligible = ["alice", "bob", "carol"]
    loads = {"alice": 2, "bob": 0, "carol": 0}
    assert decide.order_candidates(eligible, loads, "least_busy", 0) == ["bob", "carol", "alice"]
    assert decide.order_candidates(eligible, loads, "least_busy", 2) == ["carol", "bob", "alice"]
    assert decide.order_candidates(eligible, {"alice": 1}, "least_busy", 0) == ["bob", "carol", "alice"]


def test_the_sticky_servicer_comes_first_when_eligible() -> None:
    eligible = ["alice", "bob", "carol"]
    assert decide.order_candidates(eligible, {"carol": 5}, "least_busy", 0, sticky="carol")[0] == "carol"
    assert decide.order_candidates(eligible, {}, "round_robin", 0, sticky="bob") == ["bob", "alice", "carol"]
    # Not eligible (off duty, full, not allowed): the strategy decides as if there were none.
    assert decide.order_candidates(eligible, {}, "round_robin", 0, sticky="dave") == eligible
    assert decide.order_candidates([], {}, "round_robin", 3, sticky="alice") == []


def test_sticky_memory_lasts_sticky_hours() -> None:
    session = Session(last_servicer="alice", last_served_at=int(NOW - 3600))
    assert decide.sticky_servicer(session, Policy(sticky_hours=2), NOW) == "alice"
    assert decide.sticky_servicer(session, Policy(sticky_hours=0.5), NOW) is None
    assert decide.sticky_servicer(session, Policy(sticky_hours=0), NOW) is None  # off
    assert decide.sticky_servicer(Session(), Policy(sticky_hours=72), NOW) is None


# -- session end -----------------------------------------------------------------------------

SATISFACTION = Closing(satisfaction=Satisfaction(
    head="rate us", tail="thanks",
    items=[MenuItem(id="good", content="Good", score=5), MenuItem(id="ok", content="OK"),
           MenuItem(id="bad", content="Bad", score=1)]))


def test_rating_for_a_click_is_its_score_else_its_position() -> None:
    assert decide.rating_for(SATISFACTION, "good") == 5
    assert decide.rating_for(SATISFACTION, "ok") == 2
    assert decide.rating_for(SATISFACTION, "bad") == 1
    assert decide.rating_for(SATISFACTION, "other") is None
    assert decide.rating_for(Closing(text="bye"), "good") is None
    assert decide.rating_for(None, "good") is None


def test_closing_message_is_a_menu_of_clicks_or_a_text() -> None:
    menu = decide.closing_message(SATISFACTION)
    assert menu is not None and menu.payload() == {"msgtype": "msgmenu", "msgmenu": {
        "head_content": "rate us", "tail_content": "thanks",
        "list": [{"type": "click", "click": {"id": "good", "content": "Good"}},
                 {"type": "click", "click": {"id": "ok", "content": "OK"}},
                 {"type": "click", "click": {"id": "bad", "content": "Bad"}}]}}
    assert decide.closing_message(Closing(text="bye")) == outbound.text("bye")
    assert decide.closing_message(Closing()) is None
    assert decide.closing_message(None) is None


# -- our msgids --------------------------------------------------------------------------------

MSGID = re.compile(r"[0-9a-zA-Z_-]{1,32}")


@pytest.mark.parametrize("trigger", ["m1", "x" * 200, "消息-1", "from_msgid_4622416642169452483", ""])
def test_send_id_fits_wecom_msgid_rules_and_is_stable(trigger: str) -> None:
    for purpose in ("welcome", "bot", "off-hours", "queue", "closing"):
        value = decide.send_id(trigger, purpose)
        assert MSGID.fullmatch(value) and len(value.encode()) <= 32
        assert value == decide.send_id(trigger, purpose)  # the same on every retry


def test_send_id_differs_per_trigger_and_purpose() -> None:
    ids = {decide.send_id(t, p) for t in ("m1", "m2") for p in ("bot", "off-hours")}
    assert len(ids) == 4


def test_routed_recognises_a_repeat_and_remembers_only_the_last_few() -> None:
    from kefu.routing.decide import ROUTED_KEEP, Routed

    routed = Routed()
    assert not routed.has_seen("m0")
    routed = routed.after("m0").after("m0")
    assert routed.has_seen("m0") and len(routed.tags) == 1
    for n in range(1, ROUTED_KEEP + 1):
        routed = routed.after(f"m{n}")
    assert len(routed.tags) == ROUTED_KEEP
    assert not routed.has_seen("m0") and routed.has_seen(f"m{ROUTED_KEEP}")
    assert all(len(tag) == 10 for tag in routed.tags)  # short tags keep the session item small


def test_a_session_item_reads_as_a_typed_session() -> None:
    from decimal import Decimal

    from kefu.wecom.models import ServiceState

    item = {"state": Decimal(3), "servicer": "alice", "counted": "alice", "scene": "", "sends": Decimal(2),
            "session_started": Decimal(1700000000), "routed": ["a1", "b2"], "unknown_field": "kept out"}
    session = Session.from_item(item)
    assert session.state is ServiceState.HUMAN and session.servicer == "alice" and session.scene is None
    assert session.sends == 2 and session.routed == ("a1", "b2") and session.name == "1700000000"
    assert Session.from_item(None) == Session() and Session.from_item({"state": Decimal(9)}).state is None
    moved = session.with_fields({"state": 4, "session_id": "m1", "not_a_field": 1})
    assert moved.state is ServiceState.ENDED and moved.name == "m1" and session.state is ServiceState.HUMAN
