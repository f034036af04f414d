"""Applying the routing rules to one item from the route queue.

Every WeCom write here is guarded so that a retried queue record never repeats it blindly: sends
carry a msgid derived from the item that caused them (WeCom refuses a repeat), transfers are done
only from a known state and reconciled with kf/service_state/get when the answer is unclear, and
load counts move inside conditional transactions.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kefu.routing import decide
from kefu.routing.accounting import Accounting
from kefu.routing.rules import Policy, Rules
from kefu.store.routing_state import RoutingState
from kefu.wecom import kf
from kefu.wecom.client import WeComClient
from kefu.wecom.errors import INVALID_PARAMETER, NOT_A_SERVICER, WeComError
from kefu.wecom.models import (
    EnterSessionEvent,
    EventType,
    MsgSendFailEvent,
    Origin,
    ServicerStatus,
    ServicerStatusChangeEvent,
    ServiceState,
    SessionChangeType,
    SessionStatusChangeEvent,
    SyncItem,
)

NEW, BOT, POOL, HUMAN, ENDED = (ServiceState.NEW, ServiceState.BOT, ServiceState.POOL, ServiceState.HUMAN,
                                ServiceState.ENDED)
HUMAN_CHANGES = {SessionChangeType.PICKED_FROM_POOL: "picked from pool", SessionChangeType.TRANSFERRED: "transferred",
                 SessionChangeType.REOPENED: "re-opened"}


@dataclass(frozen=True)
class Decision:
    open_kfid: str
    external_userid: str | None
    scene: str | None
    rule: str
    outcome: str
    servicer: str | None = None
    detail: str | None = None

    def fields(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class EngineSettings:
    welcome_max_age: float = 20.0
    roster_ttl: float = 600.0
    drain_batch: int = 25
    trans_attempts: int = 3
    trans_backoff: float = 0.2


def _already_sent(exc: WeComError) -> bool:
    """WeCom refuses a msgid it has seen: the earlier attempt went through."""
    return exc.errcode == INVALID_PARAMETER and "duplicate" in exc.errmsg.lower()


class RoutingEngine:
    def __init__(self, wecom: WeComClient, state: RoutingState, rules: Callable[[], Rules],
                 settings: EngineSettings, record: Callable[[Decision], None],
                 clock: Callable[[], float] = time.time, accounting: Accounting | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.wecom = wecom
        self.accounting = accounting or Accounting(None, "Asia/Shanghai")
        self.state = state
        self._rules = rules
        self.settings = settings
        self.record = record
        self.clock = clock
        self.sleep = sleep

    @property
    def rules(self) -> Rules:
        return self._rules()

    # -- entry point --------------------------------------------------------------------------

    def handle(self, item: SyncItem) -> None:
        """Act on one item once: a customer's item the engine already finished with (a copy
        handed on again after SQS forgot its deduplication id) changes nothing. Each step below
        is safe to repeat, so an item whose handling died half-way is finished by the retry, and
        marked done only then."""
        euid = item.external_userid
        if not euid or not item.msgid:
            self._dispatch(item)
            return
        open_kfid = item.open_kfid or ""
        routed = self.state.routed(open_kfid, euid)
        if routed.has_seen(item.msgid):
            self.record(Decision(open_kfid, euid, None, "repeat", "skipped", detail=item.msgid))
            return
        self._dispatch(item)
        self.state.mark_routed(open_kfid, euid, routed.after(item.msgid))  # one FIFO group per customer: no race

    def _dispatch(self, item: SyncItem) -> None:
        open_kfid = item.open_kfid or ""
        if item.is_event:
            handlers: dict[str, Callable[[SyncItem, str], None]] = {
                EventType.ENTER_SESSION: self._enter_session,
                EventType.SESSION_STATUS_CHANGE: self._session_status_change,
                EventType.SERVICER_STATUS_CHANGE: self._servicer_status_change,
                EventType.MSG_SEND_FAIL: self._send_failed,
            }
            handler = handlers.get(item.event_type or "")
            if handler is not None:
                handler(item, open_kfid)
        elif item.origin == Origin.CUSTOMER and item.external_userid:
            self._customer_message(item, open_kfid, item.external_userid)
        elif item.origin == Origin.SERVICER and item.external_userid and item.servicer_userid:
            # Servicers' own messages route nothing; they only count (messages, first response).
            session = self.state.session(open_kfid, item.external_userid)
            self.accounting.servicer_message(item.msgid, self._at(item), open_kfid, item.external_userid,
                                             item.servicer_userid, session)

    def _at(self, item: SyncItem) -> int:
        return int(item.send_time or self.clock())

    # -- welcome --------------------------------------------------------------------------------

    def _enter_session(self, item: SyncItem, open_kfid: str) -> None:
        event, euid = item.event_as(EnterSessionEvent), item.external_userid
        if not euid or event is None:
            return
        scene = event.scene or None
        self.state.update_session(open_kfid, euid, {"scene": scene or "", "scene_param": event.scene_param or "",
                                                     "entered_at": item.send_time or int(self.clock())})
        self.accounting.entered(item.msgid, self._at(item), open_kfid, euid, scene, event.scene_param)
        policy = self.rules.policy(open_kfid, scene)
        code = event.welcome_code
        decision = Decision(open_kfid, euid, scene, "welcome", "none")
        if not code or not policy.welcome:
            decision = Decision(open_kfid, euid, scene, "welcome", "skipped",
                                detail="no welcome_code" if not code else "no welcome text")
        elif self.clock() - (item.send_time or self.clock()) > self.settings.welcome_max_age:
            decision = Decision(open_kfid, euid, scene, "welcome", "skipped", detail="welcome_code expired")
        else:
            outcome = self._send_on_event(code, decide.send_id(item.msgid, "welcome"),
                                          {"msgtype": "text", "text": {"content": policy.welcome}})
            decision = Decision(open_kfid, euid, scene, "scene welcome" if self._scene_has(open_kfid, scene, "welcome")
                                else "welcome", outcome)
        self.record(decision)

    def _scene_has(self, open_kfid: str, scene: str | None, key: str) -> bool:
        if not scene:
            return False
        return self.rules.policy(open_kfid, scene).model_dump().get(key) != self.rules.policy(open_kfid).model_dump().get(key)

    def _send_on_event(self, code: str, msgid: str, message: dict[str, Any]) -> str:
        try:
            kf.send_on_event(self.wecom, code, msgid, message)
            return "sent"
        except WeComError as exc:
            if _already_sent(exc):
                return "sent"
            # A code works once and dies fast: a failed send is reported, never repeated.
            return f"failed:{exc.metric_code}"

    # -- customer messages ----------------------------------------------------------------------

    def _customer_message(self, item: SyncItem, open_kfid: str, euid: str) -> None:
        session = self.state.session(open_kfid, euid)
        scene = session.get("scene") or None
        policy = self.rules.policy(open_kfid, scene)
        if item.menu_id:
            self._menu_click(item, open_kfid, euid, session, policy, scene)
            return
        state = self._known_state(open_kfid, euid, session)
        if state == ENDED:
            state = NEW  # the customer's message opens a new session at WeCom
        fields: dict[str, Any] = {"state": state}
        fresh_window = session.get("window_msgid") != item.msgid
        if fresh_window:
            # A new customer message opens a fresh window of 5 sends; a retried one must not.
            fields.update(window_at=item.send_time or int(self.clock()), sends=0, window_msgid=item.msgid)
        if "session_started" not in session or session.get("state") == ENDED or "state" not in session:
            fields["session_started"] = item.send_time or int(self.clock())
            # send_time counts whole seconds: a session that ends and starts again within one
            # second has the same start, so the message that opened it names the session.
            fields["session_id"] = item.msgid
        self.state.update_session(open_kfid, euid, fields, remove=("send_ids",) if fresh_window else ())
        session.update(fields)
        self.accounting.received(item.msgid, self._at(item), open_kfid, euid, scene, item.msgtype,
                                 str(session.get("session_id") or session.get("session_started")),
                                 new_session="session_started" in fields)
        if state in (POOL, HUMAN):
            self.record(Decision(open_kfid, euid, scene, "held", "pool" if state == POOL else "human",
                                 servicer=session.get("servicer")))
            return
        hours = policy.hours()
        if hours is not None and not hours.is_open(self.rules.local_time(item.send_time or self.clock())):
            self._off_hours(item, open_kfid, euid, session, policy, scene)
            return
        if policy.bot is not None:
            match = decide.match_bot(policy.bot, item.text)
            if match.outcome == "reply":
                outcome = self._send_text(item, open_kfid, euid, "bot", match.text or "")
                self.record(Decision(open_kfid, euid, scene, f"bot keyword {match.keyword!r}", outcome))
                return
            if match.outcome == "unmatched" and policy.bot.unmatched == "ignore":
                self.record(Decision(open_kfid, euid, scene, "bot unmatched", "ignored"))
                return
            rule = f"hand-off keyword {match.keyword!r}" if match.outcome == "handoff" else "bot unmatched: handoff"
            self.assign(open_kfid, euid, policy, scene, rule)
            return
        self.assign(open_kfid, euid, policy, scene, "assign")

    def _known_state(self, open_kfid: str, euid: str, session: dict[str, Any]) -> int:
        if "state" in session:
            return int(session["state"])
        state, servicer = kf.service_state_get(self.wecom, open_kfid, euid)
        fields: dict[str, Any] = {"state": state}
        if servicer:
            fields["servicer"] = servicer
        self.state.update_session(open_kfid, euid, fields)
        session.update(fields)
        return state

    def _send_text(self, item: SyncItem, open_kfid: str, euid: str, purpose: str, text: str) -> str:
        msgid = decide.send_id(item.msgid, purpose)
        if not self.state.take_send(open_kfid, euid, self.clock(), msgid):
            return "not sent: no send left in this window or session not in state 0/1"
        try:
            kf.send_text(self.wecom, open_kfid, euid, msgid, text)
        except WeComError as exc:
            if not _already_sent(exc):
                raise
        self.state.update_session(open_kfid, euid, {"state": BOT})  # a send in state 0 makes it 1 at WeCom
        return "sent"

    def _off_hours(self, item: SyncItem, open_kfid: str, euid: str, session: dict[str, Any], policy: Policy,
                   scene: str | None) -> None:
        started = session.get("session_id") or session.get("session_started")
        replied = None
        if policy.off_hours_reply and session.get("off_hours_for") != started:
            replied = self._send_text(item, open_kfid, euid, "off-hours", policy.off_hours_reply)
            self.state.update_session(open_kfid, euid, {"off_hours_for": started})
        self._to_pool(item.msgid, open_kfid, euid, policy, scene, "off hours", detail=f"reply {replied}" if replied else None)

    def _menu_click(self, item: SyncItem, open_kfid: str, euid: str, session: dict[str, Any], policy: Policy,
                    scene: str | None) -> None:
        score = decide.rating_for(policy.closing, item.menu_id or "")
        if score is None:
            self.record(Decision(open_kfid, euid, scene, "menu click", "ignored", detail=item.menu_id))
            return
        self.state.update_session(open_kfid, euid, {"rating": score, "rating_item": item.menu_id,
                                                     "rated_at": item.send_time or int(self.clock())})
        self.accounting.rated(item.msgid, self._at(item), open_kfid, euid, scene,
                              session.get("last_servicer"), score)
        self.record(Decision(open_kfid, euid, scene, "satisfaction", "rated", servicer=session.get("last_servicer"),
                             detail=str(score)))

    # -- assignment -----------------------------------------------------------------------------

    def roster(self, open_kfid: str) -> dict[str, bool]:
        held = self.state.roster(open_kfid)
        now = self.clock()
        if held is not None and now - held[1] < self.settings.roster_ttl:
            return held[0]
        fresh = kf.servicer_list(self.wecom, open_kfid)
        self.state.save_roster(open_kfid, fresh, now)
        return fresh

    def assign(self, open_kfid: str, euid: str, policy: Policy, scene: str | None, rule: str,
               trigger: str | None = None) -> str | None:
        """Transfer the session to a servicer with room, or put it in the pool; returns the servicer."""
        servicer = self._try_servicers(open_kfid, euid, policy, scene, rule)
        if servicer is None:
            self._to_pool(trigger or f"{euid}-pool", open_kfid, euid, policy, scene, rule)
        return servicer

    def _try_servicers(self, open_kfid: str, euid: str, policy: Policy, scene: str | None, rule: str) -> str | None:
        session = self.state.session(open_kfid, euid)
        counted = str(session["counted"]) if session.get("counted") else None
        if counted and int(session.get("state", -1)) == HUMAN:
            return counted  # a retried record: already assigned
        roster = self.roster(open_kfid)
        if counted and roster.get(counted):
            # A reservation left by an attempt that died before its transfer: the capacity is
            # already held for this servicer, so finish that transfer (the servicer may look full
            # now precisely because of this reservation).
            if self._transfer(open_kfid, euid, counted, session):
                self.accounting.assigned(int(self.clock()), open_kfid, euid, scene, counted,
                                         str(session.get("session_id") or session.get("session_started")), rule)
                self.record(Decision(open_kfid, euid, scene, f"{rule} (reserved)", "assigned", servicer=counted))
                return counted
            counted = None  # WeCom refused that servicer; _transfer gave the capacity back
        elif counted:
            # ...for a servicer who is no longer on duty: give the capacity back, choose again.
            self.state.move_count(open_kfid, euid, counted, None)
            counted = None
        loads = self.state.loads(open_kfid)
        eligible = decide.eligible_servicers(policy, roster, loads)
        if not eligible:
            return None
        sticky = decide.sticky_servicer(session, policy, self.clock())
        rotation = self.state.next_rotation(open_kfid) if len(eligible) > 1 else 0
        for servicer in decide.order_candidates(eligible, loads, policy.strategy, rotation, sticky):
            held = self.state.reserve(open_kfid, euid, servicer, policy.max_active_per_servicer)
            if held == "full":
                continue
            if held == "counted":
                current = self.state.session(open_kfid, euid).get("counted")
                if current != servicer:
                    continue
            if self._transfer(open_kfid, euid, servicer, session):
                self.accounting.assigned(int(self.clock()), open_kfid, euid, scene, servicer,
                                         str(session.get("session_id") or session.get("session_started")), rule)
                why = "sticky" if servicer == sticky else policy.strategy
                self.record(Decision(open_kfid, euid, scene, f"{rule} ({why})", "assigned", servicer=servicer))
                return servicer
        return None

    def _transfer(self, open_kfid: str, euid: str, servicer: str, session: dict[str, Any]) -> bool:
        """trans to 3 with a counted reservation; undo the count when WeCom refuses."""
        try:
            self._trans(open_kfid, euid, HUMAN, servicer)
        except WeComError as exc:
            self.state.move_count(open_kfid, euid, servicer, None)
            if exc.errcode == NOT_A_SERVICER:
                self.state.set_servicer(open_kfid, servicer, False)
                return False
            raise
        self.state.update_session(open_kfid, euid, {
            "state": HUMAN, "servicer": servicer, "last_servicer": servicer,
            "last_served_at": int(self.clock()), "assigned_at": int(self.clock()),
        }, remove=("pool_key",))
        if session.get("pool_key"):
            self.state.pool_remove(open_kfid, str(session["pool_key"]))
        return True

    def _trans(self, open_kfid: str, euid: str, target: int, servicer: str | None = None) -> str | None:
        """service_state/trans, settled by service_state/get when the answer leaves it open.

        Returns WeCom's msg_code (None when the move is found done without an answer to read it
        from). A transient failure (HTTP 5xx, a timeout) that the state shows was not executed is
        tried again, a few times; any other refusal is raised with the state unchanged."""
        for attempt in range(1, self.settings.trans_attempts + 1):
            try:
                return kf.service_state_trans(self.wecom, open_kfid, euid, target, servicer)
            except WeComError as exc:
                actual, holder = kf.service_state_get(self.wecom, open_kfid, euid)
                if actual == target and (target != HUMAN or holder == servicer):
                    return None  # it went through before the error reached us
                if not exc.transient or attempt == self.settings.trans_attempts:
                    raise
                self.sleep(self.settings.trans_backoff * attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def _to_pool(self, trigger: str, open_kfid: str, euid: str, policy: Policy, scene: str | None, rule: str,
                 detail: str | None = None) -> None:
        session = self.state.session(open_kfid, euid)
        if int(session.get("state", -1)) != POOL:
            code = self._trans(open_kfid, euid, POOL)
            key = session.get("pool_key") or self.state.pool_add(open_kfid, euid, self.clock())
            self.state.update_session(open_kfid, euid, {"state": POOL, "pool_key": key, "pooled_at": int(self.clock())})
            if code and policy.queue_notice:
                self._send_on_event(code, decide.send_id(trigger, "queue"), {"msgtype": "text",
                                                                            "text": {"content": policy.queue_notice}})
        self.record(Decision(open_kfid, euid, scene, rule, "pool", detail=detail))

    # -- session changes made by servicers ------------------------------------------------------

    def _session_status_change(self, item: SyncItem, open_kfid: str) -> None:
        event, euid = item.event_as(SessionStatusChangeEvent), item.external_userid
        if not euid or event is None:
            return
        change = event.change_type
        old = event.old_servicer_userid or None
        new = event.new_servicer_userid or None
        session = self.state.session(open_kfid, euid)
        scene = session.get("scene") or None
        counted = session.get("counted")
        if change == SessionChangeType.ENDED:
            if counted:
                self.state.move_count(open_kfid, euid, str(counted), None)
            self.state.update_session(open_kfid, euid, {"state": ENDED}, remove=("servicer", "pool_key"))
            if session.get("pool_key"):
                self.state.pool_remove(open_kfid, str(session["pool_key"]))
            if old:
                self.state.update_session(open_kfid, euid, {"last_servicer": old, "last_served_at": item.send_time or int(self.clock())})
            closing = decide.closing_message(self.rules.policy(open_kfid, scene).closing)
            code = event.msg_code
            outcome = "ended"
            if closing and code and self.clock() - (item.send_time or self.clock()) <= self.settings.welcome_max_age:
                outcome = "ended, closing " + self._send_closing(open_kfid, euid, code, item.msgid, closing)
            self.accounting.ended(item.msgid, self._at(item), open_kfid, euid, scene, old)
            self.record(Decision(open_kfid, euid, scene, "session ended", outcome, servicer=old))
        elif change in HUMAN_CHANGES and new:
            self.state.move_count(open_kfid, euid, str(counted) if counted else None, new)
            self.state.update_session(open_kfid, euid, {"state": HUMAN, "servicer": new, "last_servicer": new,
                                                         "last_served_at": self._at(item), "assigned_at": self._at(item)},
                                      remove=("pool_key",))
            self.accounting.assigned(self._at(item), open_kfid, euid, scene, new,
                                     str(session.get("session_id") or session.get("session_started")),
                                     HUMAN_CHANGES[SessionChangeType(change)])
            if session.get("pool_key"):
                self.state.pool_remove(open_kfid, str(session["pool_key"]))
            name = HUMAN_CHANGES[SessionChangeType(change)]
            self.record(Decision(open_kfid, euid, scene, name, "human", servicer=new))
        self.drain_pool(open_kfid)

    def _send_closing(self, open_kfid: str, euid: str, code: str, msgid: str, closing: dict[str, Any]) -> str:
        """The closing message works only while the session is still the ended one: a customer who
        wrote again meanwhile (their message still queued behind this event) opened a new session,
        and WeCom would refuse the code with 95018. Ask WeCom first (rule 7: know the state)."""
        actual, _ = kf.service_state_get(self.wecom, open_kfid, euid)
        if actual != ENDED:
            return "skipped: the customer opened a new session"
        return self._send_on_event(code, decide.send_id(msgid, "closing"), closing)

    def _servicer_status_change(self, item: SyncItem, open_kfid: str) -> None:
        event = item.event_as(ServicerStatusChangeEvent)
        userid = event.servicer_userid if event is not None else None
        if event is None or not userid:
            return
        receiving = event.status == ServicerStatus.RECEIVING
        self.state.set_servicer(open_kfid, str(userid), receiving)
        self.record(Decision(open_kfid, None, None, "servicer status", "on duty" if receiving else "off duty",
                             servicer=str(userid)))
        if receiving:
            self.drain_pool(open_kfid)

    def _send_failed(self, item: SyncItem, open_kfid: str) -> None:
        event = item.event_as(MsgSendFailEvent) or MsgSendFailEvent()
        self.record(Decision(open_kfid, item.external_userid, None, "msg_send_fail", "reported",
                             detail=f"fail_type={event.fail_type} msgid={event.fail_msgid}"))

    # -- the pool -------------------------------------------------------------------------------

    def drain_pool(self, open_kfid: str) -> int:
        """Assign pooled sessions, longest-waiting first, while servicers have room."""
        assigned = 0
        for entry in self.state.pool_oldest(open_kfid, self.settings.drain_batch):
            loads = self.state.loads(open_kfid)
            roster = self.roster(open_kfid)
            default = self.rules.policy(open_kfid)
            if not any(on and loads.get(u, 0) < default.max_active_per_servicer for u, on in roster.items()):
                break  # nobody has room at all
            session = self.state.session(open_kfid, entry.external_userid)
            if int(session.get("state", -1)) != POOL:
                self.state.pool_remove(open_kfid, entry.sort_key)  # assigned or ended meanwhile
                continue
            scene = session.get("scene") or None
            policy = self.rules.policy(open_kfid, scene)
            if self._try_servicers(open_kfid, entry.external_userid, policy, scene, "pool drain"):
                assigned += 1
        return assigned
