"""The routing engine in process, on in-memory ports (tests/unit/fakes.py) and a fake clock: the
paths the integration tests reach only by luck - reservation recovery, transfer reconciliation,
repeats, the closing race, the send budget under retries, the pool drain - in milliseconds."""

from __future__ import annotations

from typing import Any

import pytest

from kefu.routing.assigner import EngineSettings
from kefu.routing.engine import RoutingEngine
from kefu.routing.outcome import Decision, Outcome
from kefu.routing.rules import parse_rules
from kefu.wecom.errors import WeComError
from kefu.wecom.models import parse_item
from tests.unit.fakes import Clock, FakeState, FakeTranscript, FakeWeCom

K = "wkENGINE".ljust(32, "0")
RULES = parse_rules("""
timezone: Asia/Shanghai
accounts:
  "*":
    strategy: round_robin
    max_active_per_servicer: 1
    welcome: "hi"
    queue_notice: "please wait"
    bot:
      replies: [{keywords: ["price"], text: "see the site"}]
      handoff_keywords: ["human"]
      unmatched: handoff
    closing: {text: "thanks"}
""")


class World:
    def __init__(self, servicers: dict[str, bool] | None = None) -> None:
        self.clock = Clock()
        self.wecom = FakeWeCom(servicers={K: dict(servicers if servicers is not None else {"alice": True})})
        self.state = FakeState()
        self.decisions: list[Decision] = []
        self.transcript = FakeTranscript()
        self.engine = RoutingEngine(self.wecom, self.state, lambda: RULES, EngineSettings(trans_backoff=0),
                                    self.decisions.append, self.transcript, clock=self.clock, sleep=lambda _s: None)
        self.n = 0

    def item(self, euid: str, **fields: Any) -> dict[str, Any]:
        self.n += 1
        base = {"msgid": f"m{self.n}", "open_kfid": K, "external_userid": euid, "send_time": int(self.clock.now)}
        return {**base, **fields}

    def says(self, euid: str, text: str) -> dict[str, Any]:
        raw = self.item(euid, origin=3, msgtype="text", text={"content": text})
        self.engine.handle(parse_item(raw))
        return raw

    def event(self, euid: str, **event: Any) -> dict[str, Any]:
        raw = self.item(euid, origin=4, msgtype="event",
                        event={"open_kfid": K, "external_userid": euid, **event})
        self.engine.handle(parse_item(raw))
        return raw

    def outcomes(self, euid: str) -> list[tuple[str, Outcome]]:
        return [(d.rule, d.outcome) for d in self.decisions if d.external_userid == euid]


def test_a_hand_off_assigns_and_counts_once() -> None:
    w = World()
    w.says("c1", "human please")
    assert w.wecom.states[(K, "c1")] == (3, "alice")
    assert w.state.loads.get(K) == {"alice": 1}
    assert w.outcomes("c1")[-1] == ("hand-off keyword 'human' (round_robin)", Outcome.ASSIGNED)


def test_a_reservation_left_by_a_dead_attempt_is_finished_not_taken_again() -> None:
    w = World()
    w.state.sessions.update(K, "c1", {"state": 1})
    assert w.state.loads.reserve(K, "c1", "alice", 1) == "ok"  # the attempt died before its transfer
    w.says("c1", "human")
    assert w.wecom.states[(K, "c1")] == (3, "alice")
    assert w.state.loads.get(K) == {"alice": 1}  # alice looked full, but the place was this session's
    assert w.outcomes("c1")[-1] == ("hand-off keyword 'human' (reserved)", Outcome.ASSIGNED)


def test_a_transfer_that_went_through_before_its_error_is_not_undone() -> None:
    w = World()
    w.wecom.fail("kf/service_state/trans", WeComError("kf/service_state/trans", None, "HTTP 502", 502), executed=True)
    w.says("c1", "human")
    assert w.wecom.states[(K, "c1")] == (3, "alice") and w.state.loads.get(K) == {"alice": 1}
    assert w.wecom.paths().count("kf/service_state/trans") == 1  # settled by service_state/get, not repeated


