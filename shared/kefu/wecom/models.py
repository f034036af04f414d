"""Typed views of WeCom kf data: the decrypted callback and the items returned by kf/sync_msg.

Parsing philosophy: WeCom (and the SDKs that document it) disagree on number types and some key
names, and new message/event types appear without notice. So:

* ``CallbackEvent`` is strict about what the handler needs (bad input -> ``ValidationError``).
* ``parse_item`` is total: it never raises, keeps the original dict in ``item.raw`` and sets
  ``item.malformed`` when part of the item could not be understood.

Only pydantic, kefu.ids and the standard library are imported here (this module loads in every Lambda).
"""

import builtins
import json
from collections.abc import Mapping
from enum import IntEnum, StrEnum
from typing import Annotated, Any, ClassVar, TypeVar

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializeAsAny,
    SkipValidation,
    ValidationError,
)

from kefu.ids import CHANNELS_SCENE_PREFIX

__all__ = [
    "CallbackEvent",
    "Origin",
    "EventType",
    "ServicerStatus",
    "SessionChangeType",
    "KfModel",
    "KfPayload",
    "TextPayload",
    "MediaPayload",
    "LocationPayload",
    "LinkPayload",
    "BusinessCardPayload",
    "MiniprogramPayload",
    "MsgMenuPayload",
    "ChannelsShopProductPayload",
    "ChannelsShopOrderPayload",
    "MergedMsgItem",
    "MergedMsgPayload",
    "ChannelsPayload",
    "KfEvent",
    "WechatChannels",
    "EnterSessionEvent",
    "MsgSendFailEvent",
    "ServicerStatusChangeEvent",
    "SessionStatusChangeEvent",
    "UserRecallMsgEvent",
    "ServicerRecallMsgEvent",
    "RejectCustomerMsgSwitchChangeEvent",
    "SyncItem",
    "PAYLOAD_MODELS",
    "EVENT_MODELS",
    "MEDIA_MSGTYPES",
    "parse_item",
    "parse_items",
]


# --------------------------------------------------------------------------- constants


class Origin(IntEnum):
    """Who produced a sync_msg item (``origin``)."""

    CUSTOMER = 3  # the WeChat user
    SYSTEM = 4  # an event pushed by WeCom
    SERVICER = 5  # a human servicer typing in the WeCom client


class EventType(StrEnum):
    ENTER_SESSION = "enter_session"
    MSG_SEND_FAIL = "msg_send_fail"
    SERVICER_STATUS_CHANGE = "servicer_status_change"
    SESSION_STATUS_CHANGE = "session_status_change"
    USER_RECALL_MSG = "user_recall_msg"
    SERVICER_RECALL_MSG = "servicer_recall_msg"
    REJECT_CUSTOMER_MSG_SWITCH_CHANGE = "reject_customer_msg_switch_change"


class ServicerStatus(IntEnum):
    """``status`` of servicer_status_change. Not the same numbering as kf/servicer/list (0/1)."""

    RECEIVING = 1
    STOPPED = 2


class SessionChangeType(IntEnum):
    """``change_type`` of session_status_change (all caused by a servicer in the WeCom client)."""

    PICKED_FROM_POOL = 1
    TRANSFERRED = 2
    ENDED = 3
    REOPENED = 4


class ServiceState(IntEnum):
    """A session's ``service_state`` (kf/service_state/get and trans)."""

    NEW = 0  # not handled yet
    BOT = 1  # with the smart assistant / the API
    POOL = 2  # waiting in the pool
    HUMAN = 3  # with a servicer
    ENDED = 4  # ended (until the customer writes again)


MEDIA_MSGTYPES = frozenset({"image", "voice", "video", "file"})


# --------------------------------------------------------------------------- lenient scalars


def _int_like(value: Any) -> Any:
    """Turn numeric strings (" 12 ", "12.0") into ints; blank -> None. Anything else is left
    untouched so pydantic reports it."""
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            return int(text)
        except ValueError:
            pass
        try:
            number = float(text)
        except ValueError:
            return value
        return int(number) if number.is_integer() else value
    return value


