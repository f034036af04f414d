"""The simulator's management endpoints - kf accounts, servicers (users and departments), the
contact list, statistics and the corp's qualification - over real HTTP, through Kefu's own
client functions (kefu.wecom.kf) where it has them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from functools import partial
from typing import Any

import httpx
import pytest

from kefu.wecom import kf as kfapi
from kefu.wecom.client import WeComClient
from kefu.wecom.errors import WeComError
from local.wecom_sim import WeComSimulator
from tests.integration.test_simulator import DAY, HOUR, Api

pytestmark = pytest.mark.integration

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) + b"\xff\xd9"
AMR = b"#!AMR\n" + (b"\x3c" + bytes(31)) * 10
CST = timezone(timedelta(hours=8))






@pytest.fixture()
def kf(sim: WeComSimulator) -> str:
    """The account the app manages already (a self-built app may add accounts only then)."""
    open_kfid = sim.add_account(name="Support")
    sim.add_servicer(open_kfid, "alice")
    return open_kfid


@pytest.fixture()
def avatar(client: WeComClient) -> str:
    media_id, _ = kfapi.media_upload(client, "image", "avatar.jpg", JPEG, "image/jpeg")
    return media_id


def errcode_of(call: Callable[[], Any]) -> int | None:
    with pytest.raises(WeComError) as info:
        call()
    return info.value.errcode


def day_of(sim: WeComSimulator, days_ago: int) -> tuple[str, int]:
    """('YYYY-MM-DD', midnight timestamp) of the China-time day ``days_ago`` before the simulator's today."""
    day = datetime.fromtimestamp(sim.now(), CST).date() - timedelta(days=days_ago)
    return day.isoformat(), int(datetime(day.year, day.month, day.day, tzinfo=CST).timestamp())


def served_customer(sim: WeComSimulator, open_kfid: str, external_userid: str | None = None) -> str:
    euid, _ = sim.customer_enter(open_kfid, external_userid, welcome=False)
    sim.customer_says(open_kfid, euid, "hello")
    return euid


# ---------------------------------------------------------------- kf/account/add


def test_account_add_makes_a_managed_account_with_an_avatar_from_the_media(
    sim: WeComSimulator, client: WeComClient, kf: str, avatar: str
) -> None:
    first = kfapi.account_add(client, "售后服务", avatar)
    second = kfapi.account_add(client, "x" * 16, sim.add_media(JPEG))
    third = kfapi.account_add(client, "Sales", avatar)
    listed = {a["open_kfid"]: a for a in kfapi.account_list(client)}
    assert set(listed) == {kf, first, second, third}
    assert listed[first]["name"] == "售后服务" and listed[first]["manage_privilege"] is True
    assert listed[first]["avatar"].startswith("https://")
    assert listed[first]["avatar"] == listed[third]["avatar"] != listed[second]["avatar"]  # one URL per media
    assert {a["open_kfid"]: a["avatar_media_id"] for a in sim.state()["accounts"]}[first] == avatar


def test_account_add_needs_an_account_the_app_manages_already(client: WeComClient, sim: WeComSimulator) -> None:
    media_id = sim.add_media(JPEG)
    assert errcode_of(lambda: kfapi.account_add(client, "First", media_id)) == 48002
    sim.add_account(name="Other app's", manage_privilege=False)
    assert errcode_of(lambda: kfapi.account_add(client, "First", media_id)) == 48002
    sim.add_account(name="Ours")
    assert kfapi.account_add(client, "First", media_id)


@pytest.mark.parametrize("name", ["", "   ", "x" * 17, "客服" * 9, "two\nlines", 7, None])
def test_account_add_refuses_an_invalid_name_with_95006(api: Api, kf: str, avatar: str, name: Any) -> None:
    assert api.post("kf/account/add", {"name": name, "media_id": avatar})["errcode"] == 95006


def test_account_add_refuses_an_avatar_that_is_not_a_stored_image_with_40007(
    sim: WeComSimulator, api: Api, client: WeComClient, kf: str, avatar: str
) -> None:
    voice, _ = kfapi.media_upload(client, "voice", "v.amr", AMR, "audio/amr")
    euid = served_customer(sim, kf)
    sim.customer_sends_media(kf, euid, "image")
    customers = [s for s in sim.messages(kf) if s.get("msgtype") == "image"][0]["image"]["media_id"]
    for media_id in ["3unknown", voice, customers, "3" + "x" * 200]:
        assert errcode_of(partial(kfapi.account_add, client, "Desk", media_id)) == 40007
    assert api.post("kf/account/add", {"name": "Desk"})["errcode"] == 40058  # no media_id at all
    sim.advance(3 * DAY + 1)
    assert errcode_of(lambda: kfapi.account_add(client, "Desk", avatar)) == 40007  # expired