def test_a_transfer_that_did_not_happen_is_tried_again() -> None:
    w = World()
    w.wecom.fail("kf/service_state/trans", WeComError("kf/service_state/trans", None, "HTTP 502", 502))
    w.says("c1", "human")
    assert w.wecom.states[(K, "c1")] == (3, "alice") and w.state.loads.get(K) == {"alice": 1}
    assert w.wecom.paths().count("kf/service_state/trans") == 2


def test_a_refused_servicer_gives_the_capacity_back_and_leaves_the_roster() -> None:
    w = World({"alice": True})
    w.engine.assigner.roster(K)  # the roster is cached as on duty...
    w.wecom.servicers[K]["alice"] = False  # ...but alice stopped receiving meanwhile
    w.says("c1", "human")
    assert w.state.loads.get(K) == {"alice": 0}
    assert w.state.rosters.get(K)[0] == {"alice": False}
    assert w.wecom.states[(K, "c1")][0] == 2  # pooled instead


def test_a_repeated_item_changes_nothing() -> None:
    w = World()
    raw = w.says("c1", "human")
    w.event("c1", event_type="session_status_change", change_type=3, old_servicer_userid="alice", msg_code="end1")
    calls = len(w.wecom.calls)
    w.engine.handle(parse_item(raw))  # handed on again after SQS forgot its deduplication id
    assert len(w.wecom.calls) == calls
    assert w.decisions[-1].rule == "repeat" and w.decisions[-1].outcome == Outcome.SKIPPED


def test_the_closing_is_not_sent_into_a_session_the_customer_reopened() -> None:
    w = World()
    w.says("c1", "human")
    w.wecom.states[(K, "c1")] = (1, None)  # ended, and the customer wrote again before Kefu saw the end
    w.event("c1", event_type="session_status_change", change_type=3, old_servicer_userid="alice", msg_code="end1")
    assert not [s for s in w.wecom.sent if s["path"] == "kf/send_msg_on_event"]
    ended = [d for d in w.decisions if d.rule == "session ended"][-1]
    assert ended.outcome == Outcome.ENDED and "newer session" in (ended.detail or "")
    assert w.state.loads.get(K) == {"alice": 0} and w.state.sessions.get(K, "c1").state == 1


def test_a_late_end_of_an_earlier_session_leaves_the_newer_one_and_its_place_alone() -> None:
    w = World()
    w.says("c1", "human")  # session 1, with alice
    w.wecom.states[(K, "c1")] = (3, "alice")  # ...ended, and session 2 went to alice again before the end arrived
    w.event("c1", event_type="session_status_change", change_type=3, old_servicer_userid="alice", msg_code="end1")
    session = w.state.sessions.get(K, "c1")
    assert (session.state, session.counted) == (3, "alice") and w.state.loads.get(K) == {"alice": 1}


def test_a_retried_bot_reply_spends_one_unit_of_the_budget() -> None:
    w = World()
    w.wecom.fail("kf/send_msg", WeComError("kf/send_msg", None, "timed out"))  # unclear: the record fails
    raw = w.item("c1", origin=3, msgtype="text", text={"content": "price?"})
    with pytest.raises(WeComError):
        w.engine.handle(parse_item(raw))
    w.engine.handle(parse_item(raw))  # the queue's retry
    assert len(w.wecom.sent) == 1 and w.state.sessions.items[(K, "c1")]["sends"] == 1


def test_a_refused_welcome_code_is_reported_and_not_repeated() -> None:
    w = World()
    w.wecom.fail("kf/send_msg_on_event", WeComError("kf/send_msg_on_event", 40058, "invalid code"))
    w.event("c1", event_type="enter_session", scene="", welcome_code="w1")
    assert w.outcomes("c1")[-1] == ("welcome", Outcome.FAILED)
    assert w.decisions[-1].detail == "errcode 40058"
    assert w.wecom.paths().count("kf/send_msg_on_event") == 1  # a code works once: never tried again


