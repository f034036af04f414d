import copy
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kefu.wecom.models import (
    EVENT_MODELS,
    PAYLOAD_MODELS,
    BusinessCardPayload,
    ChannelsPayload,
    ChannelsShopOrderPayload,
    ChannelsShopProductPayload,
    EnterSessionEvent,
    EventType,
    KfEvent,
    LinkPayload,
    LocationPayload,
    MediaPayload,
    MergedMsgItem,
    MergedMsgPayload,
    MiniprogramPayload,
    MsgMenuPayload,
    MsgSendFailEvent,
    Origin,
    RejectCustomerMsgSwitchChangeEvent,
    ServicerRecallMsgEvent,
    ServicerStatus,
    ServicerStatusChangeEvent,
    SessionChangeType,
    SessionStatusChangeEvent,
    SyncItem,
    TextPayload,
    UserRecallMsgEvent,
    WechatChannels,
    parse_item,
    parse_items,
)
from kefu.wecom.models import _parse_item  # the parser without the last-resort guard

KFID = "wkAJ2GCAAASSm4_FhToWMFea0xAFfd3Q"
USERID = "wmAJ2GCAAAme1XQRC-NI-q0_ZM9ukoAw"


def message(msgtype, body, **common):
    item = {
        "msgid": "from_msgid_4622416642169452483",
        "open_kfid": KFID,
        "external_userid": USERID,
        "send_time": 1615478585,
        "origin": 3,
        "msgtype": msgtype,
        msgtype: body,
    }
    item.update(common)
    return item


def event_item(body, **common):
    # event items carry no top-level open_kfid / external_userid
    item = {"msgid": "evt-1", "send_time": 1615478585, "origin": 4, "msgtype": "event", "event": body}
    item.update(common)
    return item


# --------------------------------------------------------------------------- common fields


def test_official_sample_item():
    raw = {
        "msgid": "from_msgid_4622416642169452483",
        "open_kfid": KFID,
        "external_userid": USERID,
        "send_time": 1615478585,
        "origin": 3,
        "servicer_userid": "Zhangsan",
        "msgtype": "text",
        "text": {"content": "hello world"},
    }
    snapshot = copy.deepcopy(raw)
    item = parse_item(raw)
    assert isinstance(item, SyncItem)
    assert item.msgid == "from_msgid_4622416642169452483"
    assert item.open_kfid == KFID
    assert item.external_userid == USERID
    assert item.send_time == 1615478585
    assert item.origin == Origin.CUSTOMER == 3
    assert item.servicer_userid == "Zhangsan"
    assert item.msgtype == "text"
    assert isinstance(item.payload, TextPayload)
    assert item.text == "hello world"
    assert item.menu_id is None
    assert item.media_id is None
    assert item.event is None and item.event_type is None
    assert not item.is_event
    assert item.is_customer_message
    assert not item.malformed
    assert item.raw == snapshot
    assert raw == snapshot  # the input is not mutated


def test_numbers_as_strings_are_accepted():
    item = parse_item(message("text", {"content": "x"}, send_time=" 1615478585 ", origin="5"))
    assert item.send_time == 1615478585
    assert item.origin == Origin.SERVICER
    assert not item.is_customer_message
    assert not item.malformed


def test_integral_float_strings_and_numeric_ids():
    item = parse_item(message("text", {"content": 42}, send_time="1615478585.0", msgid=123456))
    assert item.send_time == 1615478585
    assert item.msgid == "123456"
    assert item.text == "42"
    assert not item.malformed


def test_bad_common_field_is_dropped_and_flagged():
    item = parse_item(message("text", {"content": "still here"}, send_time="yesterday", origin=[3]))
    assert item.malformed
    assert item.send_time is None
    assert item.origin is None
    assert item.msgid == "from_msgid_4622416642169452483"
    assert item.text == "still here"


def test_missing_optional_fields():
    item = parse_item({"msgid": "m", "msgtype": "text", "text": {}})
    assert item.open_kfid is None and item.send_time is None and item.origin is None
    assert isinstance(item.payload, TextPayload)
    assert item.text is None
    assert not item.malformed
    assert not item.is_customer_message


