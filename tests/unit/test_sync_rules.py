"""The sync function's pure decisions: what is handed to routing, token freshness, ids."""

from __future__ import annotations

import json

from kefu.sync import SyncPolicy, item_msgid, profile_candidates, route_messages, should_hand_on, token_usable
from kefu.wecom.models import parse_item

NOW = 1_800_000_000
POLICY = SyncPolicy()


def text(origin: int = 3, age: int = 0, msgid: str = "m1") -> dict:
    return {"msgid": msgid, "open_kfid": "wkA", "external_userid": "wmC", "send_time": NOW - age,
            "origin": origin, "msgtype": "text", "text": {"content": "hi"}}


def event(event_type: str, age: int = 0, **fields) -> dict:
    return {"msgid": "e1", "send_time": NOW - age, "origin": 4, "msgtype": "event",
            "event": {"event_type": event_type, "open_kfid": "wkA", "external_userid": "wmC", **fields}}


def hand_on(raw: dict, catchup_since: int | None = None) -> bool:
    return should_hand_on(parse_item(raw), catchup_since=catchup_since, now=NOW, policy=POLICY)


def test_customer_messages_and_routing_events_are_handed_on() -> None:
    assert hand_on(text())
    for kind in ("enter_session", "session_status_change", "servicer_status_change", "msg_send_fail"):
        assert hand_on(event(kind)), kind


def test_servicer_messages_go_on_for_statistics_other_events_do_not() -> None:
    assert hand_on(text(origin=5))
    assert not hand_on(event("user_recall_msg"))
    assert not hand_on(event("some_future_event"))


def test_during_a_catch_up_only_items_older_than_its_callback_by_the_grace_are_history() -> None:
    started = NOW - 30  # the callback that started the catch-up came 30 s ago
    assert not hand_on(text(age=2 * 86400), catchup_since=started)
    assert not hand_on(event("enter_session", age=2 * 86400), catchup_since=started)
    assert not hand_on(text(age=30 + POLICY.catchup_grace + 1), catchup_since=started)
    assert hand_on(text(age=30 + POLICY.catchup_grace - 1), catchup_since=started)  # within the grace: live
    assert hand_on(text(age=0), catchup_since=started)  # written after the deploy: live
    assert hand_on(event("enter_session", age=10), catchup_since=started)
    assert hand_on(text(age=47 * 3600))  # after the catch-up an item is judged by its age alone


def test_late_messages_are_still_routed_within_the_session_window() -> None:
    assert hand_on(text(age=47 * 3600))
    assert not hand_on(text(age=49 * 3600))


def test_route_messages_one_per_item_grouped_by_customer_dedup_by_msgid() -> None:
    items = [("a", parse_item(text(msgid="a"))), ("s", parse_item(event("servicer_status_change", external_userid=None))),
             ("b", parse_item(text(msgid="b")))]
    messages = route_messages(items)
    assert [(m.group_id, m.deduplication_id) for m in messages] == [("wkA#wmC", "a"), ("wkA#_account", "s"), ("wkA#wmC", "b")]
    body = json.loads(messages[0].body)
    assert [e["msgid"] for e in body["items"]] == ["a"]
    assert body["items"][0]["item"]["text"]["content"] == "hi"


def test_callback_token_is_used_only_while_fresh() -> None:
    assert token_usable(NOW - 60, NOW)
    assert not token_usable(NOW - 590, NOW)
    assert not token_usable(None, NOW)


def test_items_without_msgid_get_a_stable_derived_id() -> None:
    raw = text(msgid="")
    assert item_msgid(parse_item(raw)) == item_msgid(parse_item(dict(raw)))
    assert item_msgid(parse_item(raw)).startswith("nomsgid-")


def test_profile_candidates() -> None:
    items = [parse_item(text()), parse_item(event("enter_session")), parse_item(text(origin=5))]
    assert profile_candidates(items) == ({"wmC"}, {"wmC"})