def test_the_pool_drains_longest_waiting_first_and_skips_stale_entries() -> None:
    w = World({"alice": False})
    w.says("c1", "human")
    w.clock.now += 1
    w.says("c2", "human")
    assert [e.external_userid for e in w.state.pool.oldest(K)] == ["c1", "c2"]
    w.state.sessions.update(K, "c1", {"state": 4})  # c1's session ended without Kefu seeing a pool event
    w.wecom.servicers[K]["alice"] = True
    w.event("x", event_type="servicer_status_change", servicer_userid="alice", status=1)
    w.state.rosters.set_servicer(K, "alice", True)
    w.engine.assigner.drain_pool(K)
    assert w.wecom.states[(K, "c2")] == (3, "alice")
    assert w.state.pool.oldest(K) == []


def test_a_late_message_of_a_customer_with_a_human_is_held() -> None:
    w = World()
    w.says("c1", "human")
    w.says("c1", "are you there?")
    assert w.outcomes("c1")[-1] == ("held", Outcome.HUMAN)
    assert w.wecom.paths().count("kf/service_state/trans") == 1


def test_a_message_whose_session_ended_at_wecom_meanwhile_settles_instead_of_failing() -> None:
    w = World({"alice": False})
    w.says("c1", "hello")  # pooled: nobody on duty
    w.wecom.states[(K, "c1")] = (4, None)  # ended at WeCom; the event saying so is still queued
    w.state.sessions.update(K, "c1", {"state": 1})  # Kefu's cache: still with the bot
    w.wecom.servicers[K]["alice"] = True
    w.engine.assigner.roster(K)
    w.state.rosters.save(K, {"alice": True}, w.clock.now)
    w.says("c1", "human please")  # the record must settle, not fail until the dead-letter queue
    assert w.decisions[-1].outcome == Outcome.SKIPPED and "state 4 at WeCom" in (w.decisions[-1].detail or "")
    assert w.state.sessions.get(K, "c1").state == 4 and w.state.loads.get(K) == {"alice": 0}


def test_a_pool_entry_whose_session_ended_at_wecom_does_not_stop_the_drain() -> None:
    w = World({"alice": False})
    w.says("c1", "human")
    w.clock.now += 1
    w.says("c2", "human")
    w.wecom.states[(K, "c1")] = (4, None)  # ended at WeCom, cache still says pool
    w.wecom.servicers[K]["alice"] = True
    w.state.rosters.save(K, {"alice": True}, w.clock.now)
    w.engine.assigner.drain_pool(K)
    assert w.wecom.states[(K, "c2")] == (3, "alice")
    assert w.state.pool.oldest(K) == [] and w.state.loads.get(K) == {"alice": 1}


def test_a_message_written_before_its_session_ended_routes_nothing() -> None:
    w = World()
    w.says("c1", "human")
    w.event("c1", event_type="session_status_change", change_type=3, old_servicer_userid="alice", msg_code="end1")
    w.wecom.states[(K, "c1")] = (4, None)  # WeCom: still ended, so this message predates the end
    calls = w.wecom.paths().count("kf/service_state/trans") + w.wecom.paths().count("kf/send_msg")
    w.says("c1", "price?")
    assert w.outcomes("c1")[-1] == ("message of an ended session", Outcome.SKIPPED)
    assert w.wecom.paths().count("kf/service_state/trans") + w.wecom.paths().count("kf/send_msg") == calls


def test_a_message_after_the_end_opens_a_new_session() -> None:
    w = World()
    w.says("c1", "human")
    w.event("c1", event_type="session_status_change", change_type=3, old_servicer_userid="alice", msg_code="end1")
    w.wecom.states[(K, "c1")] = (0, None)  # the customer wrote again: a new session at WeCom
    w.says("c1", "price?")
    assert w.outcomes("c1")[-1] == ("bot keyword 'price'", Outcome.SENT)
    assert w.state.sessions.get(K, "c1").session_id == f"m{w.n}"