def test_extra_fields_ignored_but_kept_in_raw():
    raw = message("text", {"content": "hi", "new_field": 1}, brand_new_top="x")
    item = parse_item(raw)
    assert not item.malformed
    assert not hasattr(item.payload, "new_field")
    assert item.raw["brand_new_top"] == "x"
    assert item.raw["text"]["new_field"] == 1
    assert item.raw is raw


def test_known_msgtype_without_payload_is_malformed():
    item = parse_item({"msgid": "m", "msgtype": "image"})
    assert item.malformed
    assert item.payload is None
    assert item.media_id is None


def test_missing_msgtype_is_malformed():
    item = parse_item({"msgid": "m"})
    assert item.malformed
    assert item.msgtype == ""


# --------------------------------------------------------------------------- msgtypes

MSG_CASES = [
    ("text", {"content": "hi", "menu_id": "101"}, TextPayload, {"content": "hi", "menu_id": "101"}),
    ("image", {"media_id": "MEDIA_IMG"}, MediaPayload, {"media_id": "MEDIA_IMG"}),
    ("voice", {"media_id": "MEDIA_VOICE"}, MediaPayload, {"media_id": "MEDIA_VOICE"}),
    ("video", {"media_id": "MEDIA_VIDEO"}, MediaPayload, {"media_id": "MEDIA_VIDEO"}),
    ("file", {"media_id": "MEDIA_FILE"}, MediaPayload, {"media_id": "MEDIA_FILE"}),
    (
        "location",
        {"latitude": 23.1, "longitude": 113.3, "name": "Canton Tower", "address": "Haizhu"},
        LocationPayload,
        {"latitude": 23.1, "longitude": 113.3, "name": "Canton Tower", "address": "Haizhu"},
    ),
    (
        "link",
        {"title": "T", "desc": "D", "url": "https://example.com", "pic_url": "https://example.com/p.png"},
        LinkPayload,
        {"title": "T", "desc": "D", "url": "https://example.com", "pic_url": "https://example.com/p.png"},
    ),
    ("business_card", {"userid": "zhangsan"}, BusinessCardPayload, {"userid": "zhangsan"}),
    (
        "miniprogram",
        {"title": "Mini", "appid": "wx123", "pagepath": "pages/index", "thumb_media_id": "THUMB"},
        MiniprogramPayload,
        {"title": "Mini", "appid": "wx123", "pagepath": "pages/index", "thumb_media_id": "THUMB"},
    ),
    (
        "msgmenu",
        {
            "head_content": "Pick one",
            "list": [
                {"type": "click", "click": {"id": "101", "content": "Yes"}},
                {"type": "view", "view": {"url": "https://example.com", "content": "More"}},
            ],
            "tail_content": "Thanks",
        },
        MsgMenuPayload,
        {"head_content": "Pick one", "tail_content": "Thanks"},
    ),
    (
        "channels_shop_product",
        {
            "product_id": "P1",
            "head_image": "https://img/p.png",
            "title": "Tea",
            "sales_price": "990",
            "shop_nickname": "Shop",
            "shop_head_image": "https://img/s.png",
        },
        ChannelsShopProductPayload,
        {
            "product_id": "P1",
            "head_image": "https://img/p.png",
            "title": "Tea",
            "sales_price": "990",
            "shop_nickname": "Shop",
            "shop_head_image": "https://img/s.png",
        },
    ),
    (
        "channels_shop_order",
        {
            "order_id": "O1",
            "product_titles": "Tea, Cups",
            "price_wording": "19.90",
            "state": "paid",
            "image_url": "https://img/o.png",
            "shop_nickname": "Shop",
        },
        ChannelsShopOrderPayload,
        {"order_id": "O1", "product_titles": "Tea, Cups", "state": "paid", "shop_nickname": "Shop"},
    ),
    (
        "merged_msg",
        {
            "title": "History",
            "item": [
                {
                    "send_time": 1615478585,
                    "msgtype": "text",
                    "sender_name": "Alice",
                    "msg_content": json.dumps({"msgtype": "text", "text": {"content": "hi"}}),
                }
            ],
        },
        MergedMsgPayload,
        {"title": "History"},
    ),
    (
        "channels",
        {"sub_type": 1, "nickname": "Creator", "title": "A post"},
        ChannelsPayload,
        {"sub_type": 1, "nickname": "Creator", "title": "A post"},
    ),
]