def _float_like(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        return text or None
    return value


def _json_text(value: Any) -> Any:
    # merged_msg content should be a JSON *string*; if an object shows up instead, re-encode it
    # so the field type stays the same for callers.
    if isinstance(value, (dict, builtins.list)):
        return json.dumps(value, ensure_ascii=False)
    return value


def _only_dicts(value: Any) -> Any:
    # drop non-object entries from a list instead of rejecting the whole list
    if isinstance(value, builtins.list):
        return [entry for entry in value if isinstance(entry, dict)]
    return value


OptInt = Annotated[int | None, BeforeValidator(_int_like)]
OptFloat = Annotated[float | None, BeforeValidator(_float_like)]
OptStr = str | None


class KfModel(BaseModel):
    """Base for all WeCom JSON shapes: unknown keys ignored, numbers accepted where strings are
    expected (ids occasionally arrive as numbers)."""

    model_config = ConfigDict(
        extra="ignore",
        coerce_numbers_to_str=True,
        validate_by_name=True,
        validate_by_alias=True,
        # validators are built on first use, so a cold start that only handles the callback
        # does not pay for the sync_msg models
        defer_build=True,
    )


_M = TypeVar("_M", bound=BaseModel)


def _validate_lenient(cls: type[_M], data: Any) -> tuple[_M, bool]:
    """Validate ``data`` into ``cls`` (whose fields must all have defaults), discarding keys that
    fail. Returns the model and whether everything validated cleanly. Never raises."""
    if not isinstance(data, dict):
        return cls.model_construct(), False
    attempt = data
    for _ in range(4):
        try:
            return cls.model_validate(attempt), attempt is data
        except ValidationError as exc:
            bad = {err["loc"][0] for err in exc.errors() if err.get("loc")}
            bad &= attempt.keys()
            if not bad:
                break
            attempt = {k: v for k, v in attempt.items() if k not in bad}
        except Exception:  # pragma: no cover - defensive: pydantic internals on odd input
            break
    return cls.model_construct(), False


# --------------------------------------------------------------------------- callback event

_CALLBACK_TAGS = {
    "ToUserName": "to_user_name",
    "CreateTime": "create_time",
    "MsgType": "msg_type",
    "Event": "event",
    "Token": "token",  # nosec B105 - a field name
    "OpenKfId": "open_kfid",
}


def _strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


class CallbackEvent(BaseModel):
    """The decrypted XML posted to the callback URL. It only says "pull now"; the content comes
    from kf/sync_msg using ``token``. Unrecognised tags (e.g. AuthAddOpenKfId / AuthDelOpenKfId
    on kf_account_auth_change, FromUserName) are kept in ``extra``."""

    model_config = ConfigDict(
        extra="ignore",
        coerce_numbers_to_str=True,
        validate_by_name=True,
        validate_by_alias=True,
    )

    to_user_name: str = Field(alias="ToUserName")
    create_time: Annotated[int, BeforeValidator(_strip)] = Field(alias="CreateTime")
    msg_type: str = Field(alias="MsgType")
    event: str = Field(alias="Event")
    token: OptStr = Field(default=None, alias="Token")
    open_kfid: OptStr = Field(default=None, alias="OpenKfId")
    extra: dict[str, str] = Field(default_factory=dict)

    KF_MSG_OR_EVENT: ClassVar[str] = "kf_msg_or_event"
    KF_ACCOUNT_AUTH_CHANGE: ClassVar[str] = "kf_account_auth_change"

    @classmethod
    def from_xml_fields(cls, fields: Mapping[str, str | None]) -> "CallbackEvent":
        """Build from an already-parsed flat mapping of XML tag -> text. Tags with no text
        (None) count as absent. Raises ``pydantic.ValidationError`` on bad or missing values."""
        known: dict[str, Any] = {}
        extra: dict[str, str] = {}
        for tag, text in fields.items():
            if tag in _CALLBACK_TAGS:
                if text is not None:
                    known[tag] = text
            else:
                extra[tag] = "" if text is None else text
        return cls.model_validate({**known, "extra": extra})

    @property
    def is_kf_msg_or_event(self) -> bool:
        return self.event == self.KF_MSG_OR_EVENT


# --------------------------------------------------------------------------- message payloads


class KfPayload(KfModel):
    """Base of the typed per-msgtype payloads (the object stored under the msgtype key)."""


class TextPayload(KfPayload):
    content: OptStr = None
    menu_id: OptStr = None  # set when the text comes from clicking a msgmenu "click" entry


class MediaPayload(KfPayload):
    """image / voice / video / file: fetch the bytes with media/get (media ids live 3 days)."""

    media_id: OptStr = None


class LocationPayload(KfPayload):
    latitude: OptFloat = None
    longitude: OptFloat = None
    name: OptStr = None
    address: OptStr = None


class LinkPayload(KfPayload):
    title: OptStr = None
    desc: OptStr = None
    url: OptStr = None
    pic_url: OptStr = None


class BusinessCardPayload(KfPayload):
    userid: OptStr = None


class MiniprogramPayload(KfPayload):
    title: OptStr = None
    appid: OptStr = None
    pagepath: OptStr = None
    thumb_media_id: OptStr = None


class MsgMenuPayload(KfPayload):
    head_content: OptStr = None
    # entries look like {"type": "click", "click": {"id": ..., "content": ...}}; kept as dicts
    list: Annotated[builtins.list[dict[str, Any]], BeforeValidator(_only_dicts)] = Field(
        default_factory=builtins.list
    )
    tail_content: OptStr = None


class ChannelsShopProductPayload(KfPayload):
    # The image keys are spelled two ways across sources; accept either.
    product_id: OptStr = None
    head_image: OptStr = Field(default=None, validation_alias=AliasChoices("head_image", "head_img"))
    title: OptStr = None
    sales_price: OptStr = None  # price in fen, as a string
    shop_nickname: OptStr = None
    shop_head_image: OptStr = Field(
        default=None, validation_alias=AliasChoices("shop_head_image", "shop_head_img")
    )


class ChannelsShopOrderPayload(KfPayload):
    order_id: OptStr = None
    product_titles: OptStr = None
    price_wording: OptStr = None
    state: OptStr = None
    image_url: OptStr = None
    shop_nickname: OptStr = None


class MergedMsgItem(KfModel):
    """One forwarded message inside a merged_msg (chat history)."""

    send_time: OptInt = None
    msgtype: OptStr = None
    sender_name: OptStr = None
    # a JSON document encoded as a string, shaped like {"msgtype": "text", "text": {...}}
    msg_content: Annotated[OptStr, BeforeValidator(_json_text)] = None

    def decode_content(self) -> dict[str, Any] | None:
        """``msg_content`` decoded as a JSON object, or None when it is empty or not usable.
        Tolerates a leading BOM and one extra level of string encoding."""
        value: Any = self.msg_content
        for _ in range(2):
            if not isinstance(value, str):
                break
            text = value.strip().lstrip("\ufeff")
            if not text:
                return None
            try:
                value = json.loads(text)
            except (ValueError, RecursionError):
                return None
        return value if isinstance(value, dict) else None

    def as_item(self) -> "SyncItem | None":
        """The decoded content parsed like a sync_msg item (typed payload), or None."""
        decoded = self.decode_content()
        if decoded is None:
            return None
        if self.send_time is not None:
            decoded.setdefault("send_time", self.send_time)
        if self.msgtype:
            decoded.setdefault("msgtype", self.msgtype)
        return parse_item(decoded)


class MergedMsgPayload(KfPayload):
    title: OptStr = None
    item: Annotated[builtins.list[MergedMsgItem], BeforeValidator(_only_dicts)] = Field(
        default_factory=builtins.list
    )


class ChannelsPayload(KfPayload):
    sub_type: OptInt = None  # 1 video-account post, 2 live, 3 video-account card
    nickname: OptStr = None
    title: OptStr = None  # only for sub_type 1


PAYLOAD_MODELS: dict[str, type[KfPayload]] = {
    "text": TextPayload,
    "image": MediaPayload,
    "voice": MediaPayload,
    "video": MediaPayload,
    "file": MediaPayload,
    "location": LocationPayload,
    "link": LinkPayload,
    "business_card": BusinessCardPayload,
    "miniprogram": MiniprogramPayload,
    "msgmenu": MsgMenuPayload,
    "channels_shop_product": ChannelsShopProductPayload,
    "channels_shop_order": ChannelsShopOrderPayload,
    "merged_msg": MergedMsgPayload,
    "channels": ChannelsPayload,
}


# --------------------------------------------------------------------------- events


class KfEvent(KfModel):
    """Object under ``event`` when msgtype == "event". Used as-is for unknown event types."""

    event_type: str = ""
    open_kfid: OptStr = None
    external_userid: OptStr = None


class WechatChannels(KfModel):
    nickname: OptStr = None  # for scene 1-3
    shop_nickname: OptStr = None  # for scene 4-5
    scene: OptInt = None  # 1 homepage, 2 live product list, 3 showcase, 4 product, 5 order


class EnterSessionEvent(KfEvent):
    scene: OptStr = None
    scene_param: OptStr = None
    welcome_code: OptStr = None  # single use, expires in about 20 s
    wechat_channels: WechatChannels | None = None

    @property
    def entry_scene(self) -> str | None:
        """The scene Kefu attributes the entry to: the link's scene, else for an entry from 视频号
        ``channels:<nickname>`` (the channel's, or its shop's), else None."""
        if self.scene:
            return self.scene
        channels = self.wechat_channels
        name = channels and (channels.nickname or channels.shop_nickname)
        return f"{CHANNELS_SCENE_PREFIX}{name}" if name else None


class MsgSendFailEvent(KfEvent):
    fail_msgid: OptStr = None
    fail_type: OptInt = None


class ServicerStatusChangeEvent(KfEvent):
    servicer_userid: OptStr = None
    status: OptInt = None  # see ServicerStatus
    stop_type: OptInt = None  # when stopped: 0 stopped, 1 suspended


class SessionStatusChangeEvent(KfEvent):
    change_type: OptInt = None  # see SessionChangeType
    old_servicer_userid: OptStr = None
    new_servicer_userid: OptStr = None
    msg_code: OptStr = None  # for send_msg_on_event (change types 1 and 3)


class UserRecallMsgEvent(KfEvent):
    recall_msgid: OptStr = None


class ServicerRecallMsgEvent(KfEvent):
    recall_msgid: OptStr = None
    servicer_userid: OptStr = None


class RejectCustomerMsgSwitchChangeEvent(KfEvent):
    servicer_userid: OptStr = None
    reject_switch: OptInt = None  # 1 servicer rejects the customer's messages, 0 lifted


EventT = TypeVar("EventT", bound=KfEvent)

EVENT_MODELS: dict[str, type[KfEvent]] = {
    EventType.ENTER_SESSION: EnterSessionEvent,
    EventType.MSG_SEND_FAIL: MsgSendFailEvent,
    EventType.SERVICER_STATUS_CHANGE: ServicerStatusChangeEvent,
    EventType.SESSION_STATUS_CHANGE: SessionStatusChangeEvent,
    EventType.USER_RECALL_MSG: UserRecallMsgEvent,
    EventType.SERVICER_RECALL_MSG: ServicerRecallMsgEvent,
    EventType.REJECT_CUSTOMER_MSG_SWITCH_CHANGE: RejectCustomerMsgSwitchChangeEvent,
}


# --------------------------------------------------------------------------- sync_msg item

_COMMON_KEYS = (
    "msgid",
    "open_kfid",
    "external_userid",
    "send_time",
    "origin",
    "servicer_userid",
    "msgtype",
)


class SyncItem(KfModel):
    """One element of sync_msg ``msg_list``. Build it with ``parse_item``.

    ``open_kfid`` / ``external_userid`` are the effective values: for events they are read from
    inside the event object (WeCom leaves them off the top level there).
    ``payload`` is the typed model for known msgtypes (the event model for known events) and the
    untouched dict otherwise. ``event`` is set for every msgtype == "event" item (a plain
    ``KfEvent`` for unknown event types). ``raw`` is the item exactly as received.
    """

    msgid: str = ""
    open_kfid: OptStr = None
    external_userid: OptStr = None
    send_time: OptInt = None
    origin: OptInt = None  # see Origin
    servicer_userid: OptStr = None  # sender, for origin 5
    msgtype: str = ""

    payload: Annotated[
        SerializeAsAny[KfPayload] | SerializeAsAny[KfEvent] | dict[str, Any] | None,
        SkipValidation,
    ] = None
    event: Annotated[SerializeAsAny[KfEvent] | None, SkipValidation] = None
    raw: Annotated[dict[Any, Any], SkipValidation] = Field(default_factory=dict, repr=False)
    malformed: bool = False

    @classmethod
    def parse(cls, raw: Any) -> "SyncItem":
        return parse_item(raw)

    @property
    def is_event(self) -> bool:
        return self.msgtype == "event"

    def event_as(self, model: type[EventT]) -> EventT | None:
        """The event, when it is of ``model``'s type (parsed by event_type), else None."""
        return self.event if isinstance(self.event, model) else None

    @property
    def event_type(self) -> str | None:
        return self.event.event_type if self.event is not None else None

    @property
    def text(self) -> str | None:
        return self.payload.content if isinstance(self.payload, TextPayload) else None

    @property
    def menu_id(self) -> str | None:
        return self.payload.menu_id if isinstance(self.payload, TextPayload) else None

    @property
    def media_id(self) -> str | None:
        return self.payload.media_id if isinstance(self.payload, MediaPayload) else None

    @property
    def is_customer_message(self) -> bool:
        return self.origin == Origin.CUSTOMER and not self.is_event


def _parse_item(raw: Any) -> SyncItem:
    if not isinstance(raw, dict):
        return SyncItem.model_construct(malformed=True)

    common = {key: raw[key] for key in _COMMON_KEYS if key in raw}
    item, clean = _validate_lenient(SyncItem, common)
    malformed = not clean or not item.msgtype
    msgtype = item.msgtype
    body = raw.get(msgtype) if msgtype else None
    payload: KfPayload | KfEvent | dict[str, Any] | None = None
    event: KfEvent | None = None

    if msgtype == "event":
        if isinstance(body, dict):
            etype = body.get("event_type")
            model = EVENT_MODELS.get(etype, KfEvent) if isinstance(etype, str) else KfEvent
            event, clean = _validate_lenient(model, body)
            malformed = malformed or not clean or not event.event_type
            # unknown event types: the whole object stays available as a dict
            payload = event if model is not KfEvent else body
            item.open_kfid = event.open_kfid or item.open_kfid
            item.external_userid = event.external_userid or item.external_userid
        else:
            malformed = True
    elif msgtype in PAYLOAD_MODELS:
        if isinstance(body, dict):
            payload, clean = _validate_lenient(PAYLOAD_MODELS[msgtype], body)
            malformed = malformed or not clean
        else:
            malformed = True
    elif isinstance(body, dict):
        payload = body  # unknown msgtype (meeting, schedule, note, future ones)

    item.payload = payload
    item.event = event
    item.raw = raw
    item.malformed = malformed
    return item


def parse_item(raw: Any) -> SyncItem:
    """Parse one sync_msg item. Never raises: unusable parts leave ``malformed=True`` and the
    input is always available as ``item.raw``."""
    try:
        return _parse_item(raw)
    except Exception:  # pragma: no cover - last resort so one odd item cannot stop a batch
        return SyncItem.model_construct(raw=raw if isinstance(raw, dict) else {}, malformed=True)


def parse_items(items: Any) -> builtins.list[SyncItem]:
    """Parse a ``msg_list``. A non-list input gives an empty list."""
    if not isinstance(items, (builtins.list, tuple)):
        return []
    return [parse_item(entry) for entry in items]