def test_a_send_refused_for_a_stale_state_takes_wecoms_state_and_does_not_fail() -> None:
    w = World()
    w.state.sessions.update(K, "c1", {"state": 1})  # Kefu's cache
    w.wecom.states[(K, "c1")] = (3, "alice")  # WeCom moved it meanwhile
    w.says("c1", "price?")  # cached 1: the bot replies, WeCom refuses with 95018
    assert w.outcomes("c1")[-1][1] == Outcome.NOT_SENT
    assert w.state.sessions.get(K, "c1").state == 3


def test_a_pool_head_a_servicer_picked_at_wecom_is_repaired_and_the_drain_goes_on() -> None:
    w = World({"alice": False, "bob": False})
    w.says("c1", "human")
    w.clock.now += 1
    w.says("c2", "human")
    w.wecom.states[(K, "c1")] = (3, "bob")  # bob took c1 in the WeCom client; no event reached Kefu
    w.wecom.servicers[K].update(alice=True)
    w.state.rosters.save(K, {"alice": True, "bob": False}, w.clock.now)
    assert w.engine.assigner.drain_pool(K) == 1
    assert w.wecom.states[(K, "c2")] == (3, "alice")
    assert w.state.pool.oldest(K) == []
    c1 = w.state.sessions.get(K, "c1")
    assert (c1.state, c1.servicer, c1.counted) == (3, "bob", "bob")  # bob's load counts c1 now
    assert w.state.loads.get(K) == {"alice": 1, "bob": 1}


def test_a_customer_whose_human_session_ended_silently_is_served_when_writing_again() -> None:
    w = World()
    w.says("c1", "human")
    assert w.state.loads.get(K) == {"alice": 1}
    w.wecom.states[(K, "c1")] = (0, None)  # ended and reopened at WeCom; the end event was lost
    w.clock.now += 60
    w.says("c1", "price?")
    assert w.outcomes("c1")[-1] == ("bot keyword 'price'", Outcome.SENT)  # not "held"
    assert w.state.loads.get(K) == {"alice": 0}  # alice's place came back
    assert w.state.sessions.get(K, "c1").session_id == f"m{w.n}"  # a new session


def test_an_end_older_than_the_current_session_ends_nothing() -> None:
    w = World()
    w.says("c1", "human")
    stale_end = w.item("c1", origin=4, msgtype="event",
                       event={"open_kfid": K, "external_userid": "c1", "event_type": "session_status_change",
                              "change_type": 3, "old_servicer_userid": "alice", "msg_code": "end-old"})
    w.clock.now += 10
    w.event("c1", event_type="session_status_change", change_type=3, old_servicer_userid="alice", msg_code="end1")
    w.wecom.states[(K, "c1")] = (0, None)
    w.clock.now += 10
    w.says("c1", "human")  # a new session, with alice again
    assert w.wecom.states[(K, "c1")] == (3, "alice")
    w.engine.handle(parse_item(stale_end))  # redriven from the dead-letter queue
    assert w.outcomes("c1")[-1] == ("session change older than the session", Outcome.SKIPPED)
    assert w.state.sessions.get(K, "c1").state == 3 and w.state.loads.get(K) == {"alice": 1}


def test_an_older_message_arriving_late_does_not_reset_the_send_budget() -> None:
    w = World()
    w.says("c1", "price?")
    newer = w.state.sessions.get(K, "c1")
    late = w.item("c1", origin=3, msgtype="text", text={"content": "price?"}, send_time=int(w.clock.now) - 30)
    w.engine.handle(parse_item(late))
    session = w.state.sessions.get(K, "c1")
    assert (session.window_at, session.window_msgid) == (newer.window_at, newer.window_msgid)
    assert session.sends >= newer.sends  # the late copy's reply spends from the same window