@pytest.mark.parametrize(("msgtype", "body", "model", "expected"), MSG_CASES, ids=[c[0] for c in MSG_CASES])
def test_each_msgtype(msgtype, body, model, expected):
    raw = message(msgtype, body)
    item = parse_item(raw)
    assert type(item.payload) is model
    for name, value in expected.items():
        assert getattr(item.payload, name) == value, name
    assert not item.malformed
    assert item.event is None
    assert item.is_customer_message
    assert item.raw[msgtype] == body


def test_every_documented_msgtype_is_covered():
    assert {c[0] for c in MSG_CASES} == set(PAYLOAD_MODELS)


@pytest.mark.parametrize("msgtype", ["image", "voice", "video", "file"])
def test_media_id_property(msgtype):
    assert parse_item(message(msgtype, {"media_id": "M-" + msgtype})).media_id == "M-" + msgtype


def test_text_menu_id_property():
    item = parse_item(message("text", {"content": "Yes", "menu_id": 101}))
    assert item.menu_id == "101"


def test_msgmenu_list_entries():
    item = parse_item(
        message("msgmenu", {"list": [{"type": "click", "click": {"id": "1", "content": "A"}}, "junk", 5]})
    )
    assert item.payload.list == [{"type": "click", "click": {"id": "1", "content": "A"}}]
    assert not item.malformed


def test_location_coordinates_as_strings():
    item = parse_item(message("location", {"latitude": " 23.12 ", "longitude": "113.32", "name": "X"}))
    assert item.payload.latitude == pytest.approx(23.12)
    assert item.payload.longitude == pytest.approx(113.32)
    assert not item.malformed
    blank = parse_item(message("location", {"latitude": "", "longitude": "north"}))
    assert blank.payload.latitude is None
    assert blank.payload.longitude is None
    assert blank.malformed  # "north" is not a number


def test_channels_sub_type_as_string():
    item = parse_item(message("channels", {"sub_type": "2", "nickname": "Live"}))
    assert item.payload.sub_type == 2
    assert item.payload.title is None


@pytest.mark.parametrize(
    ("image_key", "shop_key"),
    [("head_image", "shop_head_image"), ("head_img", "shop_head_img"), ("head_img", "shop_head_image")],
)
def test_channels_shop_product_image_key_spellings(image_key, shop_key):
    body = {"product_id": 10000, image_key: "https://img/p.png", shop_key: "https://img/s.png", "sales_price": 990}
    item = parse_item(message("channels_shop_product", body))
    assert item.payload.head_image == "https://img/p.png"
    assert item.payload.shop_head_image == "https://img/s.png"
    assert item.payload.product_id == "10000"
    assert item.payload.sales_price == "990"
    assert not item.malformed
    assert item.raw["channels_shop_product"][image_key] == "https://img/p.png"


# --------------------------------------------------------------------------- merged_msg


def merged(*entries):
    return parse_item(message("merged_msg", {"title": "History", "item": list(entries)})).payload


def test_merged_msg_content_stays_a_string_and_decodes():
    content = {"msgtype": "text", "text": {"content": "你好"}}
    payload = merged(
        {"send_time": "1615478585", "msgtype": "text", "sender_name": "Alice", "msg_content": json.dumps(content)}
    )
    entry = payload.item[0]
    assert isinstance(entry, MergedMsgItem)
    assert entry.send_time == 1615478585
    assert isinstance(entry.msg_content, str)
    assert entry.decode_content() == content
    inner = entry.as_item()
    assert isinstance(inner, SyncItem)
    assert inner.text == "你好"
    assert inner.send_time == 1615478585


def test_merged_msg_content_decoding_is_lenient():
    good = {"msgtype": "image", "image": {"media_id": "M"}}
    payload = merged(
        {"msg_content": "not json"},
        {"msg_content": ""},
        {"msg_content": "[1, 2]"},
        {"msg_content": json.dumps(json.dumps(good))},  # encoded twice
        {"msg_content": "\ufeff" + json.dumps(good)},
        {"msg_content": good},  # an object instead of a string
        {},
        "not an object",
    )
    decoded = [entry.decode_content() for entry in payload.item]
    assert decoded == [None, None, None, good, good, good, None]
    assert isinstance(payload.item[5].msg_content, str)
    assert payload.item[0].as_item() is None
    assert payload.item[3].as_item().media_id == "M"