def test_account_add_stops_at_the_corp_limits(sim: WeComSimulator, client: WeComClient, kf: str, avatar: str) -> None:
    sim.set_qualification(verified=False, wechat_channels_binding=False)
    for index in range(8):
        kfapi.account_add(client, f"Desk {index}", avatar)
    sim.add_account(name="Not ours", manage_privilege=False)  # every account of the corp counts
    assert len(sim.state()["accounts"]) == 10
    assert errcode_of(lambda: kfapi.account_add(client, "Eleventh", avatar)) == 95027
    sim.set_qualification(verified=True, wechat_channels_binding=False)
    assert kfapi.account_add(client, "Eleventh", avatar)
    for index in range(5000 - 11):
        sim.add_account(name=f"Bulk {index}")
    assert errcode_of(lambda: kfapi.account_add(client, "One too many", avatar)) == 95005


# ---------------------------------------------------------------- kf/account/update and del


def test_account_update_changes_name_and_avatar(sim: WeComSimulator, api: Api, client: WeComClient, kf: str,
                                               avatar: str) -> None:
    open_kfid = kfapi.account_add(client, "Old", avatar)
    other = sim.add_media(JPEG, filename="b.jpg")
    kfapi.account_update(client, open_kfid, name="New")
    kfapi.account_update(client, open_kfid, media_id=other)
    listed = {a["open_kfid"]: a for a in kfapi.account_list(client)}[open_kfid]
    assert listed["name"] == "New"
    kfapi.account_update(client, kf, name="Support 2", media_id=other)  # one the driver made: managed too
    assert {a["open_kfid"]: a for a in kfapi.account_list(client)}[kf]["avatar"] == listed["avatar"]
    assert errcode_of(lambda: kfapi.account_update(client, open_kfid, name="y" * 17)) == 95006
    assert errcode_of(lambda: kfapi.account_update(client, open_kfid, media_id="3nope")) == 40007
    assert errcode_of(lambda: kfapi.account_update(client, "wkunknown", name="X")) == 95000
    assert api.post("kf/account/update", {"open_kfid": open_kfid})["errcode"] == 40058  # nothing to change


def test_account_del_removes_the_account_and_later_calls_answer_95004(
    sim: WeComSimulator, api: Api, client: WeComClient, kf: str, avatar: str
) -> None:
    open_kfid = kfapi.account_add(client, "Temp", avatar)
    kfapi.servicer_change(client, "add", open_kfid, ["alice"], [])
    euid = served_customer(sim, open_kfid)  # state 0: does not block the delete
    kfapi.account_del(client, open_kfid)
    assert open_kfid not in {a["open_kfid"] for a in kfapi.account_list(client)}
    assert errcode_of(lambda: kfapi.account_del(client, open_kfid)) == 95004
    assert errcode_of(lambda: kfapi.account_update(client, open_kfid, name="Back")) == 95004
    assert errcode_of(lambda: kfapi.servicers(client, open_kfid)) == 95004
    assert errcode_of(lambda: kfapi.send_text(client, open_kfid, euid, "m1", "hi")) == 95004
    assert api.sync(open_kfid)["errcode"] == 95004
    assert all(item.get("open_kfid") != open_kfid for item in api.post("kf/sync_msg", {})["msg_list"])
    assert errcode_of(lambda: kfapi.account_del(client, "wkunknown")) == 95000


@pytest.mark.parametrize("state", [1, 2, 3])
def test_account_del_refuses_an_account_with_a_session_not_ended_with_95013(
    sim: WeComSimulator, client: WeComClient, kf: str, state: int
) -> None:
    euid = served_customer(sim, kf)
    kfapi.service_state_trans(client, kf, euid, state, "alice" if state == 3 else None)
    assert errcode_of(lambda: kfapi.account_del(client, kf)) == 95013
    kfapi.service_state_trans(client, kf, euid, 4)
    kfapi.account_del(client, kf)
    assert sim.state()["accounts"] == []


