"""Kefu's own messages to a customer: sends on an event's code, and API sends within the budget.

Every send carries a msgid derived from the item that caused it, so a retried record sends the
same msgid again and WeCom refuses the repeat instead of delivering it twice. Sends settle by
errcode, never by errmsg (WeCom's own guidance: its text may change): a used msgid is errcode
USED_MSGID, and it means "already sent" only when Kefu's ledger holds an earlier attempt of the
send - the session item's send_ids, where take_send records each API send before its call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kefu.routing import decide
from kefu.routing.outcome import SENT, Outcome, SendResult
from kefu.routing.ports import StatePort, WeComPort
from kefu.routing.session import SEND_LIMIT
from kefu.wecom import kf
from kefu.wecom.errors import SEND_COUNT_LIMIT, SEND_TIME_LIMIT, SEND_WRONG_STATE, USED_MSGID, WeComError
from kefu.wecom.models import ServiceState

# SessionsPort.take_send's answers other than 0 (refused): which attempt at the send this is.
FIRST_ATTEMPT = 1  # none recorded before: one unit of the budget was taken for the send now
REPEATED_ATTEMPT = 2  # the ledger holds an earlier attempt: its unit is used again, none taken


class Sender:
    def __init__(self, wecom: WeComPort, state: StatePort, clock: Callable[[], float]) -> None:
        self.wecom = wecom
        self.state = state
        self.clock = clock

    def on_event(self, code: str, msgid: str, message: dict[str, Any]) -> SendResult:
        """send_msg_on_event: a code works once and dies fast, so a failure is reported, never
        repeated by a later retry. Kefu keeps no ledger of these sends, so a used msgid (errcode
        USED_MSGID, which answers a used or expired code too) is reported like any refusal."""
        try:
            kf.send_on_event(self.wecom, code, msgid, message)
            return SENT
        except WeComError as exc:
            return SendResult(Outcome.FAILED, f"errcode {exc.metric_code}")

    def text(self, open_kfid: str, euid: str, trigger_msgid: str, purpose: str, text: str) -> SendResult:
        """send_msg within the customer's window: one unit of the budget per send, kept by the
        send's msgid, so a retry reuses its own unit. take_send records the attempt before the
        call (the ledger); the client repeats a call WeCom did not run (-1, 45009, 45033) with the
        same msgid, and a record retried after any other failure comes back here with it too."""
        msgid = decide.send_id(trigger_msgid, purpose)
        attempt = self.state.sessions.take_send(open_kfid, euid, self.clock(), msgid)
        if not attempt:
            return SendResult(Outcome.NOT_SENT, "no send left in this window or session not in state 0/1")
        try:
            kf.send_text(self.wecom, open_kfid, euid, msgid, text)
        except WeComError as exc:
            if exc.errcode == SEND_WRONG_STATE:  # the cache was stale: take WeCom's state, send nothing
                actual, servicer = kf.service_state_get(self.wecom, open_kfid, euid)
                self.state.sessions.update(open_kfid, euid, {"state": actual, **({"servicer": servicer} if servicer else {})})
                return SendResult(Outcome.NOT_SENT, f"session in state {actual} at WeCom")
            if exc.errcode in (SEND_COUNT_LIMIT, SEND_TIME_LIMIT):
                # WeCom counts the window differently from the cache (a send made elsewhere, a
                # clock apart): it will refuse every retry, so the window is closed, not retried.
                self.state.sessions.update(open_kfid, euid, {"sends": SEND_LIMIT})
                return SendResult(Outcome.NOT_SENT, f"WeCom closed the send window (errcode {exc.errcode})")
            if exc.errcode != USED_MSGID:
                raise
            if attempt == FIRST_ATTEMPT:  # not by Kefu: someone else used the msgid (or a bad parameter)
                return SendResult(Outcome.FAILED, f"errcode {exc.metric_code}: msgid {msgid} refused as used "
                                                  "(or invalid), and no earlier attempt of Kefu's is recorded")
            # An earlier attempt of Kefu's went through (its answer was lost). The state is left
            # as it is: the session may have moved on since.
            return SendResult(Outcome.SENT, "already sent by an earlier attempt")
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