# --------------------------------------------------------------------------- events

EVENT_CASES = [
    (
        {
            "event_type": "enter_session",
            "open_kfid": KFID,
            "external_userid": USERID,
            "scene": "ad1",
            "scene_param": "a=1&b=2",
            "welcome_code": "WELCOME",
            "wechat_channels": {"nickname": "Creator", "shop_nickname": "Shop", "scene": "4"},
        },
        EnterSessionEvent,
        {"scene": "ad1", "scene_param": "a=1&b=2", "welcome_code": "WELCOME"},
    ),
    (
        {"event_type": "msg_send_fail", "open_kfid": KFID, "external_userid": USERID, "fail_msgid": "F1", "fail_type": "4"},
        MsgSendFailEvent,
        {"fail_msgid": "F1", "fail_type": 4},
    ),
    (
        {"event_type": "servicer_status_change", "open_kfid": KFID, "servicer_userid": "zhangsan", "status": 2, "stop_type": 1},
        ServicerStatusChangeEvent,
        {"servicer_userid": "zhangsan", "status": ServicerStatus.STOPPED, "stop_type": 1},
    ),
    (
        {
            "event_type": "session_status_change",
            "open_kfid": KFID,
            "external_userid": USERID,
            "change_type": 3,
            "old_servicer_userid": "lisi",
            "msg_code": "CODE",
        },
        SessionStatusChangeEvent,
        {"change_type": SessionChangeType.ENDED, "old_servicer_userid": "lisi", "new_servicer_userid": None, "msg_code": "CODE"},
    ),
    (
        {"event_type": "user_recall_msg", "open_kfid": KFID, "external_userid": USERID, "recall_msgid": "R1"},
        UserRecallMsgEvent,
        {"recall_msgid": "R1"},
    ),
    (
        {
            "event_type": "servicer_recall_msg",
            "open_kfid": KFID,
            "external_userid": USERID,
            "recall_msgid": "R2",
            "servicer_userid": "zhangsan",
        },
        ServicerRecallMsgEvent,
        {"recall_msgid": "R2", "servicer_userid": "zhangsan"},
    ),
    (
        {
            "event_type": "reject_customer_msg_switch_change",
            "open_kfid": KFID,
            "external_userid": USERID,
            "servicer_userid": "zhangsan",
            "reject_switch": "1",
        },
        RejectCustomerMsgSwitchChangeEvent,
        {"servicer_userid": "zhangsan", "reject_switch": 1},
    ),
]


@pytest.mark.parametrize(("body", "model", "expected"), EVENT_CASES, ids=[c[0]["event_type"] for c in EVENT_CASES])
def test_each_event_type(body, model, expected):
    raw = event_item(body)
    item = parse_item(raw)
    assert item.is_event
    assert not item.is_customer_message
    assert type(item.event) is model
    assert item.payload is item.event
    assert item.event_type == body["event_type"]
    assert item.open_kfid == KFID
    assert item.external_userid == body.get("external_userid")
    for name, value in expected.items():
        assert getattr(item.event, name) == value, name
    assert not item.malformed
    assert "open_kfid" not in item.raw  # effective ids come from inside the event
    assert item.text is None and item.media_id is None


def test_every_documented_event_type_is_covered():
    assert {c[0]["event_type"] for c in EVENT_CASES} == set(EVENT_MODELS) == {e.value for e in EventType}


def test_enter_session_wechat_channels():
    item = parse_item(event_item(EVENT_CASES[0][0]))
    channels = item.event.wechat_channels
    assert isinstance(channels, WechatChannels)
    assert channels.scene == 4
    assert channels.shop_nickname == "Shop"


def test_enter_session_minimal():
    item = parse_item(event_item({"event_type": "enter_session", "open_kfid": KFID, "external_userid": USERID}))
    assert item.event.welcome_code is None
    assert item.event.wechat_channels is None
    assert item.external_userid == USERID


def test_event_falls_back_to_top_level_ids():
    item = parse_item(event_item({"event_type": "user_recall_msg", "recall_msgid": "R"}, open_kfid="wk-top", external_userid="wm-top"))
    assert item.open_kfid == "wk-top"
    assert item.external_userid == "wm-top"


