"""Kefu's own messages to a customer: sends on an event's code, and API sends within the budget,
each recorded in the conversation (the MessagesTable) with why it was said.

Every send carries a msgid derived from the item that caused it, so a retried record sends the
same msgid again and WeCom refuses the repeat instead of delivering it twice. Sends settle by
errcode, never by errmsg (WeCom's own guidance: its text may change): a used msgid is errcode
USED_MSGID, and it means "already sent" only when Kefu holds an earlier attempt of the send - in
the session's send_ids (take_send records each API send before its call) or in the conversation
record, where every send is written as pending before its call and settled after it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kefu.routing import decide
from kefu.routing.outbound import AssetError, MediaId, Message
from kefu.routing.outcome import SENT, Outcome, SendResult
from kefu.routing.ports import StatePort, TranscriptPort, WeComPort
from kefu.routing.session import SEND_LIMIT
from kefu.store.messages import FAILED, PENDING, kefu_record
from kefu.store.messages import SENT as RECORDED_SENT
from kefu.wecom import kf
from kefu.wecom.errors import MESSAGE_REFUSED, SEND_COUNT_LIMIT, SEND_TIME_LIMIT, SEND_WRONG_STATE, USED_MSGID, WeComError
from kefu.wecom.models import ServiceState

# SessionsPort.take_send's answers other than 0 (refused): which attempt at the send this is.
FIRST_ATTEMPT = 1  # none recorded before: one unit of the budget was taken for the send now
REPEATED_ATTEMPT = 2  # the ledger holds an earlier attempt: its unit is used again, none taken

ALREADY_SENT = SendResult(Outcome.SENT, "already sent by an earlier attempt")


Announce = Callable[["Said", str, dict[str, Any], "str | None"], None]  # (said, msgid, message, error)


@dataclass(frozen=True)
class Said:
    """Who Kefu speaks to and why: the decision's rule and the item that caused it (its msgid
    names the send, so a retry of that item reuses it)."""

    open_kfid: str
    euid: str
    rule: str
    cause: str


class Sender:
    def __init__(self, wecom: WeComPort, state: StatePort, clock: Callable[[], float],
                 transcript: TranscriptPort, media_id: MediaId | None = None, retention_days: int = 0,
                 announce: Announce | None = None) -> None:
        self.wecom = wecom
        self.state = state
        self.clock = clock
        self.transcript = transcript
        self.media_id = media_id
        self.retention_days = retention_days
        self.announce = announce

    def _settle(self, said: Said, msgid: str, payload: dict[str, Any], state: str, error: str | None = None) -> None:
        """Settle the send's record, and announce it (message.sent / message.failed)."""
        self.transcript.settle_send(msgid, state, error)
        if self.announce is not None:
            self.announce(said, msgid, payload, error if state == FAILED else None)

    def _begin(self, said: Said, msgid: str, payload: dict[str, object], via: str,
               ai: dict[str, Any] | None = None) -> str | None:
        return self.transcript.begin_send(kefu_record(
            said.open_kfid, said.euid, msgid, dict(payload), int(self.clock()), rule=said.rule, cause=said.cause,
            via=via, retention_days=self.retention_days, ai=ai))

    def recorded(self, said: Said, purpose: str) -> dict[str, Any] | None:
        """The send ``purpose`` for ``said.cause`` as an earlier attempt recorded it, or None."""
        return self.transcript.send_record(decide.send_id(said.cause, purpose))

    def on_event(self, code: str, said: Said, purpose: str, message: Message) -> SendResult:
        """send_msg_on_event (a text or a menu): a code works once and dies fast, so a failure is
        reported and settled, never repeated by a later retry."""
        msgid = decide.send_id(said.cause, purpose)
        payload = message.payload()
        held = self._begin(said, msgid, payload, "send_msg_on_event")
        if held == RECORDED_SENT:
            return ALREADY_SENT
        if held == FAILED:
            return SendResult(Outcome.FAILED, "failed at an earlier attempt")
        try:
            kf.send_on_event(self.wecom, code, msgid, payload)
        except WeComError as exc:
            if exc.errcode == USED_MSGID and held == PENDING:
                # An earlier attempt of Kefu's is on record and its answer was lost: it went through.
                self._settle(said, msgid, payload, RECORDED_SENT)
                return ALREADY_SENT
            self._settle(said, msgid, payload, FAILED, f"errcode {exc.metric_code}")
            return SendResult(Outcome.FAILED, f"errcode {exc.metric_code}")
        self._settle(said, msgid, payload, RECORDED_SENT)
        return SENT

    def send(self, said: Said, purpose: str, message: Message, ai: dict[str, Any] | None = None) -> SendResult:
        """send_msg within the customer's window: one unit of the budget per send, kept by the
        send's msgid, so a retry reuses its own unit. take_send records the attempt before the
        call (the ledger); the client repeats a call WeCom did not run (-1, 45009, 45033) with the
        same msgid, and a record retried after any other failure comes back here with it too."""
        open_kfid, euid = said.open_kfid, said.euid
        msgid = decide.send_id(said.cause, purpose)
        try:
            payload = message.payload(self.media_id)  # before the budget: a bad asset spends nothing
        except AssetError as exc:
            return SendResult(Outcome.FAILED, f"asset: {exc}")
        attempt = self.state.sessions.take_send(open_kfid, euid, self.clock(), msgid)
        if not attempt:
            return SendResult(Outcome.NOT_SENT, "no send left in this window or session not in state 0/1")
        held = self._begin(said, msgid, payload, "send_msg", ai)
        if held == RECORDED_SENT:
            return ALREADY_SENT
        try:
            kf.send_msg(self.wecom, open_kfid, euid, msgid, payload)
        except WeComError as exc:
            result = self._refused(said, msgid, payload, exc, attempt, held)
            if result is None:
                raise  # unclear: the record stays pending and the queue tries again
            return result
        self._settle(said, msgid, payload, RECORDED_SENT)
        self.state.sessions.update(open_kfid, euid, {"state": ServiceState.BOT})  # a send in state 0 makes it 1
        return SENT

    def _refused(self, said: Said, msgid: str, payload: dict[str, Any], exc: WeComError, attempt: int,
                 held: str | None) -> SendResult | None:
        open_kfid, euid = said.open_kfid, said.euid
        if exc.errcode == SEND_WRONG_STATE:  # the cache was stale: take WeCom's state, send nothing
            actual, servicer = kf.service_state_get(self.wecom, open_kfid, euid)
            self.state.sessions.update(open_kfid, euid, {"state": actual, **({"servicer": servicer} if servicer else {})})
            self._settle(said, msgid, payload, FAILED, f"errcode {exc.errcode}: session in state {actual}")
            return SendResult(Outcome.NOT_SENT, f"session in state {actual} at WeCom")
        if exc.errcode in (SEND_COUNT_LIMIT, SEND_TIME_LIMIT):
            # WeCom counts the window differently from the cache (a send made elsewhere, a clock
            # apart): it will refuse every retry, so the window is closed, not retried.
            self.state.sessions.update(open_kfid, euid, {"sends": SEND_LIMIT})
            self._settle(said, msgid, payload, FAILED, f"errcode {exc.errcode}: window closed at WeCom")
            return SendResult(Outcome.NOT_SENT, f"WeCom closed the send window (errcode {exc.errcode})")
        if exc.errcode in MESSAGE_REFUSED:  # the message itself: a retry is refused the same way
            self._settle(said, msgid, payload, FAILED, f"errcode {exc.metric_code}")
            return SendResult(Outcome.FAILED, f"errcode {exc.metric_code}")
        if exc.errcode != USED_MSGID:
            return None
        if attempt == FIRST_ATTEMPT and held is None:  # not by Kefu: someone else used the msgid (or a bad parameter)
            self._settle(said, msgid, payload, FAILED, f"errcode {exc.metric_code}: msgid refused as used")
            return SendResult(Outcome.FAILED, f"errcode {exc.metric_code}: msgid {msgid} refused as used "
                                              "(or invalid), and no earlier attempt of Kefu's is recorded")
        # An earlier attempt of Kefu's went through (its answer was lost). The state is left as it
        # is: the session may have moved on since.
        self._settle(said, msgid, payload, RECORDED_SENT)
        return ALREADY_SENT

    def closing(self, said: Said, code: str, message: Message) -> SendResult:
        """The closing message works only while the session is still the ended one: a customer who
        wrote again meanwhile (their message still queued behind this event) opened a new session,
        and WeCom would refuse the code with 95018. Ask WeCom first (rule 7: know the state)."""
        actual, _ = kf.service_state_get(self.wecom, said.open_kfid, said.euid)
        if actual != ServiceState.ENDED:
            return SendResult(Outcome.SKIPPED, "the customer opened a new session")
        return self.on_event(code, said, "closing", message)
