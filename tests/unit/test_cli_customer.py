"""`kefu customer` and the list of an account's recent conversations (`kefu messages --account`),
against in-memory tables: the profile, the entries (视频号 too), the routing session and its send
window, the unionid look-up, the nicknames, and the paging of the account index."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

import pytest

from kefu_cli import customer, messages
from kefu_cli.target import CliError

NOW = 1767225600  # 2026-01-01 00:00 UTC
INDEXES = {"conversation": ("conv", "ts"), "account": ("open_kfid", "ts"), "entries": ("entry_of", "ts"),
           "unionid": ("unionid", None)}


class FakeTable:
    """A DynamoDB table as boto3's Table resource shows it: get_item, query on an index (paged by
    Limit as DynamoDB does: a full page carries a LastEvaluatedKey), and its part of batch_get_item."""

    def __init__(self, name: str, key: tuple[str, ...], items: list[dict[str, Any]]) -> None:
        self.name, self.key, self.items = name, key, items
        self.queries: list[tuple[str, str]] = []
        self.unprocessed_once = False

    def _key(self, item: dict[str, Any]) -> dict[str, Any]:
        return {k: item[k] for k in self.key}

    def get_item(self, Key: dict[str, Any]) -> dict[str, Any]:  # noqa: N803 - boto3's names
        found = next((i for i in self.items if self._key(i) == Key), None)
        return {"Item": found} if found else {}

    def query(self, IndexName: str, KeyConditionExpression: Any, ScanIndexForward: bool = True,  # noqa: N803
              Limit: int | None = None, ExclusiveStartKey: dict[str, Any] | None = None,  # noqa: N803
              ) -> dict[str, Any]:
        expression = KeyConditionExpression.get_expression()
        name, value = expression["values"][0].name, expression["values"][1]
        hash_key, sort_key = INDEXES[IndexName]
        assert name == hash_key
        self.queries.append((IndexName, value))
        matched = [i for i in self.items if i.get(hash_key) == value]
        if sort_key:
            matched.sort(key=lambda i: i[sort_key], reverse=not ScanIndexForward)
        position = 0
        if ExclusiveStartKey:
            position = next(n for n, i in enumerate(matched) if self._key(i) == ExclusiveStartKey) + 1
        limit = Limit or len(matched)
        page = matched[position:position + limit]
        answer: dict[str, Any] = {"Items": page}
        if Limit and len(page) == Limit:
            answer["LastEvaluatedKey"] = self._key(page[-1])
        return answer

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:  # noqa: N803
        request = RequestItems[self.name]
        if self.unprocessed_once:
            self.unprocessed_once = False
            return {"Responses": {self.name: []}, "UnprocessedKeys": RequestItems}
        found = [self.get_item(k).get("Item") for k in request["Keys"]]
        if "ProjectionExpression" not in request:
            return {"Responses": {self.name: [dict(i) for i in found if i]}}
        fields = [f.strip() for f in request["ProjectionExpression"].split(",")]
        return {"Responses": {self.name: [{f: i[f] for f in fields if f in i} for i in found if i]}}


class FakeTarget:
    aws_endpoint = None

    def __init__(self, messages_items: list[dict[str, Any]], state_items: list[dict[str, Any]],
                 outputs: dict[str, str] | None = None) -> None:
        self.tables = {"msgs": FakeTable("msgs", ("msgid",), messages_items),
                       "state": FakeTable("state", ("pk", "sk"), state_items)}
        self.outputs = {"MessagesTableName": "msgs", "StateTableName": "state"} if outputs is None else outputs

    def output(self, name: str) -> str:
        if name not in self.outputs:
            raise CliError(f"no output {name}")
        return self.outputs[name]

    def session(self) -> Any:
        return self

    def resource(self, service: str, endpoint_url: str | None = None) -> Any:
        assert service == "dynamodb"
        return self

    def Table(self, name: str) -> FakeTable:  # noqa: N802 - boto3's name
        return self.tables[name]

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:  # noqa: N803 - boto3's name
        [name] = RequestItems
        return self.tables[name].batch_get_item(RequestItems)


def entry(open_kfid: str, euid: str, at: int, scene: str, scene_param: str = "",
          channels: dict[str, Any] | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {"event_type": "enter_session", "open_kfid": open_kfid, "external_userid": euid,
                             "scene": scene, "scene_param": scene_param}
    if channels:
        event["wechat_channels"] = channels
    conv = f"{open_kfid}#{euid}"
    return {"msgid": f"e-{euid}-{at}", "ts": f"{at:010d}#{at:020d}", "send_time": Decimal(at), "origin": 4,
            "msgtype": "event", "event_type": "enter_session", "open_kfid": open_kfid, "external_userid": euid,
            "conv": conv, "entry_of": conv, "scene": scene or (f"channels:{channels['nickname']}" if channels else ""),
            "scene_param": scene_param, "raw": json.dumps({"msgtype": "event", "event": event}, ensure_ascii=False)}


def profile(euid: str, nickname: str, unionid: str | None = None, gender: int = 2) -> dict[str, Any]:
    item: dict[str, Any] = {"pk": f"customer#{euid}", "sk": "profile", "external_userid": euid, "nickname": nickname,
                            "gender": Decimal(gender), "avatar": "https://wx/a.png", "updated_at": Decimal(NOW)}
    if unionid:
        item["unionid"] = unionid
    return item


def session(open_kfid: str, euid: str, **fields: Any) -> dict[str, Any]:
    return {"pk": f"rsession#{open_kfid}#{euid}", "sk": "s", **{k: Decimal(v) if isinstance(v, int) else v
                                                               for k, v in fields.items()}}


def sample() -> FakeTarget:
    return FakeTarget(
        [entry("wkA", "wmX", NOW - 7200, "poster", "city=上海"),
         entry("wkA", "wmX", NOW - 60, "", channels={"nickname": "好物频道", "scene": 1}),
         entry("wkB", "wmY", NOW - 30, "home")],
        [profile("wmX", "小王", unionid="oU1"), profile("wmY", "Yan", unionid="oU1", gender=1),
         {"pk": "customer#wmZ", "sk": "profile", "external_userid": "wmZ", "updated_at": NOW},
         session("wkA", "wmX", state=3, servicer="alice", scene="poster", scene_param="city=上海",
                 session_started=NOW - 7100, last_servicer="bob", last_served_at=NOW - 86400, rating=5,
                 window_at=NOW - 600, sends=2, pool_key="x")])


# -- pure parts --------------------------------------------------------------------------------

def test_entry_rows_and_the_channel_they_came_through() -> None:
    plain = customer.entry_row(customer.plain(entry("wkA", "wmX", NOW, "poster", "p=1")))
    assert plain == {"msgid": f"e-wmX-{NOW}", "send_time": NOW, "time": messages.local_time(NOW),
                     "scene": "poster", "scene_param": "p=1"}
    assert customer.channels_text(plain) == ""
    channels = customer.entry_row(customer.plain(entry("wkA", "wmX", NOW, "", channels={"nickname": "好物", "scene": 1})))
    assert channels["scene"] == "channels:好物" and channels["wechat_channels"] == {"nickname": "好物", "scene": 1}
    assert customer.channels_text(channels) == "视频号 nickname 好物 (homepage)"
    shop = {"wechat_channels": {"shop_nickname": "好物小店", "scene": 4}}
    assert customer.channels_text(shop) == "视频号 shop_nickname 好物小店 (product)"


@pytest.mark.parametrize(("state", "name"), [(0, "new (not handled yet)"), (1, "bot (Kefu or the API)"),
                                             (2, "waiting in the pool"), (3, "with a servicer"), (4, "ended"),
                                             (9, "state 9"), (None, "unknown")])
def test_state_names(state: Any, name: str) -> None:
    assert customer.state_name(state) == name


def test_the_session_and_its_send_window() -> None:
    item = customer.plain(session("wkA", "wmX", state=3, servicer="alice", window_at=NOW, sends=2, pool_key="k"))
    view = customer.session_view(item, now=NOW + 3600)
    assert view is not None
    assert view["state_name"] == "with a servicer" and view["servicer"] == "alice" and "pool_key" not in view
    assert (view["window_closes_at"], view["window_open"]) == (NOW + 48 * 3600, True)
    closed = customer.session_view(item, now=NOW + 49 * 3600)
    assert closed is not None and closed["window_open"] is False
    assert customer.session_view(None) is None
    fresh = customer.session_view({"state": 1})
    assert fresh is not None and "window_closes_at" not in fresh


# -- the command's data ------------------------------------------------------------------------

def test_one_customer_in_every_account(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(customer, "list_accounts", lambda target: [{"open_kfid": "wkA"}, {"open_kfid": "wkB"}])
    data = customer.run(sample(), "wmX", None, None, 20)  # type: ignore[arg-type]
    assert data["unionid"] is None and data["accounts"] == ["wkA", "wkB"]
    [found] = data["customers"]
    assert found["profile"] == {"external_userid": "wmX", "nickname": "小王", "avatar": "https://wx/a.png",
                                "gender": 2, "unionid": "oU1", "updated_at": NOW}
    [account] = found["accounts"]  # nothing stored with wkB
    assert account["open_kfid"] == "wkA" and account["more_entries"] is False
    assert [e["scene"] for e in account["entries"]] == ["poster", "channels:好物频道"]  # oldest first
    assert account["session"]["state"] == 3 and account["session"]["rating"] == 5
    json.dumps(data)  # plain JSON: no Decimals

    text = customer.render(data)
    lines = text.splitlines()
    assert lines[0] == "Customer wmX"
    assert [re.split(r"  +", line.strip()) for line in lines[1:5]] == [
        ["nickname", "小王"], ["gender", "female"], ["unionid", "oU1"], ["updated", messages.local_time(NOW)]]
    assert "  Account wkA" in lines and "    entries: 2" in lines
    assert any(line.strip().startswith(messages.local_time(NOW - 60)) and line.endswith("视频号 nickname 好物频道 (homepage)")
               for line in lines)
    assert any(re.split(r"  +", line.strip())[1:] == ["poster", "city=上海", "-"] for line in lines)
    assert "    session: with a servicer (3)" in lines
    shown = {re.split(r"  +", line.strip())[0]: re.split(r"  +", line.strip())[1] for line in lines
             if line.startswith("      ") and not line.startswith("       ") and "  " in line.strip()}
    assert shown["servicer"] == "alice" and shown["rating"] == "5"
    assert shown["last servicer"] == f"bob (at {messages.local_time(NOW - 86400)})"
    assert shown["started"] == messages.local_time(NOW - 7100)
    assert re.fullmatch(r"2/5 used(; the window closed| in the window, open until) .+", shown["sends"])
    assert lines[-1] == "  no entries or routing session with 1 other account(s): wkB"


def test_only_the_account_given_and_the_latest_entries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(customer, "list_accounts", lambda target: pytest.fail("no kf/account/list with --account"))
    target = sample()
    data = customer.run(target, "wmX", None, "wkA", 1)  # type: ignore[arg-type]
    [account] = data["customers"][0]["accounts"]
    assert [e["scene"] for e in account["entries"]] == ["channels:好物频道"] and account["more_entries"] is True
    assert "(older entries exist: raise --limit)" in customer.render(data)


def test_a_unionid_names_each_of_its_customers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(customer, "list_accounts", lambda target: [{"open_kfid": "wkA"}, {"open_kfid": "wkB"}])
    target = sample()
    data = customer.run(target, None, "oU1", None, 20)  # type: ignore[arg-type]
    assert data["unionid"] == "oU1"
    assert [(c["external_userid"], [a["open_kfid"] for a in c["accounts"]]) for c in data["customers"]] == [
        ("wmX", ["wkA"]), ("wmY", ["wkB"])]
    wm_y = data["customers"][1]["accounts"][0]
    assert wm_y["session"] is None and [e["scene"] for e in wm_y["entries"]] == ["home"]
    text = customer.render(data)
    assert text.startswith("unionid oU1: 2 customer(s)\n\nCustomer wmX")
    assert "Customer wmY" in text and "gender    male" in text and "    session: none stored" in text
    assert ("unionid", "oU1") in target.tables["state"].queries


def test_nothing_found_is_an_error_that_says_where_it_looked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(customer, "list_accounts", lambda target: [{"open_kfid": "wkA"}, {"open_kfid": "wkB"}])
    with pytest.raises(CliError, match="no customer profile carries unionid oNONE"):
        customer.run(sample(), None, "oNONE", None, 20)  # type: ignore[arg-type]
    with pytest.raises(CliError, match=r"nothing stored of wmNOBODY: .* any of the 2 kf account\(s\)"):
        customer.run(sample(), "wmNOBODY", None, None, 20)  # type: ignore[arg-type]
    with pytest.raises(CliError, match="with account wkB"):
        customer.run(FakeTarget([], []), "wmX", None, "wkB", 20)  # type: ignore[arg-type]


def test_a_profile_alone_is_shown() -> None:
    data = customer.run(sample(), "wmZ", None, "wkA", 20)  # type: ignore[arg-type]
    assert data["customers"][0]["accounts"] == []
    assert customer.render(data).splitlines() == [
        "Customer wmZ", f"  updated  {messages.local_time(NOW)}",
        "  no entries or routing session with 1 other account(s): wkA"]
    no_profile = {"unionid": None, "accounts": ["wkA"], "customers": [
        {"external_userid": "wmQ", "profile": None, "accounts": [
            {"open_kfid": "wkA", "entries": [], "more_entries": False, "session": {"state_name": "unknown"}}]}]}
    assert customer.render(no_profile).splitlines()[:5] == [
        "Customer wmQ", "  (no stored profile)", "", "  Account wkA", "    entries: none stored"]


# -- nicknames and the list of recent conversations --------------------------------------------

def test_nicknames_are_read_in_one_batch_and_unprocessed_keys_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(customer.time, "sleep", lambda seconds: None)
    target = sample()
    target.tables["state"].unprocessed_once = True
    assert customer.nicknames(target, ["wmX", "wmY", "wmZ", "wmX", "wmNONE"]) == {"wmX": "小王", "wmY": "Yan"}  # type: ignore[arg-type]
    assert customer.nicknames(target, []) == {}  # type: ignore[arg-type]
    assert customer.nicknames(FakeTarget([], [], outputs={"MessagesTableName": "msgs"}), ["wmX"]) == {}  # type: ignore[arg-type]


def said(open_kfid: str, euid: str | None, at: int, text: str, **extra: Any) -> dict[str, Any]:
    item = {"msgid": f"m-{euid}-{at}", "ts": f"{at:010d}#{at:020d}", "send_time": Decimal(at), "origin": 3,
            "msgtype": "text", "open_kfid": open_kfid, "raw": json.dumps({"msgtype": "text", "text": {"content": text}}),
            **extra}
    if euid:
        item["external_userid"] = euid
        item["conv"] = f"{open_kfid}#{euid}"
    return item


@pytest.mark.parametrize(("limit", "expected", "more"), [
    (2, ["wm3", "wm2"], True),
    (4, ["wm3", "wm2", "wm1", "wm0"], True),  # pages left unread: older conversations may exist
    (10, ["wm3", "wm2", "wm1", "wm0"], False),
])
def test_recent_conversations_page_through_the_account_index(monkeypatch: pytest.MonkeyPatch, limit: int, expected: list[str],
                                                             more: bool) -> None:
    monkeypatch.setattr(messages, "PAGE", 2)
    items = [said("wkA", f"wm{n % 4}", NOW + n, f"text {n}") for n in range(8)]
    items += [said("wkA", None, NOW + 20, "a servicer's status"), said("wkB", "wmB", NOW + 30, "other account")]
    target = FakeTarget(items, [])
    found, has_more = messages.recent(target, "wkA", limit)  # type: ignore[arg-type]
    assert [i["external_userid"] for i in found] == expected and has_more is more
    assert [i["send_time"] for i in found] == [NOW + 4 + int(e[2:]) for e in expected]  # each customer's newest
    assert all(q == ("account", "wkA") for q in target.tables["msgs"].queries)