def test_an_account_the_app_does_not_manage_answers_48002(
    sim: WeComSimulator, api: Api, client: WeComClient, kf: str, avatar: str
) -> None:
    theirs = sim.add_account(name="Theirs", manage_privilege=False)
    sim.add_servicer(theirs, "alice")
    sim.add_member("bob")
    sim.set_callback_url("http://127.0.0.1:9/callback")  # nothing listens: a posted callback counts as status 0
    euid = served_customer(sim, theirs)
    assert sim.callbacks == []  # WeCom tells the app nothing of an account it does not manage
    assert {a["open_kfid"]: a["manage_privilege"] for a in kfapi.account_list(client)}[theirs] is False
    for call in [
        lambda: kfapi.account_update(client, theirs, name="Mine"),
        lambda: kfapi.account_del(client, theirs),
        lambda: kfapi.servicer_change(client, "add", theirs, ["bob"], []),
        lambda: kfapi.servicer_change(client, "del", theirs, ["alice"], []),
        lambda: kfapi.servicers(client, theirs),
        lambda: kfapi.send_text(client, theirs, euid, "m1", "hi"),
        lambda: kfapi.service_state_trans(client, theirs, euid, 3, "alice"),
        lambda: kfapi.service_state_get(client, theirs, euid),
        lambda: kfapi.add_contact_way(client, theirs, "s"),
        lambda: kfapi.sync_msg(client, theirs, None, None),
    ]:
        assert errcode_of(call) == 48002
    assert all(item.get("open_kfid") != theirs for item in api.post("kf/sync_msg", {})["msg_list"])
    served_customer(sim, kf)
    assert len(sim.callbacks) == 2  # the managed account's: one for the enter, one for the message


# ---------------------------------------------------------------- kf/servicer/add, del, list


def test_servicer_add_and_del_answer_per_item(sim: WeComSimulator, client: WeComClient, kf: str) -> None:
    sim.add_member("bob", [2])
    sim.add_department(3, ["carol"])
    added = kfapi.servicer_change(client, "add", kf, ["bob", "alice", "ghost"], [3, 99])
    assert [(r.get("userid", r.get("department_id")), r["errcode"], r["errmsg"]) for r in added] == [
        ("bob", 0, "success"), ("alice", 0, "ignored"), ("ghost", 60111, added[2]["errmsg"]),
        (3, 0, "success"), (99, 60123, added[4]["errmsg"]),
    ]
    listed = kfapi.servicers(client, kf)
    assert listed.users == {"alice": True, "bob": True} and listed.departments == (3,)
    removed = kfapi.servicer_change(client, "del", kf, ["bob", "carol"], [3, 2])
    assert [(r["errcode"], r["errmsg"]) for r in removed] == [(0, "success"), (0, "ignored"), (0, "success"),
                                                              (0, "ignored")]
    assert kfapi.servicers(client, kf) == kfapi.Servicers({"alice": True}, ())
    assert kfapi.servicer_list(client, kf) == {"alice": True}


def test_servicer_change_checks_its_lists_as_a_whole(sim: WeComSimulator, api: Api, client: WeComClient,
                                                     kf: str) -> None:
    members = [f"user{i:03d}" for i in range(150)]
    for userid in members:
        sim.add_member(userid)
    body = {"open_kfid": kf}
    assert api.post("kf/servicer/add", body)["errcode"] == 40058  # neither list
    assert api.post("kf/servicer/add", {**body, "userid_list": [], "department_id_list": []})["errcode"] == 40058
    assert api.post("kf/servicer/add", {**body, "userid_list": members[:101]})["errcode"] == 40058
    assert api.post("kf/servicer/del", {**body, "department_id_list": list(range(1, 102))})["errcode"] == 40058
    assert api.post("kf/servicer/add", {**body, "userid_list": "user000"})["errcode"] == 40058
    assert api.post("kf/servicer/add", {**body, "department_id_list": ["1"]})["errcode"] == 40058
    assert api.post("kf/servicer/add", {"open_kfid": "wkunknown", "userid_list": ["user000"]})["errcode"] == 95000
    results = kfapi.servicer_change(client, "add", kf, members, [])  # Kefu sends batches of 100
    assert len(results) == 150 and all(r["errcode"] == 0 for r in results)
    assert len(kfapi.servicers(client, kf).users) == 151