def test_the_queue_notice_of_each_hand_off_has_its_own_msgid() -> None:
    w = World({"alice": False})
    w.says("c1", "human")
    w.event("c1", event_type="session_status_change", change_type=3, msg_code="end1")
    w.wecom.states[(K, "c1")] = (0, None)
    w.clock.now += 10
    w.says("c1", "human")
    notices = [body["msgid"] for path, body in w.wecom.calls
               if path == "kf/send_msg_on_event" and body.get("text", {}).get("content") == "please wait"]
    assert len(notices) == 2 and len(set(notices)) == 2  # the second is not refused as a repeat


def test_the_welcome_is_sent_before_the_entry_is_counted() -> None:
    w = World()
    order: list[str] = []
    entered = w.engine.accounting.entered
    w.engine.accounting.entered = lambda *a, **k: (order.append("counted"), entered(*a, **k))[1]  # type: ignore[method-assign]
    sent = w.wecom._apply
    w.wecom._apply = lambda path, body: (order.append(path), sent(path, body))[1]  # type: ignore[method-assign]
    w.event("c1", event_type="enter_session", scene="", welcome_code="w1")
    assert order == ["kf/send_msg_on_event", "counted"]


IDLE_RULES = parse_rules("""
timezone: Asia/Shanghai
accounts:
  "*":
    max_active_per_servicer: 1
    closing: {text: "thanks"}
    idle_end_minutes: 30
""")


def idle_world(servicers: dict[str, bool] | None = None) -> World:
    w = World(servicers)
    w.engine._rules = lambda: IDLE_RULES
    w.engine.assigner._rules = lambda: IDLE_RULES
    return w


def test_the_sweep_ends_an_idle_session_with_the_closing_and_gives_the_place_back() -> None:
    w = idle_world()
    w.says("c1", "hello")  # no bot: straight to alice
    assert w.wecom.states[(K, "c1")] == (3, "alice")
    w.clock.now += 29 * 60
    w.engine.sweep_session(K, "c1", reconcile_after=3600)
    assert w.wecom.states[(K, "c1")] == (3, "alice")  # not idle long enough yet
    w.clock.now += 2 * 60
    w.engine.sweep_session(K, "c1", reconcile_after=3600)
    assert w.wecom.states[(K, "c1")] == (4, None)
    closings = [b for p, b in w.wecom.calls if p == "kf/send_msg_on_event" and b["text"]["content"] == "thanks"]
    assert len(closings) == 1
    assert w.state.loads.get(K) == {"alice": 0}
    session = w.state.sessions.get(K, "c1")
    assert session.state == 4 and session.active_at is None  # out of the sweep's index
    assert w.outcomes("c1")[-1] == ("idle end", Outcome.ENDED)
    calls = len(w.wecom.calls)
    w.engine.sweep_session(K, "c1", reconcile_after=3600)  # a repeated task does nothing
    assert len(w.wecom.calls) == calls


def test_a_servicer_message_keeps_the_session_from_looking_idle() -> None:
    w = idle_world()
    w.says("c1", "hello")
    w.clock.now += 25 * 60
    w.engine.handle(parse_item(w.item("c1", origin=5, msgtype="text", text={"content": "hi"},
                                      servicer_userid="alice")))
    w.clock.now += 10 * 60
    w.engine.sweep_session(K, "c1", reconcile_after=3600)
    assert w.wecom.states[(K, "c1")] == (3, "alice")


def test_the_sweep_finds_a_session_that_ended_unseen_and_assigns_the_next_waiting_customer() -> None:
    w = idle_world()
    w.says("c1", "hello")  # alice's only place
    w.clock.now += 1
    w.says("c2", "hello")  # pooled
    assert w.wecom.states[(K, "c2")][0] == 2
    w.wecom.states[(K, "c1")] = (4, None)  # ended at WeCom; no event ever reaches Kefu
    w.clock.now += 3600
    w.engine.sweep_session(K, "c1", reconcile_after=3600)
    assert w.state.sessions.get(K, "c1").state == 4
    assert w.wecom.states[(K, "c2")] == (3, "alice")  # the freed place went to the next customer
    assert w.state.loads.get(K) == {"alice": 1}
    assert ("sweep: ended at WeCom unseen", Outcome.ENDED) in w.outcomes("c1")


