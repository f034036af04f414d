"""What the enterprise's own systems may do to a conversation through the conversation API (and
the `kefu send` / `kefu transfer` commands on top of it): send a message on the account's behalf,
move the session (to a servicer, to the pool, back to Kefu's bot) and end it.

Each is done only when WeCom would accept it, decided from Kefu's session cache and refused with
the rule that forbids it (``Refused``, a 409) before WeCom is called; WeCom's own refusal of a
cache gone stale is settled the same way. A send is named by the caller's idempotency key: the
same key is the same msgid, so a retried request finds its earlier send and never sends twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kefu.routing import decide
from kefu.routing.assigner import StaleSession, Target
from kefu.routing.engine import RoutingEngine
from kefu.routing.outbound import Message
from kefu.routing.outcome import Decision, Outcome
from kefu.routing.sending import Said
from kefu.routing.session import SEND_LIMIT, SEND_WINDOW, Session
from kefu.store.messages import SENT as RECORDED_SENT
from kefu.wecom.errors import NOT_A_SERVICER, WeComError
from kefu.wecom.models import ServiceState

API_RULE = "conversation API"


class Refused(Exception):
    """WeCom would refuse this now (or did): ``rule`` names why, ``message`` says it for people."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(f"{rule}: {message}")
        self.rule = rule
        self.message = message


def api_msgid(open_kfid: str, euid: str, idempotency_key: str) -> str:
    """The send's msgid: the same key for the same customer is the same send."""
    return decide.send_id(f"api#{open_kfid}#{euid}#{idempotency_key}", "api")


STATE_NAMES = {ServiceState.NEW: "new", ServiceState.BOT: "with Kefu (the API)", ServiceState.POOL: "waiting in the pool",
               ServiceState.HUMAN: "with a servicer", ServiceState.ENDED: "ended"}


def _state(session: Session) -> str:
    if session.state is None:
        return "unknown"
    name = STATE_NAMES[session.state]
    return f"{int(session.state)} ({name}{': ' + session.servicer if session.servicer else ''})"


@dataclass(frozen=True)
class Operator:
    engine: RoutingEngine
    messages: Any  # MessageStore: reads a send's record by msgid

    def _session(self, open_kfid: str, euid: str) -> Session:
        engine = self.engine
        session = engine.state.sessions.get(open_kfid, euid)
        if session.state not in (ServiceState.NEW, ServiceState.BOT):
            session = engine.assigner.refresh(open_kfid, euid, session)  # design rule 13: ask before refusing
        return session

    def send(self, open_kfid: str, euid: str, message: Message, idempotency_key: str) -> dict[str, Any]:
        msgid = api_msgid(open_kfid, euid, idempotency_key)
        held = self.messages.state_of(msgid)
        if held == RECORDED_SENT:
            return {"msgid": msgid, "state": "sent", "repeated": True}
        session = self._session(open_kfid, euid)
        now = self.engine.clock()
        if session.state not in (ServiceState.NEW, ServiceState.BOT):
            raise Refused("session_state", f"the session is in state {_state(session)}; WeCom takes send_msg only "
                                           "in states 0 and 1 (new, or held by the API)")
        if session.window_at is None or now - session.window_at >= SEND_WINDOW:
            raise Refused("send_window", "the customer has not written in the last 48 hours; WeCom takes send_msg "
                                         "only within 48 h of the customer's last message")
        if session.sends >= SEND_LIMIT and held is None:
            raise Refused("send_budget", f"the {SEND_LIMIT} sends WeCom allows per customer message are used; "
                                         "the customer's next message opens a new budget")
        sent = self.engine.send.send(Said(open_kfid, euid, API_RULE, f"api#{open_kfid}#{euid}#{idempotency_key}"),
                                     "api", message)
        self.engine.record(Decision(open_kfid, euid, session.scene, API_RULE, sent.outcome, detail=sent.detail))
        if sent.outcome == Outcome.SENT:
            return {"msgid": msgid, "state": "sent", "repeated": bool(sent.detail)}
        if sent.outcome == Outcome.NOT_SENT:
            raise Refused("wecom_state", f"not sent: {sent.detail}")
        raise Refused("wecom_refused", f"WeCom refused the message: {sent.detail}")

    def transfer(self, open_kfid: str, euid: str, to: str, servicer: str | None = None) -> dict[str, Any]:
        """To a servicer (WeCom state 3), to the pool (2) or back to Kefu's bot (1)."""
        engine, assigner = self.engine, self.engine.assigner
        session = self._session(open_kfid, euid)
        policy = engine.policy(open_kfid, session)
        rule = f"{API_RULE}: transfer to {to}"
        try:
            if to == "servicer":
                if not servicer:
                    raise ValueError("a transfer to a servicer names the servicer")
                if session.state not in (ServiceState.NEW, ServiceState.BOT, ServiceState.POOL, ServiceState.HUMAN):
                    raise Refused("session_state", f"the session is in state {_state(session)}; an ended session "
                                                   "cannot be moved (the customer's next message opens a new one)")
                if session.state == ServiceState.HUMAN and session.servicer == servicer:
                    return {"state": int(ServiceState.HUMAN), "servicer": servicer, "changed": False}
                try:
                    assigner.hand_to(open_kfid, euid, servicer, session)
                except WeComError as exc:
                    if exc.errcode == NOT_A_SERVICER:
                        raise Refused("not_a_servicer", f"{servicer} is not a receiving servicer of the account "
                                                        "(WeCom errcode 95014)") from None
                    raise
                engine.accounting.assigned(int(engine.clock()), open_kfid, euid, session.scene, servicer,
                                           str(session.name), rule)
                engine.record(Decision(open_kfid, euid, session.scene, rule, Outcome.ASSIGNED, servicer=servicer))
                return {"state": int(ServiceState.HUMAN), "servicer": servicer, "changed": True}
            if to == "pool":
                if session.state not in (ServiceState.NEW, ServiceState.BOT):
                    raise Refused("session_state", f"the session is in state {_state(session)}; only a new session or "
                                                   "one held by the API goes to the pool")
                assigner.to_pool(f"api-pool#{int(engine.clock())}", Target(open_kfid, euid, policy, session.scene, rule))
                return {"state": int(ServiceState.POOL), "changed": True}
            if to == "bot":
                if session.state == ServiceState.BOT:
                    return {"state": int(ServiceState.BOT), "changed": False}
                if session.state != ServiceState.NEW:
                    raise Refused("session_state", f"the session is in state {_state(session)}; WeCom moves a session "
                                                   "to the API (state 1) only from state 0")
                assigner.hold(open_kfid, euid)
                engine.record(Decision(open_kfid, euid, session.scene, rule, Outcome.SKIPPED, detail="held by the API"))
                return {"state": int(ServiceState.BOT), "changed": True}
        except StaleSession as stale:
            assigner.take_truth(open_kfid, euid, session, stale.state, stale.servicer)
            raise Refused("session_state", f"WeCom refused the move: the session is in state {int(stale.state)} "
                                           f"(errcode {stale.metric_code})") from None
        raise ValueError(f"unknown transfer target {to!r}")

    def end(self, open_kfid: str, euid: str) -> dict[str, Any]:
        engine = self.engine
        session = self._session(open_kfid, euid)
        if session.state in (None, ServiceState.ENDED):
            raise Refused("session_state", f"the session is in state {_state(session)}: nothing to end")
        engine.end(open_kfid, euid, session, engine.policy(open_kfid, session), f"{API_RULE}: end",
                   f"api-end#{session.name}", None)
        return {"state": int(ServiceState.ENDED)}