def test_servicer_cap_counts_the_members_of_servicing_departments(sim: WeComSimulator, client: WeComClient,
                                                                 kf: str) -> None:
    members = [f"u{i:03d}" for i in range(498)]
    for userid in members:
        sim.add_member(userid)
    sim.add_department(5, ["d1"])
    sim.add_department(6, ["d2", "d3"], parent=5)  # a sub-department's members count too
    for start in range(0, len(members), 100):
        kfapi.servicer_change(client, "add", kf, members[start:start + 100], [])
    assert len(kfapi.servicers(client, kf).users) == 499  # alice and 498 others
    [over_department] = kfapi.servicer_change(client, "add", kf, [], [5])
    assert over_department["errcode"] == 95020
    [last, over] = kfapi.servicer_change(client, "add", kf, ["d1", "d2"], [])
    assert last["errcode"] == 0 and over["errcode"] == 95020
    assert len(kfapi.servicers(client, kf).users) == 500


def test_members_of_a_servicing_department_take_sessions(sim: WeComSimulator, client: WeComClient, kf: str) -> None:
    sim.add_department(10, ["dora", "dan"])
    sim.add_department(11, ["sub"], parent=10)
    assert kfapi.servicer_change(client, "add", kf, [], [10])[0]["errcode"] == 0
    first, second, third = (served_customer(sim, kf) for _ in range(3))
    assert kfapi.service_state_trans(client, kf, first, 3, "dora")
    assert kfapi.service_state_get(client, kf, first) == (3, "dora")
    # A sub-department's members do not serve (the stricter reading).
    assert errcode_of(lambda: kfapi.service_state_trans(client, kf, second, 3, "sub")) == 95014
    sim.set_servicer_status(kf, "dan", receiving=False, stop_type=1)
    assert errcode_of(lambda: kfapi.service_state_trans(client, kf, second, 3, "dan")) == 95014
    sim.set_servicer_status(kf, "dan", receiving=True)
    kfapi.service_state_trans(client, kf, second, 3, "dan")
    sim.end_session(kf, second, "dan")  # the driver knows them as servicers too
    kfapi.servicer_change(client, "del", kf, [], [10])
    assert errcode_of(lambda: kfapi.service_state_trans(client, kf, third, 3, "dora")) == 95014


# ---------------------------------------------------------------- user/simplelist and the visible range


def test_user_simplelist_lists_a_department_and_optionally_its_children(
    sim: WeComSimulator, api: Api, client: WeComClient, kf: str
) -> None:
    sim.add_department(20, ["ann"])
    sim.add_department(21, ["ben"], parent=20)
    sim.add_member("cat", [20, 21])
    assert kfapi.department_members(client, 20, children=True) == ["ann", "ben", "cat"]  # fetch_child=1
    direct = api.get("user/simplelist", department_id="20", fetch_child="0").json()
    assert direct["errcode"] == 0
    assert direct["userlist"] == [{"userid": "ann", "name": "ann", "department": [20]},
                                  {"userid": "cat", "name": "cat", "department": [20, 21]}]
    assert "alice" in kfapi.department_members(client, 1)  # a member in no department is in the root one
    assert errcode_of(lambda: kfapi.department_members(client, 404)) == 60123
    assert api.get("user/simplelist").json()["errcode"] == 40058
    assert api.http.post("/cgi-bin/user/simplelist", params={"access_token": api.token}).json()["errcode"] == 43001


def test_the_visible_range_limits_the_contact_list_and_servicer_changes(
    sim: WeComSimulator, api: Api, client: WeComClient, kf: str
) -> None:
    sim.add_department(30, ["in1"])
    sim.add_department(31, ["in2"], parent=30)
    sim.add_department(40, ["out1"])
    sim.set_visible_departments([30])
    assert kfapi.department_members(client, 31) == ["in2"]  # below a visible department
    assert errcode_of(lambda: kfapi.department_members(client, 40)) == 60011
    assert errcode_of(lambda: kfapi.department_members(client, 1)) == 60011
    results = kfapi.servicer_change(client, "add", kf, ["in1", "out1"], [31, 40])
    assert [r["errcode"] for r in results] == [0, 60011, 0, 60011]
    euid = served_customer(sim, kf)
    assert errcode_of(lambda: kfapi.service_state_trans(client, kf, euid, 3, "alice")) == 60011  # root only
    kfapi.service_state_trans(client, kf, euid, 3, "in1")
    sim.set_visible_departments(None)
    assert len(kfapi.department_members(client, 1, children=True)) == 4


