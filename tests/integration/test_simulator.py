"""The WeCom kf simulator, exercised over real HTTP the way a client would use it."""

from __future__ import annotations

import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from kefu.crypto import WXBizMsgCrypt
from local.sim_admin import SimAdmin, SimAdminError, main
from local.wecom_sim import (
    DEMO_AES_KEY,
    DEMO_CORP_ID,
    DEMO_CORP_SECRET,
    DEMO_TOKEN,
    WeComSimulator,
)

pytestmark = pytest.mark.integration

T0 = 1_750_000_000.0
HOUR = 3600
DAY = 86400


class FakeClock:
    def __init__(self, start: float = T0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t


@pytest.fixture()
def kf(sim: WeComSimulator) -> str:
    open_kfid = sim.add_account(name="Support")
    sim.add_servicer(open_kfid, "alice")
    sim.add_servicer(open_kfid, "bob")
    sim.add_servicer(open_kfid, "carol", status=1, stop_type=1)
    return open_kfid


class Api:
    """A minimal client: one access token, JSON in and out."""

    def __init__(self, http: httpx.Client, refresh: bool = True) -> None:
        self.http = http
        self.refresh = refresh  # fetch a new token once on 42001, as a real client does
        self.token = self.gettoken()["access_token"]

    def gettoken(self, corpid: str = DEMO_CORP_ID, secret: str = DEMO_CORP_SECRET) -> dict[str, Any]:
        return self.http.get("/cgi-bin/gettoken", params={"corpid": corpid, "corpsecret": secret}).json()

    def post(self, path: str, body: dict[str, Any], token: str | None = None) -> dict[str, Any]:
        response = self.http.post(f"/cgi-bin/{path}", params={"access_token": token or self.token}, json=body)
        assert response.headers["content-type"].startswith("application/json")
        answer = response.json()
        if answer["errcode"] == 42001 and self.refresh and token is None:
            self.token = self.gettoken()["access_token"]
            return self.post(path, body)
        return answer

    def get(self, path: str, **params: str) -> httpx.Response:
        response = self.http.get(f"/cgi-bin/{path}", params={"access_token": self.token, **params})
        if self.refresh and response.headers["content-type"].startswith("application/json") \
                and response.json()["errcode"] == 42001:
            self.token = self.gettoken()["access_token"]
            return self.get(path, **params)
        return response

    def sync(self, open_kfid: str, **body: Any) -> dict[str, Any]:
        return self.post("kf/sync_msg", {"open_kfid": open_kfid, **body})

    def send_text(self, open_kfid: str, touser: str, content: str = "hi", **extra: Any) -> dict[str, Any]:
        body = {"touser": touser, "open_kfid": open_kfid, "msgtype": "text", "text": {"content": content}, **extra}
        return self.post("kf/send_msg", body)

    def trans(self, open_kfid: str, euid: str, state: int, servicer: str = "") -> dict[str, Any]:
        body = {"open_kfid": open_kfid, "external_userid": euid, "service_state": state, "servicer_userid": servicer}
        return self.post("kf/service_state/trans", body)

    def state(self, open_kfid: str, euid: str) -> int:
        return self.post("kf/service_state/get", {"open_kfid": open_kfid, "external_userid": euid})["service_state"]


def drain(api: Api, open_kfid: str, cursor: str | None = None, **body: Any) -> tuple[list[dict[str, Any]], str, int]:
    """Pull until has_more is 0; returns (items, last cursor, pages)."""
    items: list[dict[str, Any]] = []
    pages = 0
    while True:
        extra = dict(body)
        if cursor:
            extra["cursor"] = cursor
        page = api.sync(open_kfid, **extra)
        assert page["errcode"] == 0, page
        pages += 1
        items.extend(page["msg_list"])
        cursor = page["next_cursor"]
        if not page["has_more"]:
            return items, cursor, pages
        assert pages < 200, "has_more never cleared"


# ---------------------------------------------------------------- tokens


def test_gettoken_and_token_errors(sim: WeComSimulator, http: httpx.Client, kf: str) -> None:
    api = Api(http, refresh=False)
    assert api.gettoken(corpid="wrong")["errcode"] == 40013
    bad_secret = api.gettoken(secret="wrong")
    assert bad_secret["errcode"] == 40001
    assert "hint:" in bad_secret["errmsg"] and "more info at" in bad_secret["errmsg"]
    ok = api.gettoken()
    assert ok["errcode"] == 0 and ok["errmsg"] == "ok" and ok["expires_in"] == 7200
    assert sim.gettoken_count == 4

    body = {"offset": 0, "limit": 100}
    assert http.post("/cgi-bin/kf/account/list", json=body).json()["errcode"] == 41001
    assert api.post("kf/account/list", body, token="not-a-token")["errcode"] == 40014
    listed = api.post("kf/account/list", body)
    assert listed["errcode"] == 0
    assert listed["account_list"] == [
        {"open_kfid": kf, "name": "Support", "avatar": listed["account_list"][0]["avatar"], "manage_privilege": True}
    ]

    sim.advance(7199)
    assert api.post("kf/account/list", body)["errcode"] == 0
    sim.advance(1)
    assert api.post("kf/account/list", body)["errcode"] == 42001
    fresh = api.gettoken()["access_token"]
    assert api.post("kf/account/list", body, token=fresh)["errcode"] == 0
    sim.expire_all_tokens()
    assert api.post("kf/account/list", body, token=fresh)["errcode"] == 42001


def test_methods_bodies_and_unknown_paths(api: Api, http: httpx.Client, kf: str) -> None:
    params = {"access_token": api.token}
    assert http.get("/cgi-bin/kf/sync_msg", params=params).json()["errcode"] == 43002
    assert http.post("/cgi-bin/kf/servicer/list", params=params, json={}).json()["errcode"] == 43001
    escaped = b'{"open_kfid": "%s", "scene": "\\u4f60"}' % kf.encode()
    assert http.post("/cgi-bin/kf/add_contact_way", params=params, content=escaped).json()["errcode"] == 40033
    assert http.post("/cgi-bin/kf/add_contact_way", params=params, content=b"{nope").json()["errcode"] == 47001
    missing = http.post("/cgi-bin/kf/no_such_api", params=params, json={})
    assert missing.status_code == 404 and missing.json()["errcode"] == 40058


def test_servicer_list_and_contact_way(sim: WeComSimulator, api: Api, kf: str) -> None:
    listed = api.get("kf/servicer/list", open_kfid=kf).json()
    assert {s["userid"]: (s["status"], s["stop_type"]) for s in listed["servicer_list"]} == {
        "alice": (0, 0), "bob": (0, 0), "carol": (1, 1)
    }
    assert api.get("kf/servicer/list", open_kfid="wkunknown").json()["errcode"] == 95000

    first = api.post("kf/add_contact_way", {"open_kfid": kf, "scene": "spring_ad-1"})
    again = api.post("kf/add_contact_way", {"open_kfid": kf, "scene": "spring_ad-1"})
    other = api.post("kf/add_contact_way", {"open_kfid": kf, "scene": "web"})
    assert first["url"] == again["url"] != other["url"]
    assert first["url"].startswith("https://work.weixin.qq.com/kf/kfc") and "?enc_scene=ENC" in first["url"]
    assert api.post("kf/add_contact_way", {"open_kfid": kf, "scene": "has space"})["errcode"] == 40058
    assert api.post("kf/add_contact_way", {"open_kfid": kf, "scene": "x" * 33})["errcode"] == 40058
    assert api.post("kf/add_contact_way", {"open_kfid": "wkbad", "scene": "a"})["errcode"] == 95000

    euid, _ = sim.customer_enter_via_link(first["url"] + "&scene_param=%E6%B4%BB%E5%8A%A8%3D1")
    context = api.post("kf/customer/batchget", {"external_userid_list": [euid], "need_enter_session_context": 1})
    assert context["customer_list"][0]["enter_session_context"] == {"scene": "spring_ad-1", "scene_param": "活动=1"}
    with pytest.raises(ValueError):
        sim.customer_enter_via_link(first["url"].replace("enc_scene=ENC", "enc_scene=ENCX"))


# ---------------------------------------------------------------- sync_msg


def test_sync_paging_with_page_cap_and_empty_pages(sim: WeComSimulator, api: Api, kf: str) -> None:
    euid, _ = sim.customer_enter(kf, welcome=False)
    sent = [sim.customer_says(kf, euid, f"message {i}") for i in range(24)]
    sim.configure(page_cap=4, empty_page_every=3)

    pages: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = api.sync(kf, limit=10, **({"cursor": cursor} if cursor else {}))
        assert page["errcode"] == 0
        pages.append(page)
        cursor = page["next_cursor"]
        if not page["has_more"]:
            break
    items = [item["msgid"] for page in pages for item in page["msg_list"]]
    assert items[1:] == sent and len(items) == 25  # the enter_session event comes first
    assert all(len(page["msg_list"]) <= 4 for page in pages)
    assert any(page["has_more"] == 1 and not page["msg_list"] for page in pages)
    assert [len(call.get("count", -1) * "x") for call in sim.sync_calls] == [len(p["msg_list"]) for p in pages]
    assert {call["limit"] for call in sim.sync_calls} == {10}


def test_limit_is_honoured_and_has_more_reflects_remaining(sim: WeComSimulator, api: Api, kf: str) -> None:
    euid, _ = sim.customer_enter(kf, welcome=False)
    for i in range(5):
        sim.customer_says(kf, euid, str(i))
    first = api.sync(kf, limit=3)
    assert len(first["msg_list"]) == 3 and first["has_more"] == 1
    second = api.sync(kf, limit=3, cursor=first["next_cursor"])
    assert len(second["msg_list"]) == 3 and second["has_more"] == 0
    assert api.sync(kf, limit=-1)["errcode"] == 40058
    assert api.sync("wkunknown")["errcode"] == 95000


def test_cursor_is_opaque_and_resumes(sim: WeComSimulator, api: Api, kf: str) -> None:
    euid, _ = sim.customer_enter(kf, welcome=False)
    sim.customer_says(kf, euid, "one")
    items, cursor, _ = drain(api, kf)
    assert len(items) == 2
    assert not cursor.isdigit() and len(cursor) <= 64

    assert drain(api, kf, cursor)[0] == []
    later = sim.customer_says(kf, euid, "two")
    assert [item["msgid"] for item in drain(api, kf, cursor)[0]] == [later]

    forged = cursor[:-2] + ("AA" if not cursor.endswith("AA") else "BB")
    assert api.sync(kf, cursor=forged)["errcode"] == 40058
    assert api.sync(kf, cursor="12")["errcode"] == 40058
    other = sim.add_account()
    assert api.sync(other, cursor=cursor)["errcode"] == 40058


def test_three_day_retention(sim: WeComSimulator, api: Api, kf: str) -> None:
    now = sim.now()
    old = sim.add_raw_item(kf, {"msgtype": "text", "origin": 3, "text": {"content": "old"}}, send_time=now - 4 * DAY)
    unknown = sim.add_raw_item(kf, {"origin": 3, "msgtype": "hologram", "hologram": {"x": 1}})
    euid, _ = sim.customer_enter(kf, welcome=False)
    items = drain(api, kf)[0]
    msgids = [item["msgid"] for item in items]
    assert old not in msgids and unknown in msgids and len(items) == 2

    sim.advance(2 * DAY)
    fresh = sim.customer_says(kf, euid, "still here")
    sim.advance(1 * DAY + 60)
    assert [item["msgid"] for item in drain(api, kf)[0]] == [fresh]


def test_sync_item_shapes_and_sends_not_returned(sim: WeComSimulator, api: Api, kf: str) -> None:
    euid, code = sim.customer_enter(kf, scene="web", scene_param="p1")
    sim.customer_says(kf, euid, "hello")
    sim.set_servicer_status(kf, "bob", receiving=False, stop_type=1)
    assert api.send_text(kf, euid, "reply")["errcode"] == 0
    items = drain(api, kf)[0]
    enter, text, status = items
    assert enter["msgtype"] == "event" and enter["origin"] == 4
    assert "open_kfid" not in enter and "external_userid" not in enter
    assert enter["event"] == {
        "event_type": "enter_session", "open_kfid": kf, "external_userid": euid,
        "scene": "web", "scene_param": "p1", "welcome_code": code,
    }
    assert text["origin"] == 3 and text["open_kfid"] == kf and text["external_userid"] == euid
    assert text["text"] == {"content": "hello"} and isinstance(text["send_time"], int)
    assert status["event"]["event_type"] == "servicer_status_change"
    assert (status["event"]["status"], status["event"]["stop_type"]) == (2, 1)
    listed = {s["userid"]: s["status"] for s in api.get("kf/servicer/list", open_kfid=kf).json()["servicer_list"]}
    assert listed["bob"] == 1


def test_callback_token_lifetime(sim: WeComSimulator, api: Api, kf: str) -> None:
    token = sim.issue_callback_token(kf)
    assert api.sync(kf, token=token)["errcode"] == 0
    sim.advance(599)
    assert api.sync(kf, token=token)["errcode"] == 0  # reusable within its life
    sim.advance(1)
    assert api.sync(kf, token=token)["errcode"] == 95007
    assert api.sync(kf, token="ENCgarbage")["errcode"] == 95007
    other = sim.add_account()
    assert api.sync(other, token=sim.issue_callback_token(kf))["errcode"] == 95007
    assert [call["token"] for call in sim.sync_calls][:2] == [token, token]


def test_tokenless_rate_limit(sim: WeComSimulator, api: Api, kf: str) -> None:
    sim.configure(tokenless_limit_per_minute=2)
    assert [api.sync(kf)["errcode"] for _ in range(3)] == [0, 0, 45009]
    assert api.sync(kf, token=sim.issue_callback_token(kf))["errcode"] == 0
    sim.advance(61)
    assert api.sync(kf)["errcode"] == 0


# ---------------------------------------------------------------- sending


def test_send_msg_state_rules(sim: WeComSimulator, api: Api, kf: str) -> None:
    euid, _ = sim.customer_enter(kf, welcome=False)
    assert api.state(kf, euid) == 0
    assert api.send_text(kf, euid)["errcode"] == 95002  # no customer message yet
    sim.customer_says(kf, euid, "hi")
    first = api.send_text(kf, euid)
    assert first["errcode"] == 0 and first["msgid"]
    assert api.state(kf, euid) == 1
    assert api.trans(kf, euid, 3, "alice")["errcode"] == 0
    assert api.send_text(kf, euid)["errcode"] == 95018
    assert api.send_text(kf, "wm-never-seen")["errcode"] == 40096
    sent = sim.sent_messages(kf, euid)
    assert [(s["via"], s["state"], s["payload"]) for s in sent] == [("send_msg", 0, {"content": "hi"})]


def test_send_budget_and_window(sim: WeComSimulator, api: Api, kf: str) -> None:
    euid, _ = sim.customer_enter(kf, welcome=False)
    sim.customer_says(kf, euid, "question")
    assert [api.send_text(kf, euid)["errcode"] for _ in range(6)] == [0, 0, 0, 0, 0, 95001]
    sim.customer_says(kf, euid, "clicked", menu_id="m1")  # a menu click gives no new budget
    assert api.send_text(kf, euid)["errcode"] == 95001
    sim.customer_says(kf, euid, "another question")
    assert api.send_text(kf, euid)["errcode"] == 0
    sim.advance(48 * HOUR + 1)
    assert api.send_text(kf, euid)["errcode"] == 95002


def test_send_msg_validation_and_duplicate_msgid(sim: WeComSimulator, api: Api, kf: str) -> None:
    euid, _ = sim.customer_enter(kf, welcome=False)
    sim.customer_says(kf, euid, "hi")
    assert api.send_text(kf, euid, msgid="reply-1")["msgid"] == "reply-1"
    duplicate = api.send_text(kf, euid, msgid="reply-1")
    assert duplicate["errcode"] == 40058 and "duplicate" not in duplicate["errmsg"]  # Kefu may read only the errcode
    assert api.send_text(kf, euid, msgid="bad id!")["errcode"] == 40058
    assert api.send_text(kf, euid, msgid="x" * 33)["errcode"] == 40058
    assert api.send_text(kf, euid, "字" * 683)["errcode"] == 45002  # 2049 bytes
    assert api.send_text(kf, euid, "字" * 682)["errcode"] == 0
    news = {"touser": euid, "open_kfid": kf, "msgtype": "news", "news": {}}
    assert api.post("kf/send_msg", news)["errcode"] == 40008
    items = [{"type": "click", "click": {"id": str(i), "content": f"option {i}"}} for i in range(11)]
    menu: dict[str, Any] = {"touser": euid, "open_kfid": kf, "msgtype": "msgmenu", "msgmenu": {"head_content": "pick", "list": items}}
    assert api.post("kf/send_msg", menu)["errcode"] == 95008
    menu["msgmenu"]["list"] = items[:10]
    assert api.post("kf/send_msg", menu)["errcode"] == 0
    synced = {item["msgid"] for item in drain(api, kf)[0]}
    assert synced.isdisjoint(s["msgid"] for s in sim.sent_messages())
    assert len(sim.sent_messages(kf)) == 3


def test_welcome_code_expiry_and_single_use(sim: WeComSimulator, api: Api, kf: str) -> None:
    euid, code = sim.customer_enter(kf)
    assert code
    welcome = {"code": code, "msgtype": "text", "text": {"content": "welcome"}}
    assert api.post("kf/send_msg_on_event", {**welcome, "msgtype": "image", "image": {"media_id": "x"}})["errcode"] \
        == 40008
    assert api.post("kf/send_msg_on_event", welcome)["errcode"] == 0
    reused = api.post("kf/send_msg_on_event", welcome)
    assert reused["errcode"] == 40058 and "invalid code" in reused["errmsg"]
    assert sim.customer_enter(kf, euid)[1] is None  # welcomed within 48 h

    late_euid, late_code = sim.customer_enter(kf)
    sim.advance(20)
    late = {"code": late_code, "msgtype": "text", "text": {"content": "too late"}}
    assert api.post("kf/send_msg_on_event", late)["errcode"] == 40058
    assert sim.customer_enter(kf, welcome=False)[1] is None
    sent = sim.sent_messages(kf)
    assert [(s["via"], s["code_kind"], s["external_userid"]) for s in sent] == [
        ("send_msg_on_event", "welcome", euid)
    ]
    assert late_euid != euid


def test_trans_rules_and_msg_codes(sim: WeComSimulator, api: Api, kf: str) -> None:
    euid, _ = sim.customer_enter(kf, welcome=False)
    sim.customer_says(kf, euid, "need a human")
    to_pool = api.trans(kf, euid, 2)
    assert to_pool["errcode"] == 0 and to_pool["msg_code"]
    assert api.trans(kf, euid, 2)["errcode"] == 95016
    assert api.trans(kf, euid, 1)["errcode"] == 95016
    assert api.trans(kf, euid, 3, "carol")["errcode"] == 95014  # stopped
    assert api.trans(kf, euid, 3, "nobody")["errcode"] == 95014
    to_alice = api.trans(kf, euid, 3, "alice")
    assert to_alice["errcode"] == 0 and to_alice["msg_code"]
    assert api.trans(kf, euid, 3, "alice")["errcode"] == 95016
    to_bob = api.trans(kf, euid, 3, "bob")
    assert to_bob["errcode"] == 0 and "msg_code" not in to_bob
    assert api.post("kf/service_state/get", {"open_kfid": kf, "external_userid": euid})["servicer_userid"] == "bob"

    pool_notice = {"code": to_pool["msg_code"], "msgtype": "text", "text": {"content": "queued"}}
    assert api.post("kf/send_msg_on_event", pool_notice)["errcode"] == 95018  # session left the pool
    pickup_notice = {"code": to_alice["msg_code"], "msgtype": "text", "text": {"content": "hello"}}
    assert api.post("kf/send_msg_on_event", pickup_notice)["errcode"] == 0

    ended = api.trans(kf, euid, 4)
    assert ended["errcode"] == 0 and ended["msg_code"]
    assert api.trans(kf, euid, 1)["errcode"] == 95016
    assert api.trans(kf, euid, 3, "alice")["errcode"] == 95016
    goodbye = {"code": ended["msg_code"], "msgtype": "text", "text": {"content": "bye"}}
    sim.advance(19)
    assert api.post("kf/send_msg_on_event", goodbye)["errcode"] == 0
    assert api.post("kf/send_msg_on_event", goodbye)["errcode"] == 40058

    sim.customer_says(kf, euid, "me again")
    assert api.state(kf, euid) == 0
    assert api.trans(kf, "wm-never-seen", 1)["errcode"] == 40096
    assert api.post("kf/service_state/get", {"open_kfid": kf, "external_userid": "wm-new"})["service_state"] == 0


def test_servicer_driven_session_events(sim: WeComSimulator, api: Api, kf: str) -> None:
    euid, _ = sim.customer_enter(kf, welcome=False)
    sim.customer_says(kf, euid, "hi")
    api.trans(kf, euid, 2)
    sim.pickup(kf, euid, "alice")
    sim.servicer_says(kf, euid, "alice", "how can I help?")
    sim.transfer(kf, euid, "bob")
    sim.end_session(kf, euid, "bob")
    sim.servicer_says(kf, euid, "alice", "one more thing")  # reopens the ended session
    sim.send_fail(kf, euid, "some-msgid", 4)
    items = drain(api, kf)[0]
    events = [item["event"] for item in items if item["msgtype"] == "event"][1:]
    changes = [(e.get("change_type"), e.get("old_servicer_userid"), e.get("new_servicer_userid")) for e in events]
    assert changes == [(1, None, "alice"), (2, "alice", "bob"), (3, "bob", None), (4, "", "alice"), (None, None, None)]
    assert events[0]["msg_code"] and events[2]["msg_code"] and "msg_code" not in events[1]
    assert events[4] == {"event_type": "msg_send_fail", "open_kfid": kf, "external_userid": euid,
                         "fail_msgid": "some-msgid", "fail_type": 4}
    servicer_msgs = [item for item in items if item["origin"] == 5]
    assert [m["servicer_userid"] for m in servicer_msgs] == ["alice", "alice"]
    assert sim.session(kf, euid)["service_state"] == 3
    with pytest.raises(ValueError):
        sim.servicer_says(kf, euid, "bob", "not mine")


# ---------------------------------------------------------------- customers and media


def test_customer_batchget(sim: WeComSimulator, api: Api, kf: str) -> None:
    channels = {"nickname": "shop", "scene": 1}
    euid, _ = sim.customer_enter(kf, scene="live", scene_param="x", wechat_channels=channels, nickname="小明")
    answer = api.post("kf/customer/batchget", {"external_userid_list": [euid, "wmghost"],
                                               "need_enter_session_context": 1})
    assert answer["invalid_external_userid"] == ["wmghost"]
    customer = answer["customer_list"][0]
    assert customer["nickname"] == "小明" and customer["external_userid"] == euid
    assert customer["enter_session_context"] == {"scene": "live", "scene_param": "x", "wechat_channels": channels}
    plain = api.post("kf/customer/batchget", {"external_userid_list": [euid], "need_enter_session_context": 0})
    assert "enter_session_context" not in plain["customer_list"][0]
    assert api.post("kf/customer/batchget", {"external_userid_list": ["wm"] * 101})["errcode"] == 40058
    assert api.post("kf/customer/batchget", {"external_userid_list": []})["errcode"] == 40058


def test_media_get(sim: WeComSimulator, api: Api, kf: str) -> None:
    euid, _ = sim.customer_enter(kf, welcome=False)
    msgid = sim.customer_sends_media(kf, euid, "image")
    item = sim.item(msgid)
    assert item is not None
    media_id = item["image"]["media_id"]
    response = api.get("media/get", media_id=media_id)
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    assert response.content.startswith(b"\xff\xd8")
    missing = api.get("media/get", media_id="nope")
    assert missing.headers["content-type"].startswith("application/json") and missing.json()["errcode"] == 40007
    sim.advance(3 * DAY + 1)
    assert api.get("media/get", media_id=media_id).json()["errcode"] == 40007


# ---------------------------------------------------------------- faults


def test_fault_injection(sim: WeComSimulator, api: Api, http: httpx.Client, kf: str) -> None:
    sim.inject_fault("kf/sync_msg", errcode=-1, times=2)
    assert [api.sync(kf)["errcode"] for _ in range(3)] == [-1, -1, 0]

    sim.inject_fault("/cgi-bin/kf/sync_msg", http_status=502)
    bad = http.post("/cgi-bin/kf/sync_msg", params={"access_token": api.token}, json={"open_kfid": kf})
    assert bad.status_code == 502 and not bad.headers["content-type"].startswith("application/json")
    assert api.sync(kf)["errcode"] == 0

    sim.inject_fault("kf/sync_msg", delay=0.3)
    started = time.monotonic()
    assert api.sync(kf)["errcode"] == 0
    assert time.monotonic() - started >= 0.3

    sim.egress_ip = "1.2.3.4"
    sim.inject_fault("gettoken", errcode=60020)
    blocked = api.gettoken()
    assert blocked["errcode"] == 60020
    assert blocked["errmsg"].startswith("not allow to access from your ip") and "from ip: 1.2.3.4" in blocked["errmsg"]

    sim.inject_fault("kf/sync_msg", errcode=45009, times=5)
    sim.clear_faults()
    assert api.sync(kf)["errcode"] == 0

    sim.ip_blocked = True
    assert api.gettoken()["errcode"] == 60020 and api.sync(kf)["errcode"] == 60020
    sim.ip_blocked = False
    recorded = sim.calls_to("kf/sync_msg")
    assert [c["errcode"] for c in recorded[:3]] == [-1, -1, 0] and recorded[3]["http_status"] == 502


# ---------------------------------------------------------------- callbacks


class _Receiver:
    """A tiny callback endpoint that records what WeCom would POST."""

    def __init__(self, status: int = 200) -> None:
        self.requests: list[tuple[str, bytes]] = []
        received = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((self.path, body))
                self.send_response(status)
                self.send_header("Content-Length", "7")
                self.end_headers()
                self.wfile.write(b"success")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/callback"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def receiver() -> Iterator[_Receiver]:
    rec = _Receiver()
    yield rec
    rec.close()


def _open(path: str, body: bytes) -> tuple[dict[str, str], ET.Element]:
    query = dict(httpx.URL(path).params)
    encrypted = ET.fromstring(body).findtext("Encrypt") or ""
    crypt = WXBizMsgCrypt(DEMO_TOKEN, DEMO_AES_KEY, DEMO_CORP_ID)
    plain = crypt.verify_and_decrypt(query["msg_signature"], query["timestamp"], query["nonce"], encrypted)
    return query, ET.fromstring(plain)


def test_callbacks_are_signed_encrypted_and_repeatable(
    sim: WeComSimulator, api: Api, kf: str, receiver: _Receiver
) -> None:
    sim.set_callback_url(receiver.url)
    euid, _ = sim.customer_enter(kf, welcome=False)
    sim.customer_says(kf, euid, "ping")
    assert len(receiver.requests) == 2  # automatic, one per change

    statuses = sim.fire_callback(kf, repeat=3)
    assert statuses == [200, 200, 200]
    retries = receiver.requests[2:]
    opened = [_open(path, body) for path, body in retries]
    assert len({path for path, _ in retries}) == 1  # same signature, timestamp and nonce
    query, event = opened[0]
    assert query["timestamp"] == str(int(sim.now()))
    assert event.findtext("ToUserName") == DEMO_CORP_ID
    assert event.findtext("MsgType") == "event" and event.findtext("Event") == "kf_msg_or_event"
    assert event.findtext("OpenKfId") == kf
    assert event.findtext("CreateTime") == query["timestamp"]
    envelope = ET.fromstring(retries[0][1])
    assert envelope.findtext("ToUserName") == DEMO_CORP_ID and envelope.findtext("AgentID") == "1000002"

    token = event.findtext("Token") or ""
    page = api.sync(kf, token=token)
    assert page["errcode"] == 0 and len(page["msg_list"]) == 2

    sim.auto_callback = False
    sim.customer_says(kf, euid, "quiet")
    assert len(receiver.requests) == 5
    sim.set_callback_url("http://127.0.0.1:9/unreachable")
    assert sim.fire_callback(kf) == [0]


def test_signed_helpers_round_trip(sim: WeComSimulator) -> None:
    crypt = WXBizMsgCrypt(DEMO_TOKEN, DEMO_AES_KEY, DEMO_CORP_ID)
    echo = sim.signed_echo("1616140317555161061")
    assert crypt.verify_and_decrypt(echo["msg_signature"], echo["timestamp"], echo["nonce"], echo["echostr"]) \
        == "1616140317555161061"
    xml = "<xml><Event>kf_account_auth_change</Event></xml>"
    query, body = sim.signed_callback_request(xml)
    encrypted = ET.fromstring(body).findtext("Encrypt") or ""
    assert crypt.verify_and_decrypt(query["msg_signature"], query["timestamp"], query["nonce"], encrypted) == xml
    wrong = WXBizMsgCrypt("other-token", DEMO_AES_KEY, DEMO_CORP_ID)
    with pytest.raises(ValueError):
        wrong.verify(query["msg_signature"], query["timestamp"], query["nonce"], encrypted)


# ---------------------------------------------------------------- admin over HTTP


def test_admin_endpoints(sim: WeComSimulator, http: httpx.Client, api: Api, receiver: _Receiver) -> None:
    def admin(action: str, **args: Any) -> httpx.Response:
        return http.post(f"/sim/{action}", json=args)

    open_kfid = admin("add_account", name="Sales").json()["result"]
    assert open_kfid.startswith("wk") and len(open_kfid) == 32
    assert admin("add_servicer", open_kfid=open_kfid, userid="dan").json()["ok"]
    euid, code = admin("customer_enter", open_kfid=open_kfid, scene="qr").json()["result"]
    assert euid.startswith("wm") and len(euid) == 32 and code
    assert admin("customer_says", open_kfid=open_kfid, external_userid=euid, text="hi").json()["ok"]
    assert admin("set_callback_url", url=receiver.url).json()["ok"]
    assert admin("fire_callback", open_kfid=open_kfid, repeat=2).json()["result"] == [200, 200]
    assert admin("inject_fault", path="kf/sync_msg", errcode=-1).json()["ok"]
    assert api.sync(open_kfid)["errcode"] == -1
    assert admin("advance", seconds=30).json()["ok"]
    assert admin("configure", page_cap=1).json()["result"]["page_cap"] == 1

    assert admin("customer_says", open_kfid=open_kfid).status_code == 400  # missing arguments
    assert admin("customer_says", open_kfid="wkx", external_userid=euid, text="x").status_code == 400
    assert admin("eval", code="1").status_code == 404
    assert admin("_sync").status_code == 404

    state = http.get("/sim/state").json()
    assert state["calls"] == len(sim.calls) and state["gettoken_count"] == 1
    assert [s["external_userid"] for s in state["sessions"]] == [euid]
    assert state["sent_messages"] == []
    assert sim.session(open_kfid, euid)["last_customer_msg"] is not None


def test_sim_admin_client(sim: WeComSimulator, kf: str, capsys: pytest.CaptureFixture[str]) -> None:
    with SimAdmin(sim.base_url) as admin:
        euid, code = admin.call("customer_enter", open_kfid=kf, welcome=False)
        assert code is None
        admin.call("customer_says", open_kfid=kf, external_userid=euid, text="hello")
        assert admin.state()["sessions"][0]["last_customer_msg"] is not None
        with pytest.raises(SimAdminError):
            admin.call("pickup", open_kfid=kf, external_userid=euid, servicer_userid="alice")  # not in the pool
    assert main([sim.base_url, "advance", "seconds=5"]) == 0
    assert float(capsys.readouterr().out) == sim.now()
    assert main([sim.base_url, "nonsense"]) == 1


# ---------------------------------------------------------------- drift: what the client cannot see


def test_silent_end_leaves_no_event_and_the_next_message_opens_a_new_session(
    sim: WeComSimulator, api: Api, kf: str, receiver: _Receiver
) -> None:
    sim.set_callback_url(receiver.url)
    euid, _ = sim.customer_enter(kf, welcome=False)
    sim.customer_says(kf, euid, "need a human")
    to_pool = api.trans(kf, euid, 2)
    assert to_pool["errcode"] == 0 and to_pool["msg_code"]
    _, cursor, _ = drain(api, kf)
    posted, logged = len(receiver.requests), len(sim.messages(kf))

    ended = sim.end_session_silently(kf, euid)
    assert ended["service_state"] == 4 and ended["servicer_userid"] == ""
    assert api.post("kf/service_state/get", {"open_kfid": kf, "external_userid": euid}) == {
        "errcode": 0, "errmsg": "ok", "service_state": 4, "servicer_userid": ""}
    assert drain(api, kf, cursor)[0] == []  # no session_status_change
    assert len(sim.messages(kf)) == logged and len(receiver.requests) == posted and sim.lost_callbacks() == 0
    notice = {"code": to_pool["msg_code"], "msgtype": "text", "text": {"content": "queued"}}
    assert api.post("kf/send_msg_on_event", notice)["errcode"] == 95018  # the session left the pool
    assert api.send_text(kf, euid)["errcode"] == 95018
    assert api.trans(kf, euid, 3, "alice")["errcode"] == 95016
    with pytest.raises(ValueError, match="already ended"):
        sim.end_session_silently(kf, euid)
    with pytest.raises(ValueError):
        sim.end_session_silently(kf, "wm-never-seen")
    with pytest.raises(ValueError):
        sim.end_session_silently("wk-no-such-account", euid)

    generation = sim.session(kf, euid)["generation"]
    msgid = sim.customer_says(kf, euid, "anyone there?")
    assert api.state(kf, euid) == 0
    assert sim.session(kf, euid)["generation"] == generation + 1
    items, _, _ = drain(api, kf, cursor)
    assert [item["msgid"] for item in items] == [msgid] and items[0]["origin"] == 3
    assert len(receiver.requests) == posted + 1  # the customer's message is announced as usual
    assert api.send_text(kf, euid, "back again")["errcode"] == 0 and api.state(kf, euid) == 1


def test_silent_move_answers_state_3_with_the_servicer_and_no_event(
    sim: WeComSimulator, api: Api, kf: str, receiver: _Receiver
) -> None:
    sim.set_callback_url(receiver.url)
    euid, _ = sim.customer_enter(kf, welcome=False)
    sim.customer_says(kf, euid, "hello")
    to_pool = api.trans(kf, euid, 2)
    _, cursor, _ = drain(api, kf)
    posted = len(receiver.requests)

    moved = sim.move_session_silently(kf, euid, "alice")
    assert moved["service_state"] == 3 and moved["servicer_userid"] == "alice"
    assert api.post("kf/service_state/get", {"open_kfid": kf, "external_userid": euid}) == {
        "errcode": 0, "errmsg": "ok", "service_state": 3, "servicer_userid": "alice"}
    assert drain(api, kf, cursor)[0] == [] and len(receiver.requests) == posted
    notice = {"code": to_pool["msg_code"], "msgtype": "text", "text": {"content": "queued"}}
    assert api.post("kf/send_msg_on_event", notice)["errcode"] == 95018
    assert api.send_text(kf, euid)["errcode"] == 95018
    assert api.trans(kf, euid, 3, "alice")["errcode"] == 95016  # already with alice

    with pytest.raises(ValueError, match="not a servicer"):
        sim.move_session_silently(kf, euid, "nobody")
    with pytest.raises(ValueError, match="already with alice"):
        sim.move_session_silently(kf, euid, "alice")
    sim.move_session_silently(kf, euid, "carol")  # an admin may move it to a stopped servicer
    assert api.post("kf/service_state/get", {"open_kfid": kf, "external_userid": euid})["servicer_userid"] == "carol"
    to_bob = api.trans(kf, euid, 3, "bob")
    assert to_bob["errcode"] == 0 and "msg_code" not in to_bob  # the silent move was the entry into state 3
    assert drain(api, kf, cursor)[0] == [] and len(receiver.requests) == posted

    bot_euid, _ = sim.customer_enter(kf, welcome=False)
    sim.customer_says(kf, bot_euid, "hi bot")
    assert api.send_text(kf, bot_euid, "bot here")["errcode"] == 0 and api.state(kf, bot_euid) == 1
    sim.move_session_silently(kf, bot_euid, "bob")  # picked from the bot in the WeCom client
    assert api.state(kf, bot_euid) == 3
    sim.end_session_silently(kf, bot_euid)
    with pytest.raises(ValueError, match="cannot be moved"):
        sim.move_session_silently(kf, bot_euid, "alice")
    events = [item for item in sim.messages(kf) if item["msgtype"] == "event"]
    assert [e["event"]["event_type"] for e in events] == ["enter_session", "enter_session"]


def test_lost_callbacks_are_not_posted_but_the_items_stay_pullable(
    sim: WeComSimulator, api: Api, kf: str, receiver: _Receiver
) -> None:
    other = sim.add_account(name="Sales")
    sim.set_callback_url(receiver.url)
    euid, _ = sim.customer_enter(kf, welcome=False)
    other_euid, _ = sim.customer_enter(other, welcome=False)
    assert len(receiver.requests) == 2
    _, cursor, _ = drain(api, kf)

    assert sim.lose_callbacks(2, kf) == 2
    assert sim.lose_callbacks(1, kf) == 3  # counts add up
    assert sim.pending_callback_losses(kf) == 3 and sim.pending_callback_losses() == 0
    lost = [sim.customer_says(kf, euid, f"lost {n}") for n in range(3)]
    sim.customer_says(other, other_euid, "heard")  # another account's callbacks still arrive
    assert len(receiver.requests) == 3
    assert _open(*receiver.requests[-1])[1].findtext("OpenKfId") == other
    assert sim.lost_callbacks() == 3 and sim.lost_callbacks(kf) == 3 and sim.lost_callbacks(other) == 0
    assert sim.state()["lost_callbacks"] == 3 and sim.pending_callback_losses(kf) == 0
    heard = sim.customer_says(kf, euid, "heard")
    assert len(receiver.requests) == 4
    items, cursor, _ = drain(api, kf, cursor)  # WeCom keeps what the lost callbacks announced
    assert [item["msgid"] for item in items] == [*lost, heard]

    sim.lose_callbacks(1)  # any account: the next callback, whoever it is for
    sim.customer_says(other, other_euid, "lost")
    sim.customer_says(kf, euid, "heard")
    assert len(receiver.requests) == 5 and sim.lost_callbacks(other) == 1 and sim.lost_callbacks() == 4

    sim.lose_callbacks(1, kf)
    assert sim.fire_callback(kf) == [200]  # a callback a test fires on purpose is never lost
    sim.auto_callback = False
    sim.customer_says(kf, euid, "unannounced")  # no callback would go out: nothing is spent
    sim.auto_callback = True
    assert sim.pending_callback_losses(kf) == 1
    sim.clear_faults()
    assert sim.pending_callback_losses(kf) == 0
    sim.customer_says(kf, euid, "heard again")
    assert len(receiver.requests) == 7 and sim.lost_callbacks() == 4

    for bad in (0, -1, True, 1.5):
        with pytest.raises(ValueError):
            sim.lose_callbacks(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        sim.lose_callbacks(1, "wk-no-such-account")


def test_random_callback_loss_is_seeded_and_repeatable(
    sim: WeComSimulator, api: Api, kf: str, receiver: _Receiver
) -> None:
    sim.set_callback_url(receiver.url)
    euid, _ = sim.customer_enter(kf, welcome=False)

    def run(count: int) -> list[bool]:
        delivered = []
        for n in range(count):
            before = len(receiver.requests)
            sim.customer_says(kf, euid, f"m{n}")
            delivered.append(len(receiver.requests) == before + 1)
        return delivered

    settings = sim.configure(callback_loss=0.5, seed=20261125)
    assert settings["callback_loss"] == 0.5 and settings["seed"] == 20261125
    first = run(40)
    assert 5 <= first.count(False) <= 35
    assert sim.lost_callbacks(kf) == first.count(False) == sim.state()["lost_callbacks"]
    sim.configure(seed=20261125)
    assert run(40) == first  # the same seed loses the same callbacks
    assert len(drain(api, kf)[0]) == 1 + 80  # every item stays pullable

    sim.configure(callback_loss=1)
    assert run(5) == [False] * 5
    sim.configure(callback_loss=0)
    assert run(5) == [True] * 5
    assert sim.lost_callbacks() == 2 * first.count(False) + 5
    for bad in (-0.1, 1.5, True, "0.5"):
        with pytest.raises(ValueError):
            sim.configure(callback_loss=bad)
    with pytest.raises(ValueError):
        sim.configure(seed="x")

    patterns = []
    for twin in (WeComSimulator(clock=FakeClock(), seed=7), WeComSimulator(clock=FakeClock(), seed=7)):
        twin_kf = twin.add_account()
        twin_euid, _ = twin.customer_enter(twin_kf, welcome=False)
        twin.set_callback_url(receiver.url)
        twin.configure(callback_loss=0.5)
        pattern = []
        for n in range(20):
            twin.customer_says(twin_kf, twin_euid, f"m{n}")
            pattern.append(twin.lost_callbacks())
        patterns.append(pattern)
    assert patterns[0] == patterns[1] and 0 < patterns[0][-1] < 20  # the constructor's seed too


def test_drift_knobs_over_admin_endpoints(
    sim: WeComSimulator, http: httpx.Client, api: Api, kf: str, receiver: _Receiver
) -> None:
    def admin(action: str, **args: Any) -> httpx.Response:
        return http.post(f"/sim/{action}", json=args)

    euid, _ = sim.customer_enter(kf, welcome=False)
    sim.customer_says(kf, euid, "hi")
    moved = admin("move_session_silently", open_kfid=kf, external_userid=euid, servicer_userid="bob").json()
    assert moved["ok"] and moved["result"]["service_state"] == 3 and moved["result"]["servicer_userid"] == "bob"
    assert admin("move_session_silently", open_kfid=kf, external_userid=euid, servicer_userid="x").status_code == 400
    ended = admin("end_session_silently", open_kfid=kf, external_userid=euid).json()
    assert ended["ok"] and ended["result"]["service_state"] == 4 and api.state(kf, euid) == 4

    assert admin("set_callback_url", url=receiver.url).json()["ok"]
    assert admin("lose_callbacks", count=1, open_kfid=kf).json()["result"] == 1
    assert admin("lose_callbacks", count=0).status_code == 400
    sim.customer_says(kf, euid, "lost")
    assert receiver.requests == []
    assert admin("lost_callbacks").json()["result"] == 1
    assert admin("configure", callback_loss=0.25, seed=3).json()["result"]["callback_loss"] == 0.25
    assert admin("configure", callback_loss=2).status_code == 400
    assert http.get("/sim/state").json()["lost_callbacks"] == 1
