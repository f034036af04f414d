"""Pure routing decisions: bot matching, servicer order, messages to send, ratings."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

from kefu.routing.outbound import Menu, MenuClick, MenuItem, Message
from kefu.routing.rules import Bot, BotReply, Closing, Policy
from kefu.routing.session import Session

BotOutcome = Literal["reply", "handoff", "unmatched"]


@dataclass(frozen=True)
class BotDecision:
    outcome: BotOutcome
    reply: BotReply | None = None  # the matched keyword rule and its action
    keyword: str | None = None


def _contains(text: str, keyword: str) -> bool:
    """Case-insensitive for Latin letters; other scripts compare as they are."""
    return keyword.casefold() in text.casefold()


def match_bot(bot: Bot, text: str | None) -> BotDecision:
    """Hand-off keywords win over replies; no text (media) counts as unmatched."""
    if text:
        for keyword in bot.handoff_keywords:
            if _contains(text, keyword):
                return BotDecision("handoff", keyword=keyword)
        for reply in bot.replies:
            for keyword in reply.keywords:
                if _contains(text, keyword):
                    return BotDecision("reply", reply=reply, keyword=keyword)
    return BotDecision("unmatched")


def eligible_servicers(policy: Policy, roster: dict[str, bool], loads: dict[str, int]) -> list[str]:
    """On duty, in the allow-list when there is one, under the capacity limit; stable order."""
    allowed = set(policy.servicers)
    return sorted(
        userid for userid, receiving in roster.items()
        if receiving and (not allowed or userid in allowed) and loads.get(userid, 0) < policy.max_active_per_servicer
    )


def order_candidates(eligible: list[str], loads: dict[str, int], strategy: str, rotation: int,
                     sticky: str | None = None) -> list[str]:
    """The order to try servicers in: the sticky one first, then the strategy's order."""
    if not eligible:
        return []
    start = rotation % len(eligible)
    rotated = eligible[start:] + eligible[:start]
    if strategy == "least_busy":
        position = {userid: i for i, userid in enumerate(rotated)}
        rotated = sorted(rotated, key=lambda u: (loads.get(u, 0), position[u]))
    if sticky and sticky in rotated:
        rotated.remove(sticky)
        rotated.insert(0, sticky)
    return rotated


def sticky_servicer(session: Session, policy: Policy, now: float) -> str | None:
    last, at = session.last_servicer, session.last_served_at
    if not last or at is None or policy.sticky_hours <= 0:
        return None
    return str(last) if now - float(at) <= policy.sticky_hours * 3600 else None


def closing_message(closing: Closing | None) -> Message | None:
    """What Kefu says when a session ends: the satisfaction menu, or the closing text or menu."""
    if closing is None:
        return None
    if closing.satisfaction:
        s = closing.satisfaction
        items = [MenuItem(click=MenuClick(id=i.id, content=i.content)) for i in s.items]
        return Message(msgmenu=Menu(head=s.head, items=items, tail=s.tail))
    return closing.as_message()


def rating_for(closing: Closing | None, menu_id: str) -> int | None:
    """The score a click on a satisfaction item records (its ``score``, else its position)."""
    if closing is None or closing.satisfaction is None:
        return None
    for index, item in enumerate(closing.satisfaction.items):
        if item.id == menu_id:
            return item.score if item.score is not None else index + 1
    return None


def send_id(trigger_msgid: str, purpose: str) -> str:
    """Our msgid for a send caused by ``trigger_msgid``: the same on every retry, so WeCom refuses
    a repeat instead of delivering it twice (<= 32 chars of [0-9a-zA-Z_-])."""
    return "k" + hashlib.sha256(f"{trigger_msgid}\n{purpose}".encode()).hexdigest()[:30]


# -- repeats ---------------------------------------------------------------------------------------

ROUTED_KEEP = 16  # a customer's last routed items remembered on the session item


def item_tag(msgid: str) -> str:
    """A short stand-in for a msgid (10 hex digits): 16 of them keep the session item small."""
    return hashlib.sha256(msgid.encode()).hexdigest()[:10]


@dataclass(frozen=True)
class Routed:
    """Tags of the last items of one customer the engine has finished with, oldest first.

    The sync hands every item of a re-pulled page on again (a crash may have come before the
    first hand-off), and SQS drops the copy only within its five-minute deduplication window; a
    copy that comes later must change nothing, or it would act on state newer than itself (a
    transfer out of a session that has ended since). Order by send_time is no guide: WeCom may
    list a message delivered late after newer items, and it must still be routed."""

    tags: tuple[str, ...] = ()

    def has_seen(self, msgid: str) -> bool:
        return item_tag(msgid) in self.tags

    def after(self, msgid: str) -> Routed:
        tag = item_tag(msgid)
        return self if tag in self.tags else Routed((*self.tags, tag)[-ROUTED_KEEP:])