def test_event_ids_inside_event_win():
    item = parse_item(event_item({"event_type": "user_recall_msg", "open_kfid": "wk-in", "external_userid": "wm-in"}, open_kfid="wk-top"))
    assert item.open_kfid == "wk-in"
    assert item.external_userid == "wm-in"


def test_event_without_event_object_is_malformed():
    item = parse_item({"msgid": "e", "msgtype": "event", "origin": 4})
    assert item.is_event
    assert item.malformed
    assert item.event is None and item.event_type is None


def test_event_with_bad_field_keeps_the_rest():
    item = parse_item(event_item({"event_type": "msg_send_fail", "open_kfid": KFID, "fail_msgid": "F", "fail_type": "n/a"}))
    assert item.malformed
    assert isinstance(item.event, MsgSendFailEvent)
    assert item.event.fail_type is None
    assert item.event.fail_msgid == "F"
    assert item.open_kfid == KFID


# --------------------------------------------------------------------------- unknown types


@pytest.mark.parametrize("msgtype", ["meeting", "schedule", "note", "hologram"])
def test_unknown_msgtype_kept_whole(msgtype):
    body = {"meetingid": 1, "title": "Weekly", "nested": {"a": [1, 2]}}
    raw = message(msgtype, body)
    snapshot = copy.deepcopy(raw)
    item = parse_item(raw)
    assert item.msgtype == msgtype
    assert item.payload == body and isinstance(item.payload, dict)
    assert item.raw == snapshot
    assert item.event is None
    assert not item.malformed
    assert item.open_kfid == KFID
    assert item.text is None and item.media_id is None
    assert item.is_customer_message


def test_unknown_event_type_kept_whole():
    body = {"event_type": "future_event", "open_kfid": KFID, "external_userid": USERID, "whatever": {"x": 1}}
    raw = event_item(body)
    snapshot = copy.deepcopy(raw)
    item = parse_item(raw)
    assert item.is_event
    assert item.event_type == "future_event"
    assert type(item.event) is KfEvent
    assert item.payload == body and isinstance(item.payload, dict)
    assert item.raw == snapshot
    assert item.open_kfid == KFID and item.external_userid == USERID
    assert not item.malformed


# --------------------------------------------------------------------------- field conversions


def payload_of(msgtype, body):
    item = parse_item(message(msgtype, body))
    return item.payload, item.malformed


@pytest.mark.parametrize(
    ("value", "expected"),
    [("hi", "hi"), ("", ""), (42, "42"), (1.5, "1.5"), (10**20, str(10**20)), (EventType.ENTER_SESSION, "enter_session")],
)
def test_text_field_values(value, expected):
    payload, malformed = payload_of("text", {"content": value})
    assert payload.content == expected and type(payload.content) is str
    assert not malformed


@pytest.mark.parametrize("value", [True, False, [1], {"a": 1}])
def test_text_field_rejects(value):
    payload, malformed = payload_of("text", {"content": value, "menu_id": "7"})
    assert payload.content is None
    assert payload.menu_id == "7"  # the rest of the payload survives
    assert malformed


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (2, 2), (True, 1), (2.0, 2), (-0.0, 0), (2.0**62, 2**62), (10**30, 10**30),
        ("7", 7), (" +7 ", 7), ("7.0", 7), ("1e3", 1000), ("1_000", 1000), ("1e300", int(1e300)), ("", None), ("  ", None),
        (None, None),
    ],
)
def test_int_field_values(value, expected):
    payload, malformed = payload_of("channels", {"sub_type": value})
    assert payload.sub_type == expected and type(payload.sub_type) is type(expected)
    assert not malformed


@pytest.mark.parametrize("value", [1.5, 2.0**63, -(2.0**63), math.inf, math.nan, "1.5", "inf", "nan", "0x10", "seven", "1e400", [1], {}])
def test_int_field_rejects(value):
    payload, malformed = payload_of("channels", {"sub_type": value, "nickname": "N"})
    assert payload.sub_type is None
    assert payload.nickname == "N"
    assert malformed


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (23, 23.0), (True, 1.0), (23.5, 23.5), (" 23.5 ", 23.5), ("5.", 5.0), (".5", 0.5), ("-5.e-3", -0.005),
        ("1_000.5", 1000.5), ("1_.5", 1.5), ("1E_5", 1e5), ("INF", math.inf), ("-infinity", -math.inf), ("1e400", math.inf),
        ("", None), (None, None),
    ],
)
def test_float_field_values(value, expected):
    payload, malformed = payload_of("location", {"latitude": value})
    assert payload.latitude == expected and type(payload.latitude) is type(expected)
    assert not malformed


