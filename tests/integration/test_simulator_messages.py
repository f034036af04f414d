"""The simulator's media/upload, the checks of what is sent, and 升级服务, over real HTTP (with
Kefu's own WeCom client where it has the call)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from kefu.wecom import kf as kfapi
from kefu.wecom.client import WeComClient
from kefu.wecom.errors import WeComError
from local.wecom_sim import WeComSimulator
from tests.integration.test_simulator import DAY, HOUR, Api

pytestmark = pytest.mark.integration

MB = 1024 * 1024
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) + b"\xff\xd9"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(64))
MP4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + bytes(64)


def amr(seconds: float) -> bytes:
    """An AMR-NB file of 12.2 kbit/s frames (one header byte, 31 bytes of speech, 20 ms each)."""
    return b"#!AMR\n" + (b"\x3c" + bytes(31)) * round(seconds / 0.02)





@pytest.fixture()
def kf(sim: WeComSimulator) -> str:
    open_kfid = sim.add_account(name="Support")
    sim.add_servicer(open_kfid, "alice")
    return open_kfid



@pytest.fixture()
def euid(sim: WeComSimulator, kf: str) -> str:
    customer, _ = sim.customer_enter(kf, welcome=False)
    sim.customer_says(kf, customer, "hi")
    return customer


def upload(api: Api, kind: str | None, files: Any = None, **request: Any) -> dict[str, Any]:
    params = {"access_token": api.token, **({"type": kind} if kind is not None else {})}
    answer = api.http.post("/cgi-bin/media/upload", params=params, files=files, **request)
    assert answer.headers["content-type"].startswith("application/json")
    return answer.json()


def send(api: Api, kf: str, euid: str, msgtype: str, payload: Any) -> dict[str, Any]:
    return api.post("kf/send_msg", {"touser": euid, "open_kfid": kf, "msgtype": msgtype, msgtype: payload})


def refused(answer: dict[str, Any], errcode: int, *words: str) -> bool:
    return answer["errcode"] == errcode and all(word in answer["errmsg"] for word in words)


# ---------------------------------------------------------------- media/upload


def test_media_upload_with_kefus_client_is_served_by_media_get_and_sendable(
    sim: WeComSimulator, api: Api, client: WeComClient, kf: str, euid: str
) -> None:
    for kind, name, data, content_type in [("image", "a.jpg", JPEG, "image/jpeg"), ("image", "b.png", PNG, "image/png"),
                                           ("voice", "v.amr", amr(60), "audio/amr"),
                                           ("video", "v.mp4", MP4, "video/mp4"),
                                           ("file", "报告 2024.pdf", b"%PDF-1.4 x", "application/pdf")]:
        media_id, created = kfapi.media_upload(client, kind, name, data, content_type)
        assert created == int(sim.now())
        got = api.get("media/get", media_id=media_id)
        assert got.status_code == 200 and got.content == data and got.headers["content-type"] == content_type
        assert send(api, kf, euid, kind, {"media_id": media_id})["errcode"] == 0
    raw = upload(api, "image", {"media": ("c.jpg", JPEG, "image/jpeg")})
    assert raw["errcode"] == 0 and raw["errmsg"] == "ok" and raw["type"] == "image"
    assert raw["created_at"] == str(int(sim.now()))  # a string, as WeCom sends it
    assert sim.calls_to("media/upload")[-1]["body"] == {"media": {"filename": "c.jpg", "content_type": "image/jpeg",
                                                                  "size": len(JPEG)}}

    sim.advance(3 * DAY + 1)
    sim.customer_says(kf, euid, "still there?")
    assert api.get("media/get", media_id=raw["media_id"]).json()["errcode"] == 40007
    assert refused(send(api, kf, euid, "image", {"media_id": raw["media_id"]}), 40007, "expired")


def test_media_upload_limits(api: Api, client: WeComClient) -> None:
    assert upload(api, None, {"media": ("a.jpg", JPEG)})["errcode"] == 40004
    assert upload(api, "gif", {"media": ("a.jpg", JPEG)})["errcode"] == 40004
    assert upload(api, "file", {"media": ("tiny.txt", b"12345")})["errcode"] == 40006  # more than 5 bytes
    assert upload(api, "file", {"media": ("empty.txt", b"")})["errcode"] == 40006
    assert upload(api, "file", {"media": ("six.txt", b"123456")})["errcode"] == 0
    assert upload(api, "image", {"media": ("big.jpg", JPEG + bytes(10 * MB - len(JPEG)))})["errcode"] == 0
    assert upload(api, "image", {"media": ("big.jpg", JPEG + bytes(10 * MB + 1 - len(JPEG)))})["errcode"] == 45001
    assert upload(api, "video", {"media": ("big.mp4", MP4 + bytes(10 * MB + 1 - len(MP4)))})["errcode"] == 45001
    assert upload(api, "voice", {"media": ("big.amr", amr(0) + bytes(2 * MB + 1 - 6))})["errcode"] == 45001
    assert upload(api, "file", {"media": ("big.bin", bytes(20 * MB))})["errcode"] == 0
    assert upload(api, "file", {"media": ("big.bin", bytes(20 * MB + 1))})["errcode"] == 45001
    assert upload(api, "voice", {"media": ("long.amr", amr(60.02))})["errcode"] == 45001  # over 60 s
    assert upload(api, "image", {"media": ("a.gif", b"GIF89a" + bytes(20))})["errcode"] == 40005
    assert upload(api, "image", {"media": ("a.jpg", MP4)})["errcode"] == 40005  # the name does not make it a JPG
    assert upload(api, "voice", {"media": ("a.amr", b"#!AMR-WB\n" + bytes(40))})["errcode"] == 40005
    assert upload(api, "video", {"media": ("a.mp4", JPEG)})["errcode"] == 40005
    with pytest.raises(WeComError) as info:
        kfapi.media_upload(client, "image", "a.png", b"not a png at all", "image/png")
    assert info.value.errcode == 40005


def test_media_upload_request_shape(api: Api) -> None:
    assert refused(upload(api, "file", {"file": ("a.txt", b"123456")}), 40058, "media")  # wrong field name
    boundary = "XyZ"
    no_name = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"media\"\r\n\r\n123456\r\n"
               f"--{boundary}--\r\n").encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    assert refused(upload(api, "file", content=no_name, headers=headers), 40058, "filename")
    assert upload(api, "file", content=no_name[:-10], headers=headers)["errcode"] == 47001  # no closing boundary
    assert upload(api, "file", json={"media": "123456"})["errcode"] == 47001  # not multipart
    assert api.http.post("/cgi-bin/media/upload", params={"type": "file"},
                         files={"media": ("a.txt", b"123456")}).json()["errcode"] == 41001
    assert api.get("media/upload", type="file").json()["errcode"] == 43002


# ---------------------------------------------------------------- send_msg payloads


def test_text_is_limited_in_utf8_bytes(api: Api, kf: str, euid: str) -> None:
    assert send(api, kf, euid, "text", {"content": "é" * 1024})["errcode"] == 0  # 2048 bytes
    assert refused(send(api, kf, euid, "text", {"content": "é" * 1024 + "x"}), 45002, "text.content")
    assert refused(send(api, kf, euid, "text", {"content": ""}), 40058, "text.content")
    assert refused(send(api, kf, euid, "text", {"content": 5}), 40058, "text.content")
    assert refused(send(api, kf, euid, "text", "hi"), 40058, "text")


def test_media_sends_need_a_stored_unexpired_media_of_their_type(sim: WeComSimulator, api: Api, kf: str,
                                                                  euid: str) -> None:
    voice = upload(api, "voice", {"media": ("v.amr", amr(1))})["media_id"]
    added = sim.add_media(JPEG)
    customers = sim.item(sim.customer_sends_media(kf, euid, "image"))
    assert customers is not None
    assert refused(send(api, kf, euid, "image", {"media_id": "3nope"}), 40007, "image.media_id")
    assert refused(send(api, kf, euid, "image", {"media_id": voice}), 40007, "type voice, not image")
    assert refused(send(api, kf, euid, "image", {"media_id": customers["image"]["media_id"]}), 40007)
    assert refused(send(api, kf, euid, "file", {}), 40058, "file.media_id")
    assert send(api, kf, euid, "voice", {"media_id": voice})["errcode"] == 0
    assert send(api, kf, euid, "image", {"media_id": added})["errcode"] == 0
    assert send(api, kf, euid, "file", {"media_id": sim.add_media(b"data!!", "text/csv", "a.csv")})["errcode"] == 0
    assert [s["msgtype"] for s in sim.sent_messages(kf, euid)] == ["voice", "image", "file"]


def test_link_checks(sim: WeComSimulator, api: Api, kf: str, euid: str) -> None:
    thumb = sim.add_media(JPEG)
    good: dict[str, Any] = {"title": "标" * 42 + "xx", "desc": "d" * 512, "url": "https://example.com/" + "p" * 2028,
            "thumb_media_id": thumb}
    assert send(api, kf, euid, "link", good)["errcode"] == 0
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"title": None}, 40058, "link.title"),
        ({"title": "标" * 43}, 45002, "link.title"),  # 129 bytes: refused, not truncated
        ({"desc": "d" * 513}, 45002, "link.desc"),
        ({"url": None}, 40058, "link.url"),
        ({"url": "ftp://example.com/a"}, 40058, "link.url"),
        ({"url": "example.com/a"}, 40058, "link.url"),
        ({"url": good["url"] + "p"}, 45002, "link.url"),
        ({"thumb_media_id": None}, 40058, "link.thumb_media_id"),
        ({"thumb_media_id": "3unknown"}, 40007, "link.thumb_media_id"),
        ({"thumb_media_id": sim.add_media(b"PK....", "application/zip", "a.zip")}, 40007, "link.thumb_media_id"),
    ]
    for change, errcode, field in cases:
        payload = {k: v for k, v in {**good, **change}.items() if v is not None}
        assert refused(send(api, kf, euid, "link", payload), errcode, field), change
    sim.advance(3 * DAY + 1)
    sim.customer_says(kf, euid, "again")
    assert refused(send(api, kf, euid, "link", good), 40007, "expired")


def test_miniprogram_checks(sim: WeComSimulator, api: Api, kf: str, euid: str) -> None:
    good = {"appid": "wx0123456789abcdef", "title": "t" * 64, "pagepath": "pages/index?x=1",
            "thumb_media_id": sim.add_media(PNG, "image/png", "t.png")}
    assert refused(send(api, kf, euid, "miniprogram", good), 90207, "wx0123456789abcdef")  # not linked
    sim.link_miniprogram("wx0123456789abcdef")
    assert send(api, kf, euid, "miniprogram", good)["errcode"] == 0
    assert refused(send(api, kf, euid, "miniprogram", {**good, "title": "t" * 65}), 45002, "miniprogram.title")
    assert refused(send(api, kf, euid, "miniprogram", {**good, "pagepath": ""}), 40058, "miniprogram.pagepath")
    assert refused(send(api, kf, euid, "miniprogram", {**good, "appid": 7}), 40058, "miniprogram.appid")
    voice = sim.add_media(amr(1), "audio/amr", "v.amr")
    assert refused(send(api, kf, euid, "miniprogram", {**good, "thumb_media_id": voice}), 40007, "thumb_media_id")


def menu(*items: Any, **extra: Any) -> dict[str, Any]:
    return {"head_content": "pick one", "list": list(items), **extra}


def test_menu_checks_name_the_item(sim: WeComSimulator, api: Api, kf: str, euid: str) -> None:
    sim.link_miniprogram("wxapp")
    click: dict[str, Any] = {"type": "click", "click": {"id": "c1", "content": "Yes"}}
    view: dict[str, Any] = {"type": "view", "view": {"url": "https://example.com", "content": "v" * 1024}}
    mini: dict[str, Any] = {"type": "miniprogram", "miniprogram": {"appid": "wxapp", "pagepath": "pages/a", "content": "Open"}}
    text: dict[str, Any] = {"type": "text", "text": {"content": "字" * 85, "no_newline": 1}}
    assert send(api, kf, euid, "msgmenu", menu(click, view, mini, text, tail_content="t" * 1024))["errcode"] == 0

    def item(kind: str, **fields: Any) -> dict[str, Any]:
        base = {"click": click, "view": view, "miniprogram": mini, "text": text}[kind][kind]
        return {"type": kind, kind: {k: v for k, v in {**base, **fields}.items() if v is not None}}

    cases = [
        (menu(click, {"type": "button", "button": {}}), 95009, "list[1]"),
        (menu(click, "junk"), 95009, "list[1]"),
        (menu(click, {"type": "click"}), 40058, "list[1].click"),
        (menu(click, view, item("click", content="No")), 40058, "list[2].click.id"),  # id c1 again
        (menu(item("click", id="i" * 65)), 45002, "list[0].click.id"),
        (menu(item("click", content="")), 40058, "list[0].click.content"),
        (menu(item("click", content="c" * 129)), 45002, "list[0].click.content"),
        (menu(click, item("view", url="javascript:alert(1)")), 40058, "list[1].view.url"),
        (menu(click, item("view", url="https://e.com/" + "u" * 2035)), 45002, "list[1].view.url"),
        (menu(item("view", content="v" * 1025)), 45002, "list[0].view.content"),
        (menu(item("view", content=None)), 40058, "list[0].view.content"),
        (menu(item("miniprogram", appid="wxother")), 90207, "list[0].miniprogram.appid"),
        (menu(item("miniprogram", pagepath=None)), 40058, "list[0].miniprogram.pagepath"),
        (menu(item("text", content="字" * 86)), 45002, "list[0].text.content"),  # 258 bytes
        (menu(item("text", no_newline=2)), 40058, "list[0].text.no_newline"),
        (menu(item("text", no_newline=True)), 40058, "list[0].text.no_newline"),
        (menu(click, head_content="h" * 1025), 45002, "msgmenu.head_content"),
        (menu(click, tail_content=["t"]), 40058, "msgmenu.tail_content"),
        (menu(), 40058, "msgmenu.list"),
        ({"head_content": "no list"}, 40058, "msgmenu.list"),
        (menu(*[item("click", id=str(i)) for i in range(11)]), 95008, "11"),
    ]
    for payload, errcode, where in cases:
        assert refused(send(api, kf, euid, "msgmenu", payload), errcode, where), (payload, where)
    assert len(sim.sent_messages(kf, euid)) == 1


def test_send_msg_on_event_checks_the_same_and_keeps_its_types(sim: WeComSimulator, api: Api, kf: str) -> None:
    euid, code = sim.customer_enter(kf)
    bad = {"code": code, "msgtype": "msgmenu", "msgmenu": menu({"type": "text", "text": {"content": "x" * 257}})}
    assert refused(api.post("kf/send_msg_on_event", bad), 45002, "list[0].text.content")
    card = {"code": code, "msgtype": "business_card", "business_card": {"userid": "alice"}}
    assert api.post("kf/send_msg_on_event", card)["errcode"] == 40008
    good = {"code": code, "msgtype": "msgmenu", "msgmenu": menu({"type": "click", "click": {"id": "a", "content": "A"}})}
    assert api.post("kf/send_msg_on_event", good)["errcode"] == 0  # the refused calls left the code unused

    sim.customer_says(kf, euid, "a human please")
    pool_code = api.trans(kf, euid, 2)["msg_code"]
    assert api.post("kf/send_msg_on_event", {**good, "code": pool_code})["errcode"] == 40008  # pool codes: text only
    assert api.post("kf/send_msg_on_event", {"code": pool_code, "msgtype": "text",
                                              "text": {"content": "é" * 1025}})["errcode"] == 45002


def test_business_card(sim: WeComSimulator, api: Api, http: httpx.Client, kf: str, euid: str) -> None:
    assert refused(send(api, kf, euid, "business_card", {"userid": "zhangsan"}), 60111, "zhangsan")
    assert refused(send(api, kf, euid, "business_card", {}), 40058, "business_card.userid")
    assert send(api, kf, euid, "business_card", {"userid": "alice"})["errcode"] == 0  # a servicer is a member
    other = sim.add_account(name="Sales")
    sim.customer_says(other, euid, "hello sales")
    assert http.post("/sim/add_member", json={"userid": "zhangsan"}).json()["ok"]
    assert send(api, other, euid, "business_card", {"userid": "zhangsan"})["errcode"] == 95025  # one per customer
    assert send(api, kf, euid, "text", {"content": "but text goes"})["errcode"] == 0
    assert [s["msgtype"] for s in sim.sent_messages(other)] == []
    sim.advance(48 * HOUR)
    sim.customer_says(other, euid, "me again")
    assert send(api, other, euid, "business_card", {"userid": "zhangsan"})["errcode"] == 0
    assert sim.sent_messages(other)[0]["payload"] == {"userid": "zhangsan"}


# ---------------------------------------------------------------- 升级服务


def test_upgrade_service_with_kefus_client(sim: WeComSimulator, http: httpx.Client, client: WeComClient,
                                           kf: str) -> None:
    assert kfapi.upgrade_config(client) == kfapi.UpgradeConfig()
    configured = http.post("/sim/set_upgrade_config",
                           json={"userids": ["lily"], "department_ids": [7], "chat_ids": ["wrchat1"]}).json()
    assert configured["result"] == {"member_range": {"userid_list": ["lily"], "department_id_list": [7]},
                                    "groupchat_range": {"chat_id_list": ["wrchat1"]}}
    assert kfapi.upgrade_config(client) == kfapi.UpgradeConfig(("lily",), (7,), ("wrchat1",))

    euid, _ = sim.customer_enter(kf, welcome=False)  # entering is enough: no message needed
    kfapi.upgrade_service(client, kf, euid, kfapi.UPGRADE_MEMBER, "lily", "Add your advisor")
    kfapi.upgrade_service(client, kf, euid, kfapi.UPGRADE_GROUP, "wrchat1")
    sim.add_member("sam", department_ids=[7])
    kfapi.upgrade_service(client, kf, euid, kfapi.UPGRADE_MEMBER, "sam")
    offers = http.post("/sim/upgrade_offers", json={"open_kfid": kf}).json()["result"]
    assert [(o["type"], o["target"], o["wording"], o["cancelled"]) for o in offers] == [
        (1, "lily", "Add your advisor", False), (2, "wrchat1", "", False), (1, "sam", "", False)]
    assert offers[0]["external_userid"] == euid and offers[0]["time"] == sim.now()

    def code_of(*args: Any) -> int | None:
        with pytest.raises(WeComError) as info:
            kfapi.upgrade_service(client, *args)
        return info.value.errcode

    sim.add_member("tom", department_ids=[8])
    assert code_of(kf, euid, 1, "tom") == 40058  # outside the range
    assert code_of(kf, euid, 2, "wrchat2") == 40058
    assert code_of("wknope", euid, 1, "lily") == 95000
    assert code_of(kf, "wmnobody", 1, "lily") == 40096
    assert code_of(kf, euid, 3, "lily") == 40058

    kfapi.cancel_upgrade_service(client, kf, euid)
    assert all(o["cancelled"] for o in sim.upgrade_offers(kf, euid))
    with pytest.raises(WeComError) as info:
        kfapi.cancel_upgrade_service(client, kf, euid)  # nothing outstanding
    assert info.value.errcode == 40058

    sim.advance(48 * HOUR + 1)
    assert code_of(kf, euid, 1, "lily") == 95002  # no entry or message within 48 h
    sim.customer_says(kf, euid, "back")
    kfapi.upgrade_service(client, kf, euid, 1, "lily")
    assert len(sim.upgrade_offers(kf, euid)) == 4


def test_upgrade_service_request_shape(sim: WeComSimulator, api: Api, kf: str) -> None:
    sim.set_upgrade_config(userids=["lily"], chat_ids=["wrchat1"])
    euid, _ = sim.customer_enter(kf, welcome=False)
    base = {"open_kfid": kf, "external_userid": euid}
    assert refused(api.post("kf/customer/upgrade_service", {**base, "type": 1}), 40058, "member")
    assert refused(api.post("kf/customer/upgrade_service", {**base, "type": 1, "member": {}}), 40058, "member.userid")
    assert refused(api.post("kf/customer/upgrade_service", {**base, "type": 2, "member": {"userid": "lily"}}),
                   40058, "groupchat")
    assert refused(api.post("kf/customer/upgrade_service", {**base, "type": True, "member": {"userid": "lily"}}),
                   40058, "type")
    assert refused(api.post("kf/customer/upgrade_service", {**base, "type": 1, "member": {"userid": "lily",
                                                                                          "wording": 5}}),
                   40058, "member.wording")
    assert refused(api.post("kf/customer/upgrade_service", {**base, "type": 1, "member": {"userid": "bob"}}),
                   40058, "outside the configured upgrade range")
    assert api.post("kf/customer/cancel_upgrade_service", {"open_kfid": kf})["errcode"] == 40058
    assert api.post("kf/customer/cancel_upgrade_service", {**base, "open_kfid": "wkx"})["errcode"] == 95000
    assert api.http.post("/cgi-bin/kf/customer/get_upgrade_service_config",
                         params={"access_token": api.token}, json={}).json()["errcode"] == 43001
    assert sim.upgrade_offers() == []
