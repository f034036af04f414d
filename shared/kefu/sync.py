"""Pulling an account's messages from WeCom and storing each one once.

For one open_kfid: read the stored cursor; call kf/sync_msg with it (and the callback token while
fresh); store the page's new messages; hand fresh items to the route queue; only then move the
cursor, conditionally; repeat while has_more. A crash anywhere re-pulls from the last stored
cursor: messages already stored are skipped by msgid, hand-offs repeat with the same
deduplication id (msgid), so nothing is lost and nothing is stored twice.

An account's first pulls replay up to three days of history (design rule 9). Until a pull of
that catch-up reaches has_more 0, an item sent more than ``catchup_grace`` before the callback
that started the catch-up is history: stored, never acted on. Newer items are live: the customer
who writes a minute after the deploy is welcomed and served.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kefu.queues import ACCOUNT_GROUP, QueueMessage
from kefu.store.media import object_key
from kefu.store.messages import MessageStore, to_record
from kefu.wecom import kf
from kefu.wecom.client import WeComClient
from kefu.wecom.errors import MSG_TOKEN_INVALID, WeComError
from kefu.wecom.models import (
    MEDIA_MSGTYPES,
    MsgSendFailEvent,
    ServicerRecallMsgEvent,
    ServicerStatus,
    ServicerStatusChangeEvent,
    SyncItem,
    UserRecallMsgEvent,
    parse_items,
)

CALLBACK_TOKEN_TTL = 600
TOKEN_SAFETY = 30  # do not present a token this close to its end
ROUTE_EVENTS = frozenset({"enter_session", "session_status_change", "servicer_status_change", "msg_send_fail"})


@dataclass(frozen=True)
class SyncPolicy:
    handoff_max_age: int = 48 * 3600  # older items are stored but trigger nothing (session window gone)
    catchup_grace: int = 300  # during a catch-up, items this much older than its callback are history
    retention_days: int = 0  # 0 = keep messages forever


@dataclass
class PullResult:
    open_kfid: str
    pages: int = 0
    seen: int = 0
    stored: int = 0
    duplicates: int = 0
    handed_on: int = 0
    first_pull: bool = False  # the account was catching up (design rule 9)
    history: int = 0  # items of the catch-up stored as history, acted on by nobody
    max_lag: int = 0
    media_pending: int = 0  # downloads this pull left to the media worker
    profiles_saved: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass
class SyncDeps:
    wecom: WeComClient
    messages: MessageStore
    cursors: Any  # CursorStore
    customers: Any  # CustomerStore
    media: Any  # MediaStore
    hand_on: Callable[[list[QueueMessage]], None]
    servicer_status: Callable[[str, str, bool], object] = lambda open_kfid, userid, receiving: None
    queue_media: Callable[[str], None] = lambda open_kfid: None
    log: Callable[..., None] = lambda *args, **kwargs: None
    clock: Callable[[], float] = time.time


# -- pure decisions ----------------------------------------------------------------------------

def item_msgid(item: SyncItem) -> str:
    """WeCom's msgid; for the odd item without one, a stable id derived from its content."""
    if item.msgid:
        return item.msgid
    digest = hashlib.sha256(json.dumps(item.raw, sort_keys=True, default=str).encode()).hexdigest()
    return f"nomsgid-{digest[:40]}"


def needs_routing(item: SyncItem) -> bool:
    if item.is_event:
        return item.event_type in ROUTE_EVENTS
    return item.origin in (3, 5)  # servicers' messages only feed the statistics


def is_history(item: SyncItem, catchup_since: int | None, policy: SyncPolicy) -> bool:
    """During a catch-up (``catchup_since``: its callback's time), an item sent more than the
    grace before it is replayed history; an item without a send_time counts as history too."""
    if catchup_since is None:
        return False
    return item.send_time is None or item.send_time < catchup_since - policy.catchup_grace


def should_hand_on(item: SyncItem, *, catchup_since: int | None, now: float, policy: SyncPolicy) -> bool:
    """History of a catch-up and items past the session window are stored, never acted on."""
    if not needs_routing(item) or not item.open_kfid or is_history(item, catchup_since, policy):
        return False
    return now - (item.send_time or now) <= policy.handoff_max_age


def route_group(item: SyncItem) -> str:
    """One FIFO group per customer of an account (account-wide events share one group)."""
    return f"{item.open_kfid}#{item.external_userid or ACCOUNT_GROUP}"


def route_messages(items: list[tuple[str, SyncItem]]) -> list[QueueMessage]:
    """One queue message per item, grouped per customer so FIFO keeps each customer's order.

    The deduplication id is the msgid: re-pulling a page after a crash (even one that has grown
    since) queues nothing twice within SQS's five-minute window, and the route function treats a
    repeat it still receives as already done."""
    messages = []
    for msgid, item in items:
        body = json.dumps({"open_kfid": item.open_kfid, "external_userid": item.external_userid,
                           "items": [{"msgid": msgid, "item": item.raw}]}, ensure_ascii=False, separators=(",", ":"))
        messages.append(QueueMessage(body=body, group_id=route_group(item), deduplication_id=msgid[:128]))
    return messages


def token_usable(create_time: int | None, now: float) -> bool:
    return create_time is not None and now < create_time + CALLBACK_TOKEN_TTL - TOKEN_SAFETY


def profile_candidates(items: list[SyncItem]) -> tuple[set[str], set[str]]:
    """(customers who wrote, customers who entered): profiles are fetched for new ones and on entry."""
    wrote = {i.external_userid for i in items if i.is_customer_message and i.external_userid}
    entered = {i.external_userid for i in items if i.event_type == "enter_session" and i.external_userid}
    return wrote, entered


# -- the pull ----------------------------------------------------------------------------------