# ---------------------------------------------------------------- statistics


def test_corp_statistic_reports_the_days_set_and_nothing_for_the_others(
    sim: WeComSimulator, client: WeComClient, kf: str
) -> None:
    yesterday, yesterday_ts = day_of(sim, 1)
    three_ago, three_ago_ts = day_of(sim, 3)
    corp = {"session_cnt": 7, "customer_cnt": 5, "customer_msg_cnt": 20, "upgrade_service_customer_cnt": 1,
            "ai_session_reply_cnt": 0, "ai_transfer_rate": 0.5, "ai_knowledge_hit_rate": 0.25,
            "msg_rejected_customer_cnt": 0}
    sim.set_statistic(yesterday, None, corp)
    sim.set_statistic(three_ago, kf, {"session_cnt": 2})
    # Times are cut to their midnight (China time): noon of those days asks for the same days.
    days = kfapi.corp_statistic(client, three_ago_ts + 12 * HOUR, yesterday_ts + 12 * HOUR)
    assert [d["stat_time"] for d in days] == [three_ago_ts, three_ago_ts + DAY, yesterday_ts]
    assert [d.get("statistic") for d in days] == [None, None, corp]
    per_account = kfapi.corp_statistic(client, three_ago_ts, yesterday_ts, open_kfid=kf)
    assert [d.get("statistic") for d in per_account] == [{"session_cnt": 2}, None, None]
    assert errcode_of(lambda: kfapi.corp_statistic(client, three_ago_ts, yesterday_ts, open_kfid="wkx")) == 95000


def test_statistics_take_only_yesterday_back_180_days_and_31_days_at_once(
    sim: WeComSimulator, api: Api, client: WeComClient, kf: str
) -> None:
    _, today = day_of(sim, 0)
    _, yesterday = day_of(sim, 1)
    _, oldest = day_of(sim, 180)
    bad = [(today, today), (yesterday, today), (oldest - DAY, oldest), (yesterday, yesterday - DAY),
           (yesterday - 31 * DAY, yesterday)]
    for start, end in bad:
        assert errcode_of(partial(kfapi.corp_statistic, client, start, end)) == 40058
        assert errcode_of(partial(kfapi.servicer_statistic, client, kf, start, end)) == 40058
    assert len(kfapi.corp_statistic(client, yesterday - 30 * DAY, yesterday)) == 31
    assert len(kfapi.corp_statistic(client, oldest, oldest + 30 * DAY)) == 31
    assert api.post("kf/get_corp_statistic", {"start_time": yesterday})["errcode"] == 40058
    assert api.post("kf/get_corp_statistic", {"start_time": str(yesterday), "end_time": yesterday})["errcode"] == 40058


def test_a_days_figures_show_from_six_the_next_morning(sim: WeComSimulator, client: WeComClient, kf: str) -> None:
    _, today = day_of(sim, 0)
    sim.advance(today + DAY + HOUR - sim.now())  # 01:00 the next day
    yesterday, yesterday_ts = day_of(sim, 1)
    sim.set_statistic(yesterday, None, {"session_cnt": 3})
    assert "statistic" not in kfapi.corp_statistic(client, yesterday_ts, yesterday_ts)[0]
    sim.advance(5 * HOUR)
    assert kfapi.corp_statistic(client, yesterday_ts, yesterday_ts)[0]["statistic"] == {"session_cnt": 3}


