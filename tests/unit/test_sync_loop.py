"""The sync loop (kefu.sync.pull_account) in process, on in-memory stores and a scripted WeCom:
the cursor moves only after its page is stored, has_more is followed through empty pages, a
refused callback token is dropped, the first pull acts on nothing, repeats are stored once."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kefu.store.cursors import CursorMoved, CursorState
from kefu.sync import SyncDeps, SyncPolicy, pull_account
from kefu.wecom.errors import MSG_TOKEN_INVALID, WeComError

K = "wkSYNC".ljust(32, "0")
NOW = 1_800_000_000


def text(n: int, euid: str = "c1") -> dict[str, Any]:
    return {"msgid": f"m{n}", "open_kfid": K, "external_userid": euid, "send_time": NOW - 10, "origin": 3,
            "msgtype": "text", "text": {"content": f"hello {n}"}}


class ScriptedWeCom:
    """kf/sync_msg answers from a script: a page dict, or a WeComError to raise."""

    def __init__(self, script: list[dict[str, Any] | WeComError]) -> None:
        self.script = list(script)
        self.pulls: list[dict[str, Any]] = []

    def read(self, path: str, body: dict[str, Any] | None = None, *, params: dict[str, str] | None = None) -> dict[str, Any]:
        if path == "kf/customer/batchget":
            return {"errcode": 0, "customer_list": [], "invalid_external_userid": []}
        assert path == "kf/sync_msg"
        self.pulls.append(dict(body or {}))
        step = self.script.pop(0)
        if isinstance(step, WeComError):
            raise step
        return {"errcode": 0, **step}


class Messages:
    def __init__(self) -> None:
        self.records: dict[str, dict[str, Any]] = {}

    def existing(self, msgids: list[str]) -> set[str]:
        return {m for m in msgids if m in self.records}

    def put_new(self, records: list[dict[str, Any]]) -> int:
        for record in records:
            assert record["msgid"] not in self.records, "stored twice"
            self.records[record["msgid"]] = record
        return len(records)

    def set_media_key(self, msgid: str, key: str) -> None:
        self.records[msgid]["media_key"] = key

    def mark_recalled(self, msgid: str, at: int, by: str) -> bool:
        if msgid not in self.records:
            return False
        self.records[msgid].update(recalled_at=at, recalled_by=by)
        return True

    def mark_send_failed(self, msgid: str, fail_type: int | None) -> bool:
        if msgid not in self.records:
            return False
        self.records[msgid].update(send_state="failed", fail_type=fail_type)
        return True


class Cursors:
    def __init__(self, cursor: str | None = None, catchup_since: int | None = None) -> None:
        self.cursor = cursor
        self.catchup_since = catchup_since
        self.moves: list[tuple[str | None, str]] = []

    def read(self, open_kfid: str) -> CursorState:
        return CursorState(self.cursor, self.catchup_since)

    def begin_catchup(self, open_kfid: str, since: int) -> CursorState:
        if self.cursor is None and self.catchup_since is None:
            self.catchup_since = since
        return self.read(open_kfid)

    def advance(self, open_kfid: str, old: str | None, new: str | None, *, caught_up: bool = False) -> None:
        if old != self.cursor:
            raise CursorMoved("moved by another writer")
        if new is not None:
            self.cursor = new
            self.moves.append((old, new))
        if caught_up:
            self.catchup_since = None


class Nothing:
    """Customers and media with nothing to do."""

    def known(self, ids: list[str]) -> set[str]:
        return set(ids)

    def save(self, profiles: list[dict[str, Any]]) -> int:
        return 0

    def add_pending(self, entries: list[Any]) -> None:
        pass

    def pending(self, open_kfid: str, limit: int = 25) -> list[Any]:
        return []


def run(script: list[dict[str, Any] | WeComError], cursor: str | None = "c0", token: str | None = None,
        cursors: Cursors | None = None):
    wecom, messages, handed = ScriptedWeCom(script), Messages(), []
    cursors = cursors or Cursors(cursor)
    deps = SyncDeps(wecom=wecom, messages=messages, cursors=cursors, customers=Nothing(), media=Nothing(),  # type: ignore[arg-type]
                    hand_on=lambda batch: handed.extend(json.loads(m.body)["items"][0]["msgid"] for m in batch),
                    clock=lambda: NOW)
    result = pull_account(deps, K, token, NOW - 5 if token else None, SyncPolicy())
    return result, wecom, messages, cursors, handed


def test_has_more_is_followed_through_an_empty_page_and_the_cursor_moves_page_by_page() -> None:
    result, wecom, messages, cursors, handed = run([
        {"next_cursor": "c1", "has_more": 1, "msg_list": [text(1)]},
        {"next_cursor": "c2", "has_more": 1, "msg_list": []},
        {"next_cursor": "c3", "has_more": 0, "msg_list": [text(2)]},
    ])
    assert result.pages == 3 and sorted(messages.records) == ["m1", "m2"]
    assert cursors.moves == [("c0", "c1"), ("c1", "c2"), ("c2", "c3")]
    assert [p.get("cursor") for p in wecom.pulls] == ["c0", "c1", "c2"]
    assert handed == ["m1", "m2"]


def test_a_refused_callback_token_is_dropped_and_the_pull_goes_on() -> None:
    result, wecom, messages, _, _ = run([
        WeComError("kf/sync_msg", MSG_TOKEN_INVALID, "invalid msg token"),
        {"next_cursor": "c1", "has_more": 0, "msg_list": [text(1)]},
    ], token="tok")
    assert wecom.pulls[0]["token"] == "tok" and "token" not in wecom.pulls[1]
    assert list(messages.records) == ["m1"]


def test_has_more_without_a_cursor_stops_the_pull_after_storing_the_page() -> None:
    with pytest.raises(WeComError, match="has_more=1 without next_cursor"):
        run([{"next_cursor": "", "has_more": 1, "msg_list": [text(1)]}])


def old(n: int, euid: str = "c0") -> dict[str, Any]:
    return {**text(n, euid), "msgid": f"h{n}", "send_time": NOW - 2 * 86400}


def test_the_first_pull_stores_history_acts_on_none_of_it_and_routes_what_is_live() -> None:
    result, _, messages, cursors, handed = run(
        [{"next_cursor": "c1", "has_more": 0, "msg_list": [old(1), text(1)]}], cursor=None, token="tok")
    assert result.first_pull and sorted(messages.records) == ["h1", "m1"]
    assert handed == ["m1"], "the customer who wrote after the deploy is routed, the history is not"
    assert result.history == 1
    assert cursors.cursor == "c1" and cursors.catchup_since is None, "the catch-up ended with has_more 0"


def test_a_catch_up_interrupted_after_a_page_is_resumed_as_a_catch_up() -> None:
    cursors = Cursors(None)
    with pytest.raises(WeComError):
        run([{"next_cursor": "c1", "has_more": 1, "msg_list": [old(1)]},
             WeComError("kf/sync_msg", -1, "system busy", http_status=200)], cursors=cursors, token="tok")
    assert cursors.cursor == "c1" and cursors.catchup_since == NOW - 5, "the catch-up is remembered with the cursor"
    # The retry (even one started by a later callback) is still the same catch-up.
    result, _, messages, _, handed = run([{"next_cursor": "c2", "has_more": 0, "msg_list": [old(2), text(3)]}],
                                         cursors=cursors)
    assert "h2" in messages.records and handed == ["m3"], f"history of the resumed catch-up was routed: {handed}"
    assert cursors.catchup_since is None


def test_after_the_catch_up_items_are_live_whatever_their_age_within_the_window() -> None:
    late = {**text(7), "send_time": NOW - 3600}  # delivered late after an outage: its customer waits
    _, _, _, _, handed = run([{"next_cursor": "c1", "has_more": 0, "msg_list": [late]}])
    assert handed == ["m7"]


def test_a_re_pulled_page_is_stored_once_and_handed_on_again() -> None:
    page = {"next_cursor": "c1", "has_more": 0, "msg_list": [text(1), text(1)]}
    result, _, messages, _, handed = run([page])
    assert result.stored == 1 and result.duplicates == 1 and handed == ["m1"]


def test_a_pull_whose_cursor_moved_meanwhile_does_not_overwrite_it() -> None:
    wecom, messages, cursors = ScriptedWeCom([{"next_cursor": "c1", "has_more": 0, "msg_list": [text(1)]}]), Messages(), Cursors("c0")
    deps = SyncDeps(wecom=wecom, messages=messages, cursors=cursors, customers=Nothing(), media=Nothing(),  # type: ignore[arg-type]
                    hand_on=lambda batch: None, clock=lambda: NOW)
    original = cursors.read
    cursors.read = lambda open_kfid: (original(open_kfid), setattr(cursors, "cursor", "c9"))[0]  # type: ignore[method-assign]
    with pytest.raises(CursorMoved):
        pull_account(deps, K, None, None, SyncPolicy())
    assert cursors.cursor == "c9"


def test_a_recall_and_a_send_failure_mark_the_message_they_name() -> None:
    recall = {"msgid": "r1", "send_time": 1_800_000_100, "origin": 4, "msgtype": "event",
              "event": {"event_type": "user_recall_msg", "open_kfid": K, "external_userid": "c1", "recall_msgid": "m1"}}
    fail = {"msgid": "f1", "send_time": 1_800_000_101, "origin": 4, "msgtype": "event",
            "event": {"event_type": "msg_send_fail", "open_kfid": K, "external_userid": "c1", "fail_msgid": "m2",
                      "fail_type": 10}}
    servicer_recall = {"msgid": "r2", "send_time": 1_800_000_102, "origin": 4, "msgtype": "event",
                       "event": {"event_type": "servicer_recall_msg", "open_kfid": K, "external_userid": "c1",
                                 "recall_msgid": "m3", "servicer_userid": "alice"}}
    _result, _wecom, messages, _cursors, _handed = run([{"next_cursor": "c1", "has_more": 0,
                                       "msg_list": [text(1), text(2), text(3), recall, fail, servicer_recall]}])
    assert (messages.records["m1"]["recalled_at"], messages.records["m1"]["recalled_by"]) == (1_800_000_100, "customer")
    assert (messages.records["m2"]["send_state"], messages.records["m2"]["fail_type"]) == ("failed", 10)
    assert messages.records["m3"]["recalled_by"] == "alice"
