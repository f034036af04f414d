"""Kefu's own messages to a customer: sends on an event's code, and API sends within the budget.

Every send carries a msgid derived from the item that caused it, so a retried record sends the
same msgid again and WeCom refuses the repeat instead of delivering it twice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kefu.routing import decide
from kefu.routing.outcome import SENT, Outcome, SendResult
from kefu.routing.ports import StatePort, WeComPort
from kefu.wecom import kf
from kefu.wecom.errors import INVALID_PARAMETER, SEND_WRONG_STATE, WeComError
from kefu.wecom.models import ServiceState


def already_sent(exc: WeComError) -> bool:
    """WeCom refuses a msgid it has seen: the earlier attempt went through."""
    return exc.errcode == INVALID_PARAMETER and "duplicate" in exc.errmsg.lower()


class Sender:
    def __init__(self, wecom: WeComPort, state: StatePort, clock: Callable[[], float]) -> None:
        self.wecom = wecom
        self.state = state
        self.clock = clock

    def on_event(self, code: str, msgid: str, message: dict[str, Any]) -> SendResult:
        """send_msg_on_event: a code works once and dies fast, so a failure is reported, never
        repeated by a later retry."""
        try:
            kf.send_on_event(self.wecom, code, msgid, message)
            return SENT
        except WeComError as exc:
            if already_sent(exc):
                return SENT
            return SendResult(Outcome.FAILED, f"errcode {exc.metric_code}")

    def text(self, open_kfid: str, euid: str, trigger_msgid: str, purpose: str, text: str) -> SendResult:
        """send_msg within the customer's window: one unit of the budget per send, kept by the
        send's msgid, so a retry reuses its own unit."""
        msgid = decide.send_id(trigger_msgid, purpose)
        if not self.state.sessions.take_send(open_kfid, euid, self.clock(), msgid):
            return SendResult(Outcome.NOT_SENT, "no send left in this window or session not in state 0/1")
        try:
            kf.send_text(self.wecom, open_kfid, euid, msgid, text)
        except WeComError as exc:
            if exc.errcode == SEND_WRONG_STATE:  # the cache was stale: take WeCom's state, send nothing
                actual, servicer = kf.service_state_get(self.wecom, open_kfid, euid)
                self.state.sessions.update(open_kfid, euid, {"state": actual, **({"servicer": servicer} if servicer else {})})
                return SendResult(Outcome.NOT_SENT, f"session in state {actual} at WeCom")
            if not already_sent(exc):
                raise
        self.state.sessions.update(open_kfid, euid, {"state": ServiceState.BOT})  # a send in state 0 makes it 1
        return SENT

    def closing(self, open_kfid: str, euid: str, code: str, trigger_msgid: str, closing: dict[str, Any]) -> SendResult:
        """The closing message works only while the session is still the ended one: a customer who
        wrote again meanwhile (their message still queued behind this event) opened a new session,
        and WeCom would refuse the code with 95018. Ask WeCom first (rule 7: know the state)."""
        actual, _ = kf.service_state_get(self.wecom, open_kfid, euid)
        if actual != ServiceState.ENDED:
            return SendResult(Outcome.SKIPPED, "the customer opened a new session")
        return self.on_event(code, decide.send_id(trigger_msgid, "closing"), closing)
