"""Handing sessions to servicers: the duty roster, capacity reservations, transfers, the pool.

Transfers are made from a known state and settled with kf/service_state/get when WeCom's answer
leaves it open; load counts move inside conditional transactions (LoadStore.reserve), so
concurrent assignments never push a servicer over the limit and a retried one never counts twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from kefu.routing import decide
from kefu.routing.accounting import Accounting
from kefu.routing.outcome import Decision, Outcome
from kefu.routing.ports import StatePort, WeComPort
from kefu.routing.rules import Policy, Rules
from kefu.routing.sending import Said, Sender
from kefu.routing.session import ACTIVE_FIELDS, Session
from kefu.wecom import kf
from kefu.wecom.errors import NOT_A_SERVICER, WeComError
from kefu.wecom.models import ServiceState

HUMAN, POOL, ENDED = ServiceState.HUMAN, ServiceState.POOL, ServiceState.ENDED


class StaleSession(WeComError):
    """WeCom refused a move because the session is elsewhere than Kefu's cache says (ended, picked
    by a servicer, back in the pool), and will keep refusing it: the cache must take WeCom's view
    (design rule 13), not retry the move."""

    def __init__(self, refused: WeComError, state: int, servicer: str | None) -> None:
        super().__init__(refused.path, refused.errcode, refused.errmsg, refused.http_status)
        self.state = ServiceState(state) if state in ServiceState._value2member_map_ else ENDED
        self.servicer = servicer


@dataclass(frozen=True)
class EngineSettings:
    welcome_max_age: float = 20.0
    roster_ttl: float = 600.0
    drain_batch: int = 25
    trans_attempts: int = 3
    trans_backoff: float = 0.2


@dataclass(frozen=True)
class Target:
    """Whose session, under which rules, and why (for the decision line)."""

    open_kfid: str
    euid: str
    policy: Policy
    scene: str | None
    rule: str


class Assigner:
    def __init__(self, wecom: WeComPort, state: StatePort, rules: Callable[[], Rules], settings: EngineSettings,
                 record: Callable[[Decision], None], accounting: Accounting, sender: Sender,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep) -> None:
        self.wecom, self.state, self._rules, self.settings = wecom, state, rules, settings
        self.record, self.accounting, self.sender = record, accounting, sender
        self.clock, self.sleep = clock, sleep

    def roster(self, open_kfid: str) -> dict[str, bool]:
        """Who is on duty: the stored roster while fresh, else kf/servicer/list with the members
        of the account's servicing departments."""
        held = self.state.rosters.get(open_kfid)
        now = self.clock()
        if held is not None and now - held[1] < self.settings.roster_ttl:
            return held[0]
        fresh = kf.duty_roster(self.wecom, open_kfid, held[0] if held is not None else None)
        self.state.rosters.save(open_kfid, fresh, now)
        return fresh

    def refresh(self, open_kfid: str, euid: str, session: Session) -> Session:
        """Ask WeCom where the session is and make the cache say the same (design rule 13)."""
        state, servicer = kf.service_state_get(self.wecom, open_kfid, euid)
        return self.take_truth(open_kfid, euid, session, state, servicer)

    def take_truth(self, open_kfid: str, euid: str, session: Session, state: int, servicer: str | None) -> Session:
        """Bring the cached session to WeCom's ``state`` (and holder): the servicer's load follows
        the session (counted for the holder in state 3, given back otherwise), the pool entry is
        kept only while it waits in state 2, and the state is stored. Safe to repeat."""
        truth = ServiceState(state) if state in ServiceState._value2member_map_ else ENDED
        holder = servicer if truth == HUMAN and servicer else None
        # A count on a session Kefu has not seen with a human is a reservation, maybe of an
        # assignment running right now in another invocation (a pool drain beside the customer's
        # own record): while WeCom has the session waiting it is left alone - that assignment
        # finishes or gives it back, and a dead one is finished by the customer's next attempt.
        reservation = session.counted is not None and session.state != HUMAN
        counted = session.counted
        if counted != holder and not (reservation and truth != ENDED and holder is None):
            self.state.loads.move(open_kfid, euid, counted, holder)
            counted = holder
        fields: dict[str, object] = {"state": truth}
        remove: tuple[str, ...] = ()
        if holder:
            fields.update(servicer=holder, last_servicer=holder)
        else:
            remove = ("servicer",)
        if truth == ENDED:
            remove += ACTIVE_FIELDS  # out of the sweep's index of open sessions
        if truth == POOL:
            if not session.pool_key:
                fields.update(pool_key=self.state.pool.add(open_kfid, euid, self.clock()), pooled_at=int(self.clock()))
        elif session.pool_key:
            self.state.pool.remove(open_kfid, session.pool_key)
            remove += ("pool_key",)
        self.state.sessions.update(open_kfid, euid, fields, remove=remove)
        return session.with_fields({**fields, "counted": counted, **{name: None for name in remove}})

    def assign(self, target: Target, trigger: str | None = None) -> str | None:
        """Transfer the session to a servicer with room, or put it in the pool; returns the servicer."""
        try:
            servicer = self._try_servicers(target)
        except StaleSession as stale:
            self._moved_meanwhile(target, stale)
            return None
        if servicer is None:
            self.to_pool(trigger or f"{target.euid}-pool", target)
        return servicer

    def _moved_meanwhile(self, target: Target, stale: StaleSession) -> None:
        """The session ended or moved at WeCom before Kefu heard of it: nothing to move; the cache
        takes WeCom's view (an event saying so may still be on its way, or lost for good)."""
        session = self.state.sessions.get(target.open_kfid, target.euid)
        self.take_truth(target.open_kfid, target.euid, session, stale.state, stale.servicer)
        self.record(Decision(target.open_kfid, target.euid, target.scene, target.rule, Outcome.SKIPPED,
                             servicer=stale.servicer,
                             detail=f"the session is in state {int(stale.state)} at WeCom (errcode {stale.metric_code})"))

    def _try_servicers(self, target: Target) -> str | None:
        open_kfid, euid, policy = target.open_kfid, target.euid, target.policy
        session = self.state.sessions.get(open_kfid, euid)
        counted = session.counted
        if counted and session.state == HUMAN:
            return counted  # a retried record: already assigned
        roster = self.roster(open_kfid)
        if counted and roster.get(counted):
            # A reservation left by an attempt that died before its transfer: the capacity is
            # already held for this servicer, so finish that transfer (the servicer may look full
            # now precisely because of this reservation).
            if self._transfer(open_kfid, euid, counted, session):
                self._assigned(target, session, counted, f"{target.rule} (reserved)")
                return counted
            # WeCom refused that servicer; _transfer gave the capacity back: choose again below.
        elif counted:
            # ...for a servicer who is no longer on duty: give the capacity back, choose again.
            self.state.loads.move(open_kfid, euid, counted, None)
        loads = self.state.loads.get(open_kfid)
        eligible = decide.eligible_servicers(policy, roster, loads)
        if not eligible:
            return None
        sticky = decide.sticky_servicer(session, policy, self.clock())
        rotation = self.state.rosters.next_rotation(open_kfid) if len(eligible) > 1 else 0
        for servicer in decide.order_candidates(eligible, loads, policy.strategy, rotation, sticky):
            held = self.state.loads.reserve(open_kfid, euid, servicer, policy.max_active_per_servicer)
            if held == "full":
                continue
            if held == "counted" and self.state.sessions.get(open_kfid, euid).counted != servicer:
                continue
            if self._transfer(open_kfid, euid, servicer, session):
                why = "sticky" if servicer == sticky else policy.strategy
                self._assigned(target, session, servicer, f"{target.rule} ({why})")
                return servicer
        return None

    def _assigned(self, target: Target, session: Session, servicer: str, rule: str) -> None:
        self.accounting.assigned(int(self.clock()), target.open_kfid, target.euid, target.scene, servicer,
                                 str(session.name), target.rule)
        self.record(Decision(target.open_kfid, target.euid, target.scene, rule, Outcome.ASSIGNED, servicer=servicer))

    def _transfer(self, open_kfid: str, euid: str, servicer: str, session: Session) -> bool:
        """trans to 3 with a counted reservation. A servicer WeCom refuses gives the count back.
        Any other failure keeps it: another invocation (a pool drain beside the customer's own
        record) may be making this very transfer, and giving the count back while it succeeds
        would let the servicer go over capacity. The failed record is retried and finishes the
        reserved transfer; a session that ended or moved meanwhile (StaleSession) takes WeCom's
        view, which moves the count to wherever the session is."""
        try:
            self._trans(open_kfid, euid, HUMAN, servicer)
        except WeComError as exc:
            if exc.errcode == NOT_A_SERVICER:
                self.state.loads.move(open_kfid, euid, servicer, None)
                self.state.rosters.set_servicer(open_kfid, servicer, False)
                return False
            raise
        now = int(self.clock())
        self.state.sessions.update(open_kfid, euid, {
            "state": HUMAN, "servicer": servicer, "last_servicer": servicer, "last_served_at": now, "assigned_at": now,
        }, remove=("pool_key",))
        if session.pool_key:
            self.state.pool.remove(open_kfid, session.pool_key)
        return True

    def hand_to(self, open_kfid: str, euid: str, servicer: str, session: Session) -> None:
        """An operator's transfer to a named servicer (the conversation API): no capacity rule -
        the operator chose - but the load follows the session, as after any transfer."""
        self._trans(open_kfid, euid, HUMAN, servicer)
        self.state.loads.move(open_kfid, euid, session.counted, servicer)
        now = int(self.clock())
        self.state.sessions.update(open_kfid, euid, {
            "state": HUMAN, "servicer": servicer, "last_servicer": servicer, "last_served_at": now, "assigned_at": now,
        }, remove=("pool_key",))
        if session.pool_key:
            self.state.pool.remove(open_kfid, session.pool_key)

    def hold(self, open_kfid: str, euid: str) -> None:
        """A new session (state 0) taken by the API (state 1), as a send in state 0 does."""
        self._trans(open_kfid, euid, ServiceState.BOT)
        self.state.sessions.update(open_kfid, euid, {"state": ServiceState.BOT})

    def _trans(self, open_kfid: str, euid: str, target: int, servicer: str | None = None) -> str | None:
        """service_state/trans, settled by service_state/get when the answer leaves it open.

        Returns WeCom's msg_code (None when the move is found done without an answer to read it
        from). A transient failure (HTTP 5xx, a timeout) that the state shows was not executed is
        tried again, a few times; any other refusal is raised with the state unchanged."""
        for attempt in range(1, self.settings.trans_attempts + 1):
            try:
                return kf.service_state_trans(self.wecom, open_kfid, euid, target, servicer)
            except WeComError as exc:
                if exc.errcode == NOT_A_SERVICER:
                    raise  # the servicer, not the session, is the problem: the caller tries another
                actual, holder = kf.service_state_get(self.wecom, open_kfid, euid)
                if actual == target and (target != HUMAN or holder == servicer):
                    return None  # it went through before the error reached us
                if not exc.transient and actual in (ENDED, HUMAN):
                    # Ended, or with a servicer already: the cache was stale and the move is moot.
                    raise StaleSession(exc, actual, holder) from None
                if not exc.transient or attempt == self.settings.trans_attempts:
                    raise
                self.sleep(self.settings.trans_backoff * attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def to_pool(self, trigger: str, target: Target, detail: str | None = None) -> None:
        """Into the waiting pool (with the queue notice on the code WeCom gives), once."""
        open_kfid, euid = target.open_kfid, target.euid
        session = self.state.sessions.get(open_kfid, euid)
        if session.state != POOL:
            try:
                code = self._trans(open_kfid, euid, POOL)
            except StaleSession as stale:
                self._moved_meanwhile(target, stale)
                return
            key = session.pool_key or self.state.pool.add(open_kfid, euid, self.clock())
            self.state.sessions.update(open_kfid, euid, {"state": POOL, "pool_key": key, "pooled_at": int(self.clock())})
            if code and target.policy.queue_notice:
                self.sender.on_event(code, Said(open_kfid, euid, f"{target.rule}: queue notice", trigger), "queue",
                                     target.policy.queue_notice)
        self.record(Decision(open_kfid, euid, target.scene, target.rule, Outcome.POOL, detail=detail))

    def end_session(self, open_kfid: str, euid: str, session: Session) -> tuple[Session, str | None]:
        """End the session at WeCom (trans to 4) and in the cache; returns the cached session and
        the msg_code for a closing message (None when it had ended already)."""
        try:
            code = self._trans(open_kfid, euid, ENDED)
        except StaleSession as stale:  # ended meanwhile (or moved: WeCom ends any open state)
            return self.take_truth(open_kfid, euid, session, stale.state, stale.servicer), None
        return self.take_truth(open_kfid, euid, session, ENDED, None), code

    def drain_pool(self, open_kfid: str) -> int:
        """Assign pooled sessions, longest-waiting first, while servicers have room; entries whose
        scene is outside its working hours wait for the opening."""
        assigned = 0
        rules = self._rules()
        now = self.clock()
        for entry in self.state.pool.oldest(open_kfid, self.settings.drain_batch):
            loads = self.state.loads.get(open_kfid)
            roster = self.roster(open_kfid)
            default = rules.policy(open_kfid)
            if not any(on and loads.get(u, 0) < default.max_active_per_servicer for u, on in roster.items()):
                break  # nobody has room at all
            euid = entry.external_userid
            session = self.state.sessions.get(open_kfid, euid)
            policy = rules.policy(open_kfid, session.scene, session.scene_param)
            hours = policy.hours()
            if session.state == POOL and hours is not None and not hours.is_open(rules.local_time(now)):
                continue
            if session.state == POOL:
                # Ask WeCom first: a servicer may have picked it in the WeCom client, or it ended,
                # with no event reaching Kefu - and a transfer would take it from that servicer.
                session = self.refresh(open_kfid, euid, session)
            if session.state != POOL:
                self.state.pool.remove(open_kfid, entry.sort_key)  # assigned, picked or ended meanwhile
                continue
            target = Target(open_kfid, euid, policy, session.scene, "pool drain")
            try:
                if self._try_servicers(target):
                    assigned += 1
            except StaleSession as stale:  # a stale entry never stops the drain: repair it, go on
                self._moved_meanwhile(target, stale)
                self.state.pool.remove(open_kfid, entry.sort_key)
        return assigned