@pytest.mark.parametrize("value", ["north", "١.٥", "１", "_1", "1_", "1__0", "0x10", "1e", ".", "infinit", 10**400, [1.0], {"lat": 1}])
def test_float_field_rejects(value):
    payload, malformed = payload_of("location", {"latitude": value, "longitude": 113.3})
    assert payload.latitude is None
    assert payload.longitude == 113.3
    assert malformed


def test_float_field_nan():
    payload, malformed = payload_of("location", {"latitude": "NaN", "longitude": math.nan})
    assert math.isnan(payload.latitude) and math.isnan(payload.longitude)
    assert not malformed


def test_channels_shop_product_key_preference():
    payload, malformed = payload_of("channels_shop_product", {"head_img": "short", "head_image": "long"})
    assert payload.head_image == "long" and not malformed
    # an unusable value under the preferred key falls back to the other spelling
    payload, malformed = payload_of("channels_shop_product", {"head_image": [1], "head_img": "short", "title": "T"})
    assert payload.head_image == "short" and payload.title == "T"
    assert malformed
    payload, malformed = payload_of("channels_shop_product", {"head_img": [1], "title": "T"})
    assert payload.head_image is None and payload.title == "T"
    assert malformed
    payload, malformed = payload_of("channels_shop_product", {"head_image": None, "head_img": "short"})
    assert payload.head_image is None and not malformed


def test_wechat_channels_is_all_or_nothing():
    body = {"event_type": "enter_session", "scene": "ad", "wechat_channels": {"nickname": "Creator", "scene": "x"}}
    item = parse_item(event_item(body))
    assert item.event.wechat_channels is None
    assert item.event.scene == "ad"
    assert item.malformed
    assert item.event.entry_scene == "ad"
    for channels in ("Creator", ["nickname"], 1):
        item = parse_item(event_item({"event_type": "enter_session", "wechat_channels": channels}))
        assert item.event.wechat_channels is None and item.malformed
    item = parse_item(event_item({"event_type": "enter_session", "wechat_channels": {"shop_nickname": "Shop", "x": 1}}))
    assert item.event.wechat_channels == WechatChannels(shop_nickname="Shop")
    assert item.event.entry_scene == "channels:Shop"
    assert not item.malformed


def test_merged_msg_entries_are_all_or_nothing():
    payload, malformed = payload_of("merged_msg", {"title": "T", "item": [{"msgtype": "text"}, {"send_time": "soon"}]})
    assert payload.item == [] and payload.title == "T"
    assert malformed
    for items in (None, {"msgtype": "text"}, "x"):
        payload, malformed = payload_of("merged_msg", {"item": items})
        assert payload.item == [] and malformed
    payload, malformed = payload_of("merged_msg", {"item": [{"msg_content": True}]})
    assert payload.item == [] and malformed


def test_msgmenu_list_must_be_a_list():
    for entries in (None, "x", {"type": "click"}):
        payload, malformed = payload_of("msgmenu", {"list": entries, "head_content": "H"})
        assert payload.list == [] and payload.head_content == "H"
        assert malformed
    entry = {"type": "click", "click": {"id": "1"}}
    payload, _ = payload_of("msgmenu", {"list": [entry]})
    assert payload.list == [entry] and payload.list[0] is not entry  # a copy: the raw item stays untouched


def test_event_type_not_a_string():
    item = parse_item(event_item({"event_type": 5}))
    assert type(item.event) is KfEvent and item.event_type == "5"
    assert not item.malformed
    item = parse_item(event_item({"event_type": None, "open_kfid": KFID}))
    assert item.event_type == "" and item.open_kfid == KFID
    assert item.malformed


