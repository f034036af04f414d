"""Kefu's sends settle by errcode, never by errmsg, with a ledger of attempts (kefu.routing.sending
over the in-memory ports of tests/unit/fakes.py): a used msgid is "already sent" only after an
attempt Kefu recorded, and a retry never takes a second unit of the customer's 5-send budget."""

from __future__ import annotations

import pytest

from kefu.routing import decide
from kefu.routing.outcome import Outcome
from kefu.routing.sending import Sender
from kefu.wecom.errors import USED_MSGID, WeComError
from tests.unit.fakes import Clock, FakeState, FakeWeCom

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
        self.sender = Sender(self.wecom, self.state, self.clock)

    def reply(self) -> Outcome:
        return self.sender.text(K, E, "m1", "bot", "see the site").outcome

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
    result = w.sender.text(K, E, "m1", "bot", "see the site")
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
    w.refuse_as_used()
    assert w.reply() == Outcome.SENT  # retried again (the record died after the send): settled
    assert w.item["sends"] == 1 and w.item["send_ids"] == {MSGID}
    assert w.send_calls() == [MSGID] * 3 and [s["msgid"] for s in w.wecom.sent] == [MSGID]


@pytest.mark.parametrize("text", [USED, "duplicate msgid"])
def test_a_used_msgid_with_no_attempt_recorded_is_a_failure(text: str) -> None:
    w = World(state=0)
    w.refuse_as_used(text)  # someone else sent under this msgid before Kefu ever tried it
    result = w.sender.text(K, E, "m1", "bot", "see the site")
    assert result.outcome == Outcome.FAILED
    assert result.detail == (f"errcode {USED_MSGID}: msgid {MSGID} refused as used (or invalid), "
                             "and no earlier attempt of Kefu's is recorded")
    assert not w.wecom.sent and w.item["state"] == 0  # nothing sent: WeCom's state is not guessed


def test_an_event_send_refused_as_used_msgid_is_reported_failed() -> None:
    """No ledger is kept for send_msg_on_event: a used msgid is a refusal like a used code."""
    w = World()
    w.wecom.fail("kf/send_msg_on_event", WeComError("kf/send_msg_on_event", USED_MSGID, "duplicate msgid"))
    result = w.sender.on_event("code1", decide.send_id("m1", "welcome"), {"msgtype": "text", "text": {"content": "hi"}})
    assert (result.outcome, result.detail) == (Outcome.FAILED, f"errcode {USED_MSGID}")


@pytest.mark.parametrize("errcode", [95001, 95002])
def test_a_send_wecom_refuses_for_its_window_is_settled_and_closes_the_window(errcode: int) -> None:
    world = World()
    world.wecom.fail("kf/send_msg", WeComError("kf/send_msg", errcode, "send limit"))
    assert world.reply() == Outcome.NOT_SENT  # settled: a retried record would be refused again
    assert world.item["sends"] == 5
    assert world.sender.text(K, E, "m2", "bot", "again").outcome == Outcome.NOT_SENT  # no call made
    assert world.wecom.paths().count("kf/send_msg") == 1
