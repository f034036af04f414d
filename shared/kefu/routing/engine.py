"""Applying the routing rules to one item from the route queue: which item is it, and what do the
rules say to do with it. Assignment lives in kefu.routing.assigner, sending in kefu.routing.sending.

Every WeCom write is guarded so that a retried queue record never repeats it blindly: sends carry
a msgid derived from the item that caused them (WeCom refuses a repeat), transfers are done only
from a known state and reconciled with kf/service_state/get when the answer is unclear, and load
counts move inside conditional transactions.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kefu.routing import decide, outbound
from kefu.routing.accounting import Accounting
from kefu.routing.assigner import Assigner, EngineSettings, Target
from kefu.routing.decide import Routed
from kefu.routing.outbound import Action, MediaId, Message
from kefu.routing.outcome import Decision, Outcome
from kefu.routing.ports import StatePort, TranscriptPort, WeComPort
from kefu.routing.rules import BotAi, Policy, Rules
from kefu.routing.sending import Said, Sender
from kefu.routing.session import ACTIVE_FIELDS, Session, active_since
from kefu.routing.upgrades import Upgrader
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

if TYPE_CHECKING:  # the answerer's types only: kefu.answerer is loaded by the function that wires one
    from kefu.answerer import Answer, Answerer

__all__ = ["DRAIN_TASK", "SESSION_TASK", "Decision", "EngineSettings", "Outcome", "RoutingEngine"]

SESSION_TASK = "session"  # the sweep's task names (kefu.sweep queues them, RoutingEngine.run_task runs them)
DRAIN_TASK = "drain"

HUMAN_CHANGES = {SessionChangeType.PICKED_FROM_POOL: "picked from pool", SessionChangeType.TRANSFERRED: "transferred",
                 SessionChangeType.REOPENED: "re-opened"}


def _at(item: SyncItem, clock: Callable[[], float]) -> int:
    return int(item.send_time or clock())


def _content(item: SyncItem) -> dict[str, Any] | None:
    """The message an item carries, as WeCom sent it: {"msgtype": ..., <msgtype>: {...}}."""
    body = item.raw.get(item.msgtype) if item.msgtype else None
    return {"msgtype": item.msgtype, item.msgtype: body} if isinstance(body, dict) else None


def _recorded_text(record: dict[str, Any]) -> str | None:
    """The text of a Kefu send as the conversation record holds it."""
    try:
        message = json.loads(str(record.get("raw") or "{}"))
    except ValueError:
        return None
    content = (message.get("text") or {}).get("content") if isinstance(message, dict) else None
    return str(content) if content else None


def ended_id(open_kfid: str, euid: str, session: Session, fallback: str) -> str:
    """What names a session's end in the statistics and events: the session, so however Kefu
    learns of the end (WeCom's event, the sweep finding it unseen, its own idle end) it counts once."""
    return f"{open_kfid}#{euid}#{session.name}" if session.name else fallback


def _scene_has(rules: Rules, open_kfid: str, session: Session, key: str) -> bool:
    """True when the scene's (or scene_param's) rules set ``key`` differently from the account's."""
    if not session.scene and not session.scene_param:
        return False
    own = rules.policy(open_kfid, session.scene, session.scene_param).model_dump().get(key)
    return bool(own != rules.policy(open_kfid).model_dump().get(key))


class RoutingEngine:
    def __init__(self, wecom: WeComPort, state: StatePort, rules: Callable[[], Rules],
                 settings: EngineSettings, record: Callable[[Decision], None], transcript: TranscriptPort,
                 clock: Callable[[], float] = time.time, accounting: Accounting | None = None,
                 sleep: Callable[[float], None] = time.sleep, media_id: MediaId | None = None,
                 retention_days: int = 0, answerer: Answerer | None = None) -> None:
        self.state = state
        self.answerer = answerer
        self._rules = rules
        self.settings = settings
        self.record = record
        self.clock = clock
        self.accounting = accounting or Accounting(None, "Asia/Shanghai")
        self.send = Sender(wecom, state, clock, transcript, media_id, retention_days, announce=self._announce)
        self.upgrades = Upgrader(wecom, transcript, self.accounting, clock, retention_days)
        self.assigner = Assigner(wecom, state, rules, settings, record, self.accounting, self.send, clock, sleep)

    @property
    def rules(self) -> Rules:
        return self._rules()

    def _announce(self, said: Said, msgid: str, message: dict[str, Any], error: str | None) -> None:
        self.accounting.kefu_sent(msgid, int(self.clock()), said.open_kfid, said.euid, said.rule, message, error)

    def hand_off(self, target: Target, trigger: str) -> None:
        """To a human - unless the rules leave the conversation to the enterprise's own system
        (``handler: external``): then the session stays with the API and nothing is moved."""
        if target.policy.handler == "external":
            self.record(Decision(target.open_kfid, target.euid, target.scene, target.rule, Outcome.EXTERNAL,
                                 detail="left to the enterprise's system (handler: external)"))
            return
        self.assigner.assign(target, trigger=trigger)

    def policy(self, open_kfid: str, session: Session) -> Policy:
        """The rules for the customer's entry: its scene and scene_param."""
        return self.rules.policy(open_kfid, session.scene, session.scene_param)

    def handle(self, item: SyncItem) -> None:
        """Act on one item once: a customer's item the engine already finished with (a copy
        handed on again after SQS forgot its deduplication id) changes nothing. Each step below
        is safe to repeat, so an item whose handling died half-way is finished by the retry, and
        marked done only then."""
        euid = item.external_userid
        if not euid or not item.msgid:
            self._dispatch(item, None)
            return
        open_kfid = item.open_kfid or ""
        session = self.state.sessions.get(open_kfid, euid)  # read once; the handlers start from it
        routed = Routed(session.routed)
        if routed.has_seen(item.msgid):
            self.record(Decision(open_kfid, euid, None, "repeat", Outcome.SKIPPED, detail=item.msgid))
            return
        also = self._dispatch(item, session)
        # One FIFO group per customer: no race. ``also``: session fields the handler left to this write.
        self.state.sessions.mark_routed(open_kfid, euid, routed.after(item.msgid), also)

    def _dispatch(self, item: SyncItem, session: Session | None) -> dict[str, Any] | None:
        """``session``: the customer's session as read just before, when the item names one.
        Returns session fields to write when the item is marked done (in the same write), if any."""
        open_kfid, euid = item.open_kfid or "", item.external_userid
        if item.is_event:
            handlers: dict[str, Callable[[SyncItem, str, Session | None], None]] = {
                EventType.ENTER_SESSION: self._enter_session,
                EventType.SESSION_STATUS_CHANGE: self._session_status_change,
                EventType.SERVICER_STATUS_CHANGE: self._servicer_status_change,
                EventType.MSG_SEND_FAIL: self._send_failed,
            }
            handler = handlers.get(item.event_type or "")
            if handler is not None:
                handler(item, open_kfid, session)
        elif item.origin == Origin.CUSTOMER and euid:
            self._customer_message(item, open_kfid, euid, session or self.state.sessions.get(open_kfid, euid))
        elif item.origin == Origin.SERVICER and euid and item.servicer_userid:
            # Servicers' own messages route nothing; they count (messages, first response) and keep
            # the session from looking idle.
            session = session or self.state.sessions.get(open_kfid, euid)
            self.accounting.servicer_message(item.msgid, _at(item, self.clock), open_kfid, euid,
                                             item.servicer_userid, session, item.msgtype, _content(item))
            if session.state is not None and session.state != ServiceState.ENDED:
                return active_since(open_kfid, _at(item, self.clock), session)  # written with the mark
        return None

    # -- welcome --------------------------------------------------------------------------------

    def _enter_session(self, item: SyncItem, open_kfid: str, known: Session | None) -> None:
        event, euid = item.event_as(EnterSessionEvent), item.external_userid
        if not euid or event is None:
            return
        scene = event.entry_scene
        fields = {"scene": scene or "", "scene_param": event.scene_param or "", "entered_at": _at(item, self.clock)}
        self.state.sessions.update(open_kfid, euid, fields)
        session = (known or Session()).with_fields(fields)
        policy = self.policy(open_kfid, session)
        code = event.welcome_code
        if not code or not policy.welcome:
            decision = Decision(open_kfid, euid, scene, "welcome", Outcome.SKIPPED,
                                detail="no welcome_code" if not code else "no welcome message")
        elif self.clock() - _at(item, self.clock) > self.settings.welcome_max_age:
            decision = Decision(open_kfid, euid, scene, "welcome", Outcome.SKIPPED, detail="welcome_code expired")
        else:
            rule = "scene welcome" if _scene_has(self.rules, open_kfid, session, "welcome") else "welcome"
            sent = self.send.on_event(code, Said(open_kfid, euid, rule, item.msgid), "welcome", policy.welcome)
            decision = Decision(open_kfid, euid, scene, rule, sent.outcome, detail=sent.detail)
        # Counted after the welcome: its code lives 20 s, the statistics can wait (rule 8).
        self.accounting.entered(item.msgid, _at(item, self.clock), open_kfid, euid, scene, event.scene_param)
        self.record(decision)
        if policy.upgrade is not None and policy.upgrade.on_entry:
            offered = self.upgrades.offer(Said(open_kfid, euid, "upgrade on entry", item.msgid), policy.upgrade.offer,
                                          scene, session.last_servicer)
            self.record(Decision(open_kfid, euid, scene, "upgrade on entry", offered.outcome, detail=offered.detail))

    # -- customer messages ----------------------------------------------------------------------

    def _customer_message(self, item: SyncItem, open_kfid: str, euid: str, session: Session) -> None:
        scene = session.scene
        policy = self.policy(open_kfid, session)
        if item.menu_id:
            self._menu_click(item, open_kfid, euid, session, policy)
            return
        cached = session.state
        if cached not in (ServiceState.NEW, ServiceState.BOT):
            # Unknown, ended, waiting or with a human: ask WeCom (design rule 13). A session that
            # ended or moved with no event reaching Kefu is repaired here, so the customer is served;
            # a message written before an end (queued behind it, or a late copy) belongs to the
            # ended session.
            session = self.assigner.refresh(open_kfid, euid, session)
        if session.state == ServiceState.ENDED:
            self.record(Decision(open_kfid, euid, scene, "message of an ended session", Outcome.SKIPPED))
            return
        state = session.state
        at = _at(item, self.clock)
        fields: dict[str, Any] = {"state": state, **active_since(open_kfid, at, session)}
        fresh_window = session.window_msgid != item.msgid and at >= (session.window_at or 0)
        if fresh_window:
            # A newer customer message opens a fresh window of 5 sends; a retried or an older one
            # (a late copy, a record redriven from the DLQ) must not.
            fields.update(window_at=at, sends=0, window_msgid=item.msgid)
        reopened = cached in (ServiceState.ENDED, ServiceState.POOL, ServiceState.HUMAN) and state in (
            ServiceState.NEW, ServiceState.BOT)
        new_session = session.session_started is None or reopened
        if new_session:
            # send_time counts whole seconds: a session that ends and starts again within one
            # second has the same start, so the message that opened it names the session.
            fields.update(session_started=at, session_id=item.msgid)
        self.state.sessions.update(open_kfid, euid, fields, remove=("send_ids",) if fresh_window else ())
        session = session.with_fields(fields)
        self.accounting.received(item.msgid, _at(item, self.clock), open_kfid, euid, scene, item.msgtype,
                                 str(session.name), new_session=new_session, message=_content(item))
        if state in (ServiceState.POOL, ServiceState.HUMAN):
            held = Outcome.POOL if state == ServiceState.POOL else Outcome.HUMAN
            self.record(Decision(open_kfid, euid, scene, "held", held, servicer=session.servicer))
            return
        hours = policy.hours()
        if hours is not None and not hours.is_open(self.rules.local_time(_at(item, self.clock))):
            self._off_hours(item, Target(open_kfid, euid, policy, scene, "off hours"), session)
            return
        self._reply(item, Target(open_kfid, euid, policy, scene, "assign"))

    def _reply(self, item: SyncItem, target: Target) -> None:
        """The bot's keyword rule, or a hand-off to a human (with no bot: straight to one)."""
        bot = target.policy.bot
        if bot is None:
            self.hand_off(target, item.msgid)  # the queue notice's msgid: one per message
            return
        match = decide.match_bot(bot, item.text)
        if match.outcome == "reply" and match.reply is not None:
            self._act(match.reply, Target(target.open_kfid, target.euid, target.policy, target.scene,
                                          f"bot keyword {match.keyword!r}"), item.msgid, "bot")
        elif match.outcome == "unmatched" and bot.ai is not None and item.text and self.answerer is not None:
            self._ai_answer(item, target, bot.ai, item.text, self.answerer)
        elif match.outcome == "unmatched" and bot.unmatched == "ignore":
            self.record(Decision(target.open_kfid, target.euid, target.scene, "bot unmatched", Outcome.IGNORED))
        else:
            rule = f"hand-off keyword {match.keyword!r}" if match.outcome == "handoff" else "bot unmatched: handoff"
            self.hand_off(Target(target.open_kfid, target.euid, target.policy, target.scene, rule), item.msgid)

    def _ai_answer(self, item: SyncItem, target: Target, ai: BotAi, text: str, answerer: Answerer) -> None:
        """The AI answerer's answer, sent within the customer's window like any send; no answer (or
        no send left) goes to ``ai.otherwise``: a person, or the fallback text. A retried record
        re-sends the answer its first attempt recorded instead of asking the model again."""
        from kefu.answerer import Answer, Question

        open_kfid, euid, scene, at = target.open_kfid, target.euid, target.scene, _at(item, self.clock)
        said = Said(open_kfid, euid, "bot ai", item.msgid)
        earlier = self.send.recorded(said, "ai")
        if earlier is not None:
            marks = earlier.get("ai") or {}
            answer = Answer("answered", _recorded_text(earlier),
                            tuple(map(str, marks.get("sources") or ())), model=marks.get("model"),
                            detail="as its first attempt recorded")
        else:
            day = self.accounting.day(at)
            answer = answerer.answer(ai, Question(open_kfid, euid, text, decide.item_tag(item.msgid), day,
                                                       day[:7]))
        if answer.outcome == "answered" and answer.text:
            sent = self.send.send(said, "ai", outbound.text(answer.text), ai=answer.marks())
            sources = ", ".join(answer.sources)
            self.record(Decision(open_kfid, euid, scene, "bot ai", sent.outcome,
                                 detail=f"sources {sources}; {sent}" + (f"; {answer.detail}" if answer.detail else "")))
            if sent.outcome == Outcome.SENT:
                self.accounting.ai_question(item.msgid, at, open_kfid, scene, "answered")
                return
            answer = Answer("unavailable", detail=f"the answer was not sent: {sent}")
        self._ai_otherwise(item, target, ai, answer, at)

    def _ai_otherwise(self, item: SyncItem, target: Target, ai: BotAi, answer: Answer, at: int) -> None:
        open_kfid, euid, scene = target.open_kfid, target.euid, target.scene
        rule = f"bot ai {answer.outcome}"
        if ai.otherwise == "fallback" and ai.fallback:
            sent = self.send.send(Said(open_kfid, euid, f"{rule}: fallback", item.msgid), "ai-fallback",
                                  outbound.text(ai.fallback))
            self.record(Decision(open_kfid, euid, scene, f"{rule}: fallback", sent.outcome,
                                 detail=f"{answer.detail}; fallback {sent}"))
            if sent.outcome == Outcome.SENT:
                self.accounting.ai_question(item.msgid, at, open_kfid, scene, "fallback")
                return
        self.accounting.ai_question(item.msgid, at, open_kfid, scene, "handed_off")
        self.hand_off(Target(open_kfid, euid, target.policy, scene, f"{rule}: hand-off ({answer.detail})"), item.msgid)

    def _act(self, action: Action, target: Target, trigger: str, purpose: str) -> None:
        """A bot keyword's or a menu click's action, in order: the reply, the 升级服务 offer, then
        the hand-off (to the customer's scene's servicers, or the named scene's) or the end."""
        open_kfid, euid = target.open_kfid, target.euid
        said = Said(open_kfid, euid, target.rule, trigger)
        if action.reply is not None:
            sent = self.send.send(said, purpose, action.reply)
            self.record(Decision(open_kfid, euid, target.scene, target.rule, sent.outcome,
                                 detail=f"{action.reply.kind}: {sent}" if sent.detail else action.reply.kind))
        if action.upgrade is not None:
            session = self.state.sessions.get(open_kfid, euid)
            offered = self.upgrades.offer(said, action.upgrade, target.scene, session.servicer or session.last_servicer)
            self.record(Decision(open_kfid, euid, target.scene, f"{target.rule}: upgrade", offered.outcome,
                                 detail=offered.detail))
        if action.handoff is not None:
            policy, scene = target.policy, target.scene
            if action.handoff.scene:
                policy = self.rules.policy(open_kfid, action.handoff.scene)
                scene = action.handoff.scene
            self.hand_off(Target(open_kfid, euid, policy, target.scene,
                                 f"{target.rule}: hand-off" + (f" to scene {scene!r}" if scene != target.scene else "")),
                          trigger)
        elif action.end:
            session = self.state.sessions.get(open_kfid, euid)
            self.end(open_kfid, euid, session, target.policy, f"{target.rule}: end", trigger, None)

    def _off_hours(self, item: SyncItem, target: Target, session: Session) -> None:
        replied = None
        if target.policy.off_hours_reply and session.off_hours_for != session.name:
            replied = self.send.send(Said(target.open_kfid, target.euid, "off hours", item.msgid), "off-hours",
                                     target.policy.off_hours_reply)
            self.state.sessions.update(target.open_kfid, target.euid, {"off_hours_for": session.name})
        if target.policy.handler == "external":  # the enterprise's system answers when it opens: no pool
            self.record(Decision(target.open_kfid, target.euid, target.scene, target.rule, Outcome.EXTERNAL,
                                 detail=f"reply {replied}" if replied else None))
            return
        self.assigner.to_pool(item.msgid, target, detail=f"reply {replied}" if replied else None)

    def _menu_click(self, item: SyncItem, open_kfid: str, euid: str, session: Session, policy: Policy) -> None:
        """A click on a menu Kefu sent: a rating (the satisfaction menu), or a menu action. A click
        opens no send window (WeCom's rule): a reply it asks for is sent only while the window of
        the customer's last written message has sends left."""
        menu_id = item.menu_id or ""
        score = decide.rating_for(policy.closing, menu_id)
        if score is not None:
            self._rated(item, open_kfid, euid, session, policy, score)
            return
        action = policy.menu_actions.get(menu_id)
        if action is None:
            self.record(Decision(open_kfid, euid, session.scene, "menu click", Outcome.IGNORED,
                                 detail=f"no menu action for {menu_id!r}"))
            return
        if session.state not in (ServiceState.NEW, ServiceState.BOT):
            session = self.assigner.refresh(open_kfid, euid, session)  # design rule 13, as for a message
        rule = f"menu {menu_id!r}"
        if session.state in (ServiceState.POOL, ServiceState.HUMAN):
            held = Outcome.POOL if session.state == ServiceState.POOL else Outcome.HUMAN
            self.record(Decision(open_kfid, euid, session.scene, rule, held, servicer=session.servicer,
                                 detail="the session is with the pool or a servicer: the click is theirs"))
            return
        if session.state is not None and session.state != ServiceState.ENDED:
            self.state.sessions.update(open_kfid, euid, active_since(open_kfid, _at(item, self.clock), session))
        self._act(action, Target(open_kfid, euid, policy, session.scene, rule), item.msgid, "menu")

    def _rated(self, item: SyncItem, open_kfid: str, euid: str, session: Session, policy: Policy, score: int) -> None:
        self.state.sessions.update(open_kfid, euid, {"rating": score, "rating_item": item.menu_id,
                                                     "rated_at": _at(item, self.clock)})
        self.accounting.rated(item.msgid, _at(item, self.clock), open_kfid, euid, session.scene,
                              session.last_servicer, score)
        self.record(Decision(open_kfid, euid, session.scene, "satisfaction", Outcome.RATED,
                             servicer=session.last_servicer, detail=str(score)))
        upgrade = policy.upgrade
        if upgrade is not None and upgrade.after_rating is not None and score >= upgrade.after_rating:
            rule = f"upgrade after rating {score}"
            offered = self.upgrades.offer(Said(open_kfid, euid, rule, item.msgid), upgrade.offer, session.scene,
                                          session.last_servicer)
            self.record(Decision(open_kfid, euid, session.scene, rule, offered.outcome,
                                 servicer=session.last_servicer, detail=offered.detail))

    # -- session changes made by servicers ------------------------------------------------------

    def _session_status_change(self, item: SyncItem, open_kfid: str, known: Session | None) -> None:
        event, euid = item.event_as(SessionStatusChangeEvent), item.external_userid
        if not euid or event is None:
            return
        change, old, new = event.change_type, event.old_servicer_userid or None, event.new_servicer_userid or None
        session = known or self.state.sessions.get(open_kfid, euid)
        scene, at = session.scene, _at(item, self.clock)
        if session.session_started is not None and at < session.session_started:
            # An event older than the session the customer has opened since (a late copy, a
            # record redriven from the DLQ): it must not end or move the newer session.
            self.record(Decision(open_kfid, euid, scene, "session change older than the session", Outcome.SKIPPED,
                                 detail=f"change_type={change}"))
            return
        if change == SessionChangeType.ENDED and session.state not in (None, ServiceState.ENDED) \
                and self.assigner.refresh(open_kfid, euid, session).state != ServiceState.ENDED:
            # WeCom has a newer session open already (the customer wrote again, or a servicer
            # reopened it) and this end is the older one's, arriving late: it must not end the
            # newer session nor give its place back (refresh has made the cache say what WeCom says).
            self.accounting.ended(item.msgid, at, open_kfid, euid, scene, old)
            self.record(Decision(open_kfid, euid, scene, "session ended", Outcome.ENDED, servicer=old,
                                 detail="a newer session is already open at WeCom"))
        elif change == SessionChangeType.ENDED:
            if session.counted:
                self.state.loads.move(open_kfid, euid, session.counted, None)
            self.state.sessions.update(open_kfid, euid, {"state": ServiceState.ENDED},
                                       remove=("servicer", "pool_key", *ACTIVE_FIELDS))
            if session.pool_key:
                self.state.pool.remove(open_kfid, session.pool_key)
            if old:
                self.state.sessions.update(open_kfid, euid, {"last_servicer": old, "last_served_at": at})
            closing = decide.closing_message(self.policy(open_kfid, session).closing)
            detail = None
            if closing and event.msg_code and self.clock() - at <= self.settings.welcome_max_age:
                said = Said(open_kfid, euid, "closing", item.msgid)
                detail = f"closing {self.send.closing(said, event.msg_code, closing)}"
            self.accounting.ended(ended_id(open_kfid, euid, session, item.msgid), at, open_kfid, euid, scene, old)
            self.record(Decision(open_kfid, euid, scene, "session ended", Outcome.ENDED, servicer=old, detail=detail))
        elif change in HUMAN_CHANGES and new:
            how = HUMAN_CHANGES[SessionChangeType(change)]
            self.state.loads.move(open_kfid, euid, session.counted, new)
            self.state.sessions.update(open_kfid, euid, {"state": ServiceState.HUMAN, "servicer": new, "last_servicer": new,
                                                         "last_served_at": at, "assigned_at": at,
                                                         **active_since(open_kfid, at, session)}, remove=("pool_key",))
            self.accounting.assigned(at, open_kfid, euid, scene, new, str(session.name), how)
            if session.pool_key:
                self.state.pool.remove(open_kfid, session.pool_key)
            self.record(Decision(open_kfid, euid, scene, how, Outcome.HUMAN, servicer=new))
        self.assigner.drain_pool(open_kfid)

    def _servicer_status_change(self, item: SyncItem, open_kfid: str, _session: Session | None) -> None:
        event = item.event_as(ServicerStatusChangeEvent)
        if event is None or not event.servicer_userid:
            return
        receiving = event.status == ServicerStatus.RECEIVING
        self.state.rosters.set_servicer(open_kfid, event.servicer_userid, receiving)
        self.record(Decision(open_kfid, None, None, "servicer status", Outcome.ON_DUTY if receiving else Outcome.OFF_DUTY,
                             servicer=event.servicer_userid))
        if receiving:
            self.assigner.drain_pool(open_kfid)

    def _send_failed(self, item: SyncItem, open_kfid: str, _session: Session | None) -> None:
        event = item.event_as(MsgSendFailEvent) or MsgSendFailEvent()
        session = self.state.sessions.get(open_kfid, item.external_userid) if item.external_userid else Session()
        self.accounting.delivery_failed(item.msgid, _at(item, self.clock), open_kfid, item.external_userid,
                                        session.scene, event.fail_msgid, event.fail_type)
        self.record(Decision(open_kfid, item.external_userid, None, "msg_send_fail", Outcome.REPORTED,
                             detail=f"fail_type={event.fail_type} msgid={event.fail_msgid}"))

    # -- the sweep's tasks (kefu.sweep) -------------------------------------------------------

    def run_task(self, task: dict[str, Any]) -> None:
        """A task the sweep queued: a pool drain (the account's pool is not empty), or a look at
        one quiet session."""
        kind = task.get("task")
        if kind == SESSION_TASK:
            self.sweep_session(task["open_kfid"], task["external_userid"], int(task["reconcile_after"]))
        elif kind == DRAIN_TASK:
            self.assigner.drain_pool(task["open_kfid"])
        else:
            raise ValueError(f"unknown sweep task {kind!r}")

    def sweep_session(self, open_kfid: str, euid: str, reconcile_after: int) -> None:
        """A session the sweep found quiet. Idle past its rules' ``idle_end_minutes``: ended at
        WeCom with the closing message. Unchecked for ``reconcile_after`` seconds: the cache takes
        WeCom's state (design rule 13), so a session that ended or moved unseen gives its load
        back and leaves the pool. Safe to repeat: it re-reads everything it decides on."""
        session = self.state.sessions.get(open_kfid, euid)
        if session.active_at is None or session.state in (None, ServiceState.ENDED):
            return  # ended or gone since the sweep listed it
        now = int(self.clock())
        policy = self.policy(open_kfid, session)
        idle_for = now - session.active_at
        idle_due = policy.idle_end_minutes is not None and idle_for >= policy.idle_end_minutes * 60
        if not idle_due and now - max(session.active_at, session.checked_at or 0) < reconcile_after:
            return
        before = session
        session = self.assigner.refresh(open_kfid, euid, session)
        scene = session.scene
        if session.state == ServiceState.ENDED:
            # It ended at WeCom with no event reaching Kefu: count the end once, nothing to send.
            self.accounting.ended(ended_id(open_kfid, euid, before, f"{euid}#unseen#{now}"), now, open_kfid, euid,
                                  scene, before.servicer)
            self.record(Decision(open_kfid, euid, scene, "sweep: ended at WeCom unseen", Outcome.ENDED,
                                 servicer=before.servicer, detail=f"cached state {before.state}"))
        elif idle_due:
            self._end_idle(open_kfid, euid, session, policy, idle_for)
        else:
            self.state.sessions.update(open_kfid, euid, {"checked_at": now})
            if (before.state, before.servicer) != (session.state, session.servicer):
                self.record(Decision(open_kfid, euid, scene, "sweep: reconciled with WeCom", Outcome.SKIPPED,
                                     servicer=session.servicer,
                                     detail=f"cached state {before.state}, WeCom state {session.state}"))
        if (before.pool_key and session.state != ServiceState.POOL) or before.counted != session.counted:
            self.assigner.drain_pool(open_kfid)  # a place came free, or the pool lost an entry

    def _end_idle(self, open_kfid: str, euid: str, session: Session, policy: Policy, idle_for: int) -> None:
        self.end(open_kfid, euid, session, policy, "idle end", f"{session.name}#idle", f"no message for {idle_for} s")

    def end(self, open_kfid: str, euid: str, session: Session, policy: Policy, rule: str, trigger: str,
             detail: str | None) -> None:
        """End the session at WeCom, with the closing message on the code the end gives."""
        ended, code = self.assigner.end_session(open_kfid, euid, session)
        closing: Message | None = decide.closing_message(policy.closing)
        if code and closing:
            sent = self.send.closing(Said(open_kfid, euid, "closing", trigger), code, closing)
            detail = f"{detail}; closing {sent}" if detail else f"closing {sent}"
        if ended.state == ServiceState.ENDED:
            self.accounting.ended(ended_id(open_kfid, euid, session, trigger), int(self.clock()), open_kfid, euid,
                                  session.scene, session.servicer)
            if session.servicer:
                self.state.sessions.update(open_kfid, euid, {"last_servicer": session.servicer,
                                                             "last_served_at": int(self.clock())})
        self.record(Decision(open_kfid, euid, session.scene, rule, Outcome.ENDED, servicer=session.servicer,
                             detail=detail))