def test_models_are_frozen_values():
    item = parse_item(message("text", {"content": "hi"}))
    with pytest.raises(AttributeError):
        item.msgid = "other"
    with pytest.raises(AttributeError):
        item.payload.content = "other"
    assert item.payload == TextPayload(content="hi")
    assert parse_item(message("text", {"content": "hi"})) == item
    assert MsgSendFailEvent() == MsgSendFailEvent(event_type="", fail_msgid=None)  # defaults for every field
    with pytest.raises(TypeError):
        TextPayload("hi")  # keyword arguments only


def test_import_loads_no_pydantic():
    shared = str(Path(__file__).resolve().parents[2] / "shared")
    env = {**os.environ, "PYTHONPATH": shared}
    heavy = "{'pydantic', 'pydantic_core', 'typing_extensions', 'annotated_types'}"
    code = f"import sys, kefu.wecom.models; print(sorted(m for m in sys.modules if m.split('.')[0] in {heavy}))"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.strip() == "[]"


# --------------------------------------------------------------------------- robustness


def test_parse_items():
    items = parse_items([message("text", {"content": "a"}), "junk", None, event_item({"event_type": "enter_session"})])
    assert [i.msgtype for i in items] == ["text", "", "", "event"]
    assert [i.malformed for i in items] == [False, True, True, False]
    assert items[1].raw == {}
    assert parse_items(None) == []
    assert parse_items({"msg_list": []}) == []


def test_dump_includes_typed_payload():
    dumped = parse_item(message("image", {"media_id": "M"})).to_dict()
    assert dumped["payload"] == {"media_id": "M"}
    assert dumped["raw"]["image"] == {"media_id": "M"}
    ev = parse_item(event_item({"event_type": "msg_send_fail", "fail_msgid": "F"})).to_dict()
    assert ev["event"]["fail_msgid"] == "F"
    nested = parse_item(message("merged_msg", {"item": [{"msgtype": "text", "send_time": "5"}]})).to_dict()
    assert nested["payload"]["item"] == [{"send_time": 5, "msgtype": "text", "sender_name": None, "msg_content": None}]


json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
known_types = st.sampled_from(sorted(PAYLOAD_MODELS) + ["event", "meeting", ""])
event_types = st.sampled_from(sorted(EVENT_MODELS) + ["future_event"])
field_names = st.sampled_from(
    [
        "msgid", "open_kfid", "external_userid", "send_time", "origin", "servicer_userid", "content",
        "media_id", "latitude", "longitude", "list", "item", "msg_content", "head_img", "head_image",
        "sub_type", "wechat_channels", "fail_type", "status", "change_type", "event_type",
    ]
)
junk_bodies = st.dictionaries(field_names | st.text(max_size=8), json_values, max_size=6)


@st.composite
def plausible_items(draw):
    msgtype = draw(known_types)
    item = draw(st.dictionaries(field_names, json_values, max_size=6))
    item["msgtype"] = draw(st.sampled_from([msgtype, 7, None, [msgtype]]))
    body = draw(junk_bodies | json_values)
    if msgtype == "event" and isinstance(body, dict):
        body["event_type"] = draw(event_types | json_values)
    item[msgtype] = body
    return item


@st.composite
def junk_events(draw):
    body = draw(junk_bodies)
    body["event_type"] = draw(event_types | json_values)
    item = draw(st.dictionaries(field_names, json_values, max_size=4))
    item.update(msgtype="event", event=body)
    return item


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.text(max_size=12), json_values, max_size=8) | plausible_items() | junk_events())
def test_parse_item_never_raises(raw):
    snapshot = copy.deepcopy(raw)
    _parse_item(raw)  # junk must be handled by design, not only by the catch-all in parse_item
    item = parse_item(raw)
    assert isinstance(item, SyncItem)
    assert item.raw is raw
    assert raw == snapshot or raw != raw  # unchanged (NaN never equals itself)
    assert isinstance(item.msgid, str) and isinstance(item.msgtype, str)
    assert item.send_time is None or isinstance(item.send_time, int)
    assert item.event is None or isinstance(item.event, KfEvent)
    if item.msgtype in PAYLOAD_MODELS and isinstance(item.payload, dict):
        pytest.fail("known msgtype produced an untyped payload")
    item.is_event, item.event_type, item.text, item.media_id, item.is_customer_message  # noqa: B018


@settings(max_examples=100, deadline=None)
@given(st.lists(json_values, max_size=5))
def test_parse_items_never_raises(values):
    assert len(parse_items(values)) == len(values)