def test_servicer_statistic_per_servicer_and_for_the_account(sim: WeComSimulator, api: Api, client: WeComClient,
                                                            kf: str) -> None:
    yesterday, ts = day_of(sim, 1)
    alice = {"session_cnt": 4, "customer_cnt": 3, "customer_msg_cnt": 9, "reply_rate": 1.0,
             "first_reply_average_sec": 42.5, "satisfaction_investgate_cnt": 2, "satisfaction_participation_rate": 0.5,
             "satisfied_rate": 1.0, "middling_rate": 0, "dissatisfied_rate": 0, "upgrade_service_customer_cnt": 0,
             "upgrade_service_member_invite_cnt": 0, "upgrade_service_member_customer_cnt": 0,
             "upgrade_service_groupchat_invite_cnt": 0, "upgrade_service_groupchat_customer_cnt": 0,
             "msg_rejected_customer_cnt": 0}
    sim.set_statistic(yesterday, kf, alice, servicer_userid="alice")
    sim.set_statistic(yesterday, kf, {"session_cnt": 9}, kind="servicer")
    sim.set_statistic(yesterday, kf, {"session_cnt": 1})  # the account's corp statistic: not these
    assert kfapi.servicer_statistic(client, kf, ts, ts, servicer_userid="alice") == [{"stat_time": ts,
                                                                                      "statistic": alice}]
    assert kfapi.servicer_statistic(client, kf, ts, ts) == [{"stat_time": ts, "statistic": {"session_cnt": 9}}]
    sim.add_member("bob")
    assert kfapi.servicer_statistic(client, kf, ts, ts, servicer_userid="bob") == [{"stat_time": ts}]
    assert errcode_of(lambda: kfapi.servicer_statistic(client, kf, ts, ts, servicer_userid="ghost")) == 60111
    assert api.post("kf/get_servicer_statistic", {"start_time": ts, "end_time": ts})["errcode"] == 95000
    with pytest.raises(ValueError, match="fields"):
        sim.set_statistic(yesterday, kf, {"ai_transfer_rate": 1}, servicer_userid="alice")
    with pytest.raises(ValueError, match="fields"):
        sim.set_statistic(yesterday, None, {"reply_rate": 1})
    with pytest.raises(ValueError, match="open_kfid"):
        sim.set_statistic(yesterday, None, {"session_cnt": 1}, kind="servicer")
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        sim.set_statistic("15/06/2025", None, {"session_cnt": 1})
    sim.set_statistic(yesterday, kf, None, servicer_userid="alice")
    assert kfapi.servicer_statistic(client, kf, ts, ts, servicer_userid="alice") == [{"stat_time": ts}]


# ---------------------------------------------------------------- qualification


def test_corp_qualification_and_the_customer_caps_it_brings(sim: WeComSimulator, api: Api, client: WeComClient,
                                                            kf: str) -> None:
    assert kfapi.corp_qualification(client) == {"errcode": 0, "errmsg": "ok", "wechat_channels_binding": True}
    assert api.post("kf/get_corp_qualification", {})["errcode"] == 43001
    sim.set_qualification(verified=False, wechat_channels_binding=False)
    assert kfapi.corp_qualification(client)["wechat_channels_binding"] is False
    for index in range(99):
        sim.add_customer(f"wmold{index:03d}")
    hundredth = served_customer(sim, kf)
    later = served_customer(sim, kf)
    kfapi.send_text(client, kf, hundredth, "m1", "hi")
    assert errcode_of(lambda: kfapi.send_text(client, kf, later, "m2", "hi")) == 95003
    sim.set_qualification(verified=True, wechat_channels_binding=False)  # 10,000 customers
    kfapi.send_text(client, kf, later, "m2", "hi")


# ---------------------------------------------------------------- admin actions


def test_admin_actions_drive_the_management_state(sim: WeComSimulator, http: httpx.Client, client: WeComClient,
                                                  kf: str) -> None:
    def admin(action: str, **args: Any) -> Any:
        answer = http.post(f"/sim/{action}", json=args).json()
        assert answer["ok"], answer
        return answer["result"]

    theirs = admin("add_account", name="Theirs", manage_privilege=False)
    admin("add_department", department_id=50, members=["eve"])
    admin("add_department", department_id=51, members=["fay"], parent=50)
    admin("set_visible_departments", department_ids=[51])
    assert kfapi.department_members(client, 51) == ["fay"]
    assert errcode_of(lambda: kfapi.department_members(client, 50)) == 60011
    admin("set_visible_departments", department_ids=None)
    yesterday, ts = day_of(sim, 1)
    admin("set_statistic", day=yesterday, open_kfid=None, figures={"session_cnt": 8})
    assert kfapi.corp_statistic(client, ts, ts)[0]["statistic"] == {"session_cnt": 8}
    assert admin("set_qualification", verified=True, wechat_channels_binding=False) == {"wechat_channels_binding": False}
    assert errcode_of(lambda: kfapi.servicers(client, theirs)) == 48002
    refused = http.post("/sim/add_department", json={"department_id": 52, "parent": 999}).json()
    assert refused["ok"] is False and "parent" in refused["error"]