def pull_account(deps: SyncDeps, open_kfid: str, token: str | None, token_time: int | None,
                 policy: SyncPolicy) -> PullResult:
    result = PullResult(open_kfid)
    state = deps.cursors.read(open_kfid)
    if state.cursor is None and not state.catching_up:
        # The account's first pull: its catch-up is measured from the callback that asked for it
        # (or from now, for a scheduled pull), stored before the first page.
        state = deps.cursors.begin_catchup(open_kfid, int(token_time or deps.clock()))
    cursor, catchup_since = state.cursor, state.catchup_since
    result.first_pull = catchup_since is not None
    if not token_usable(token_time, deps.clock()):
        token = None
    while True:
        try:
            page = kf.sync_msg(deps.wecom, open_kfid, cursor, token)
        except WeComError as exc:
            if exc.errcode != MSG_TOKEN_INVALID or token is None:
                raise
            deps.log("callback token refused (95007); pulling without it", open_kfid=open_kfid)
            token = None
            continue
        result.pages += 1
        _store_page(deps, result, parse_items(page.msg_list), policy, catchup_since)
        moved = bool(page.next_cursor) and page.next_cursor != cursor
        caught_up = catchup_since is not None and not page.has_more
        if moved or caught_up:
            deps.cursors.advance(open_kfid, cursor, page.next_cursor if moved else None, caught_up=caught_up)
            cursor = page.next_cursor if moved else cursor
        if caught_up:
            catchup_since = None
        if not page.has_more:
            break
        if not page.next_cursor:
            raise WeComError("kf/sync_msg", None, "has_more=1 without next_cursor")
    if result.media_pending:
        deps.queue_media(open_kfid)  # the media worker downloads them (kefu.media), not this pull
    return result


def _store_page(deps: SyncDeps, result: PullResult, items: list[SyncItem], policy: SyncPolicy,
                catchup_since: int | None) -> None:
    now = deps.clock()
    unique: dict[str, SyncItem] = {}
    for item in items:
        unique.setdefault(item_msgid(item), item)
    result.seen += len(items)
    if not unique:
        return
    existing = deps.messages.existing(list(unique))
    base = time.time_ns()
    stored_at = int(now)
    records, pending_media = [], []
    for index, (msgid, item) in enumerate(unique.items()):
        if msgid in existing:
            continue
        records.append(to_record(item, msgid, base + index, stored_at, policy.retention_days))
        if item.msgtype in MEDIA_MSGTYPES and item.media_id:
            key = object_key(item.open_kfid or "", item.external_userid or "", msgid)
            pending_media.append((item.open_kfid or result.open_kfid, msgid, item.media_id, key,
                                  item.send_time or stored_at))
        if item.send_time:
            result.max_lag = max(result.max_lag, int(now) - item.send_time)
    # Pending media first: if we crash between the two writes, the retry finds the messages
    # missing and writes both again; the other order could store a message whose media is lost.
    if pending_media:
        deps.media.add_pending(pending_media)
        result.media_pending += len(pending_media)
    deps.messages.put_new(records)
    result.stored += len(records)
    result.duplicates += len(items) - len(records)
    _mark_targets(deps, list(unique.values()))
    for item in unique.values():
        # The duty roster follows servicer_status_change in page order, before the customer
        # messages after it are routed (they travel in other queue groups than this event).
        change = item.event_as(ServicerStatusChangeEvent)
        if change is not None and change.servicer_userid and item.open_kfid:
            deps.servicer_status(item.open_kfid, change.servicer_userid, change.status == ServicerStatus.RECEIVING)
    fresh = [(msgid, item) for msgid, item in unique.items()
             if should_hand_on(item, catchup_since=catchup_since, now=now, policy=policy)]
    result.history += sum(1 for item in unique.values() if is_history(item, catchup_since, policy))
    if fresh:
        deps.hand_on(route_messages(fresh))  # every fresh item, new or not: a crash may have come before this
        result.handed_on += len(fresh)
    _save_profiles(deps, result, list(unique.values()))


def _mark_targets(deps: SyncDeps, items: list[SyncItem]) -> None:
    """Events about an earlier message mark it in the record: a recall (by the customer or a
    servicer) and WeCom's report that a message it accepted never arrived (msg_send_fail). A
    message no longer stored (past retention, or before Kefu) is left unmarked. Repeats are
    harmless: a mark sets the same fields again."""
    for item in items:
        recall = item.event_as(UserRecallMsgEvent) or item.event_as(ServicerRecallMsgEvent)
        if recall is not None and recall.recall_msgid:
            by = recall.servicer_userid if isinstance(recall, ServicerRecallMsgEvent) and recall.servicer_userid \
                else "customer"
            deps.messages.mark_recalled(recall.recall_msgid, int(item.send_time or deps.clock()), by)
        failed = item.event_as(MsgSendFailEvent)
        if failed is not None and failed.fail_msgid:
            deps.messages.mark_send_failed(failed.fail_msgid, failed.fail_type)


def _save_profiles(deps: SyncDeps, result: PullResult, items: list[SyncItem]) -> None:
    wrote, entered = profile_candidates(items)
    if not wrote and not entered:
        return
    try:
        unknown = wrote - deps.customers.known(sorted(wrote)) if wrote else set()
        wanted = sorted(unknown | entered)
        for start in range(0, len(wanted), kf.BATCHGET_LIMIT):
            profiles, _invalid = kf.customer_batchget(deps.wecom, wanted[start : start + kf.BATCHGET_LIMIT])
            result.profiles_saved += deps.customers.save(profiles)
    except WeComError as exc:  # profiles are refetched with the customer's next message
        result.errors.append(f"customer/batchget: {exc.metric_code}")
        deps.log("customer profiles not fetched", open_kfid=result.open_kfid, errcode=exc.metric_code)