def test_the_pool_waits_for_the_opening_and_the_drain_at_opening_assigns() -> None:
    rules = parse_rules("""
timezone: Asia/Shanghai
accounts:
  "*":
    max_active_per_servicer: 1
    working_hours: {mon: "09:00-18:00", tue: "09:00-18:00", wed: "09:00-18:00", thu: "09:00-18:00", fri: "09:00-18:00", sat: "09:00-18:00", sun: "09:00-18:00"}
""")
    w = World({"alice": False})
    w.engine._rules = lambda: rules
    w.engine.assigner._rules = lambda: rules
    w.clock.now = 1_800_000_000 - (1_800_000_000 + 8 * 3600) % 86400 + 8 * 3600 + 30 * 60  # 08:30 Shanghai
    w.says("c1", "hello")  # off hours: pooled
    assert w.wecom.states[(K, "c1")][0] == 2
    w.wecom.servicers[K]["alice"] = True
    w.state.rosters.save(K, {"alice": True}, w.clock.now)
    w.engine.run_task({"task": "drain", "open_kfid": K})
    assert w.wecom.states[(K, "c1")][0] == 2  # still closed: the servicer is on duty early
    w.clock.now += 31 * 60  # 09:01
    w.state.rosters.save(K, {"alice": True}, w.clock.now)
    w.engine.run_task({"task": "drain", "open_kfid": K})
    assert w.wecom.states[(K, "c1")] == (3, "alice")


def test_a_drain_beside_a_running_assignment_leaves_its_reservation_alone() -> None:
    w = World({"alice": False})
    w.says("c1", "human")  # pooled
    # Another invocation (the customer's own record) has just reserved alice for c1 and is
    # about to transfer: the drain's look at WeCom (still waiting) must not give that place back.
    w.wecom.servicers[K]["alice"] = True
    assert w.state.loads.reserve(K, "c1", "alice", 1) == "ok"
    w.engine.assigner.refresh(K, "c1", w.state.sessions.get(K, "c1"))
    assert w.state.loads.get(K) == {"alice": 1} and w.state.sessions.get(K, "c1").counted == "alice"


def test_a_failed_transfer_keeps_its_reservation_for_the_retry_to_finish() -> None:
    w = World({"alice": True})
    w.state.sessions.update(K, "c1", {"state": 2})
    w.wecom.states[(K, "c1")] = (2, None)
    for _ in range(w.engine.settings.trans_attempts):  # WeCom busy throughout this attempt
        w.wecom.fail("kf/service_state/trans", WeComError("kf/service_state/trans", None, "HTTP 502", 502))
    assert w.state.loads.reserve(K, "c1", "alice", 1) == "ok"
    with pytest.raises(WeComError):
        w.engine.assigner._transfer(K, "c1", "alice", w.state.sessions.get(K, "c1"))
    # Meanwhile another invocation (a pool drain) made the same transfer: the place stays counted.
    w.wecom.states[(K, "c1")] = (3, "alice")
    assert w.state.loads.get(K) == {"alice": 1} and w.state.sessions.get(K, "c1").counted == "alice"


def test_an_end_the_sweep_found_and_its_late_event_count_once() -> None:
    w = idle_world()
    w.says("c1", "hello")
    counted: list[str] = []
    ended = w.engine.accounting.ended
    w.engine.accounting.ended = lambda event_id, *a, **k: (counted.append(event_id), ended(event_id, *a, **k))[1]  # type: ignore[method-assign]
    w.wecom.states[(K, "c1")] = (4, None)  # ended at WeCom; its event is late
    w.clock.now += 3600
    w.engine.sweep_session(K, "c1", reconcile_after=3600)
    w.event("c1", event_type="session_status_change", change_type=3, old_servicer_userid="alice", msg_code="end1")
    assert len(counted) == 2 and len(set(counted)) == 1  # one id: the statistics count the end once


def test_an_unknown_sweep_task_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown sweep task"):
        World().engine.run_task({"task": "compact", "open_kfid": K})
