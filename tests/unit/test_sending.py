"""Kefu's sends settle by errcode, never by errmsg, with a ledger of attempts (kefu.routing.sending
over the in-memory ports of tests/unit/fakes.py): a used msgid is "already sent" only after an
attempt Kefu recorded, and a retry never takes a second unit of the customer's 5-send budget."""

from __future__ import annotations

import pytest

from kefu.routing import decide, outbound
from kefu.routing.outcome import Outcome, SendResult
from kefu.routing.sending import Said, Sender
from kefu.wecom.errors import USED_MSGID, WeComError
from tests.unit.fakes import Clock, FakeState, FakeTranscript, FakeWeCom

K = "wkSENDING".ljust(32, "0")
E = "c1"
MSGID = decide.send_id("m1", "bot")
# What WeCom may answer for a used msgid: its errmsg text is no contract, so none says "duplicate".
USED = "invalid parameter, hint: [1800000000_0af1], more info at https://open.work.weixin.qq.com/devtool/query?e=40058"


class World:
    def __init__(self, state: int = 1) -> None:
        self.clock = Clock()
        self.wecom = FakeWeCom(states={(K, E): (state, None)})
        self.state = FakeState()
        self.state.sessions.update(K, E, {"state": state, "window_at": int(self.clock.now), "sends": 0})
        self.transcript = FakeTranscript()
        self.sender = Sender(self.wecom, self.state, self.clock, self.transcript)

    def send(self, cause: str = "m1", content: str = "see the site") -> SendResult:
        return self.sender.send(Said(K, E, "bot keyword", cause), "bot", outbound.text(content))

    def reply(self) -> Outcome:
        return self.send().outcome

    def refuse_as_used(self, text: str = USED) -> None:
        """WeCom's next send_msg answer: the msgid is used (nothing sent)."""
        self.wecom.fail("kf/send_msg", WeComError("kf/send_msg", USED_MSGID, text))

    @property
    def item(self) -> dict:
        return self.state.sessions.items[(K, E)]

    def send_calls(self) -> list[str]:
        return [body["msgid"] for path, body in self.wecom.calls if path == "kf/send_msg"]


def test_a_retried_send_refused_as_used_after_a_recorded_attempt_is_sent_on_one_unit() -> None:
    w = World()
    # WeCom sends it, but the answer is lost: the record fails and the queue retries it.
    w.wecom.fail("kf/send_msg", WeComError("kf/send_msg", None, "timed out"), executed=True)
    with pytest.raises(WeComError):
        w.reply()
    w.refuse_as_used()
    result = w.send()
    assert result.outcome == Outcome.SENT and "earlier attempt" in (result.detail or "")
    assert w.item["sends"] == 1 and w.item["send_ids"] == {MSGID}
    assert w.send_calls() == [MSGID, MSGID] and len(w.wecom.sent) == 1


@pytest.mark.parametrize("errcode", [-1, 45009, 45033])
def test_a_send_wecom_did_not_run_is_sent_once_with_one_msgid_on_one_unit(errcode: int) -> None:
    w = World()
    # The client repeats it while WeCom answers it did not run it; here it gave up: the record fails.
    w.wecom.fail("kf/send_msg", WeComError("kf/send_msg", errcode, "system busy"))
    with pytest.raises(WeComError) as info:
        w.reply()
    assert info.value.not_executed and not w.wecom.sent
    assert w.reply() == Outcome.SENT  # the queue's retry: the same msgid, no second unit
    assert w.reply() == Outcome.SENT  # retried again (the record died after the send): the record says sent
    assert w.item["sends"] == 1 and w.item["send_ids"] == {MSGID}
    assert w.send_calls() == [MSGID] * 2 and [s["msgid"] for s in w.wecom.sent] == [MSGID]


@pytest.mark.parametrize("text", [USED, "duplicate msgid"])
def test_a_used_msgid_with_no_attempt_recorded_is_a_failure(text: str) -> None:
    w = World(state=0)
    w.refuse_as_used(text)  # someone else sent under this msgid before Kefu ever tried it
    result = w.send()
    assert result.outcome == Outcome.FAILED
    assert result.detail == (f"errcode {USED_MSGID}: msgid {MSGID} refused as used (or invalid), "
                             "and no earlier attempt of Kefu's is recorded")
    assert not w.wecom.sent and w.item["state"] == 0  # nothing sent: WeCom's state is not guessed


def test_an_event_send_refused_as_used_msgid_with_no_attempt_on_record_is_reported_failed() -> None:
    w = World()
    w.wecom.fail("kf/send_msg_on_event", WeComError("kf/send_msg_on_event", USED_MSGID, "duplicate msgid"))
    result = w.sender.on_event("code1", Said(K, E, "welcome", "m1"), "welcome", outbound.text("hi"))
    assert (result.outcome, result.detail) == (Outcome.FAILED, f"errcode {USED_MSGID}")
    record = w.transcript.records[decide.send_id("m1", "welcome")]
    assert (record["send_state"], record["send_error"]) == ("failed", f"errcode {USED_MSGID}")


def test_an_event_send_whose_answer_was_lost_is_settled_sent_by_its_retry() -> None:
    """The conversation record is the ledger of send_msg_on_event: the attempt is written as
    pending before the call, so a retry refused as a used msgid knows the first one went through."""
    w = World()
    w.wecom.fail("kf/send_msg_on_event", WeComError("kf/send_msg_on_event", None, "timed out"), executed=True)
    said = Said(K, E, "welcome", "m1")
    first = w.sender.on_event("code1", said, "welcome", outbound.text("hi"))
    assert first.outcome == Outcome.FAILED  # reported; the record stays as WeCom left it unknown
    msgid = decide.send_id("m1", "welcome")
    w.transcript.records[msgid]["send_state"] = "pending"  # as a crash right after the call leaves it
    w.wecom.fail("kf/send_msg_on_event", WeComError("kf/send_msg_on_event", USED_MSGID, "duplicate msgid"))
    again = w.sender.on_event("code1", said, "welcome", outbound.text("hi"))
    assert again.outcome == Outcome.SENT and "earlier attempt" in (again.detail or "")
    assert w.transcript.records[msgid]["send_state"] == "sent"
    assert w.sender.on_event("code1", said, "welcome", outbound.text("hi")).outcome == Outcome.SENT  # no third call
    assert w.wecom.paths().count("kf/send_msg_on_event") == 2


def test_every_send_is_recorded_with_why_it_was_said() -> None:
    w = World()
    assert w.reply() == Outcome.SENT
    (record,) = w.transcript.sent()
    assert (record["sender"], record["rule"], record["cause"], record["via"], record["send_state"]) == (
        "kefu", "bot keyword", "m1", "send_msg", "sent")
    assert record["message"] == {"msgtype": "text", "text": {"content": "see the site"}}
    assert record["conv"] == f"{K}#{E}" and record["msgid"] == MSGID


@pytest.mark.parametrize("errcode", [95001, 95002])
def test_a_send_wecom_refuses_for_its_window_is_settled_and_closes_the_window(errcode: int) -> None:
    world = World()
    world.wecom.fail("kf/send_msg", WeComError("kf/send_msg", errcode, "send limit"))
    assert world.reply() == Outcome.NOT_SENT  # settled: a retried record would be refused again
    assert world.item["sends"] == 5
    assert world.send("m2", "again").outcome == Outcome.NOT_SENT  # no call made
    assert world.wecom.paths().count("kf/send_msg") == 1
