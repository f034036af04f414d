"""Typed views of WeCom kf data: the items returned by kf/sync_msg.

Parsing philosophy: WeCom (and the SDKs that document it) disagree on number types and some key
names, and new message/event types appear without notice. So ``parse_item`` is total: it never
raises, keeps the original dict in ``item.raw`` and sets ``item.malformed`` when part of the item
could not be understood. Within a model the parse is lenient per key: a value that does not fit
its field is dropped (the field keeps its default) and the item is flagged; unknown keys are
ignored. A nested object (``wechat_channels``, one ``merged_msg`` entry) is all or nothing: one bad
value in it drops the whole nested value.

Field rules (the same lax conversions the pydantic models used to apply):

* text fields take strings as they are and ints/floats as their ``str()``; bools and other
  values do not fit;
* int fields take ints (a bool as 0/1), integral floats within the 64-bit range, and numeric
  strings (" 12 ", "12.0", "1e3"); a blank string is None;
* float fields take ints, floats and number strings (ASCII digits, ``inf``/``nan``, ``_``
  between characters as in "1_000"); a blank string is None.

The models are immutable values on a small dataclass-like base (``KfModel``): this module loads
in every Lambda, so it imports only kefu.ids and the standard library (no pydantic, whose import
cost a few hundred milliseconds of each cold start).
"""

from __future__ import annotations

import builtins
import inspect
import json
import re
from collections.abc import Callable
from enum import IntEnum, StrEnum
from typing import Any, ClassVar, TypeVar, dataclass_transform

from kefu.ids import CHANNELS_SCENE_PREFIX

__all__ = [
    "Origin",
    "EventType",
    "ServicerStatus",
    "SessionChangeType",
    "ServiceState",
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


# --------------------------------------------------------------------------- field conversions
# Each takes the value found under a key and returns the field's value, or raises _Invalid.


class _Invalid(ValueError):
    """A value that does not fit its field (internal: the parse turns it into ``malformed``)."""


_Converter = Callable[[Any], Any]

_INT64_LIMIT = 2.0**63  # floats are taken as ints only strictly inside (-2**63, 2**63)
# A number as Rust's f64 parser reads it (what pydantic accepted): ASCII digits only, "5." and
# ".5", an exponent, inf / infinity / nan in any case.
_FLOAT_TEXT = re.compile(r"[+-]?(?:inf|infinity|nan|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:e[+-]?[0-9]+)?)", re.IGNORECASE)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value if type(value) is str else str.__str__(value)  # a str subclass (an enum) as plain str
    # ids occasionally arrive as numbers; bools are not numbers here
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise _Invalid(value)


def _opt_text(value: Any) -> str | None:
    return None if value is None else _text(value)


def _opt_int(value: Any) -> int | None:
    if value is None:
        return None
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
            raise _Invalid(value) from None
        if number.is_integer():
            return int(number)
        raise _Invalid(value)
    if isinstance(value, int):
        return int(value)  # a bool counts as 0 / 1
    if isinstance(value, float) and value.is_integer() and -_INT64_LIMIT < value < _INT64_LIMIT:
        return int(value)
    raise _Invalid(value)


def _opt_float(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if "_" in text:  # "1_000": underscores between characters, never leading, trailing or doubled
            if text.startswith("_") or text.endswith("_") or "__" in text:
                raise _Invalid(value)
            text = text.replace("_", "")
        if _FLOAT_TEXT.fullmatch(text) is None:
            raise _Invalid(value)
        return float(text)
    if isinstance(value, float):
        return value
    if isinstance(value, int):
        try:
            return float(value)
        except OverflowError:
            raise _Invalid(value) from None
    raise _Invalid(value)


def _opt_json_text(value: Any) -> str | None:
    # merged_msg content should be a JSON *string*; if an object shows up instead, re-encode it
    # so the field type stays the same for callers.
    if isinstance(value, (dict, builtins.list)):
        try:
            return json.dumps(value, ensure_ascii=False)
        except (ValueError, TypeError, RecursionError):
            raise _Invalid(value) from None
    return _opt_text(value)


def _str_dict(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Invalid(value)
    return {_text(key): entry for key, entry in value.items()}


def _dict_list(value: Any) -> builtins.list[dict[str, Any]]:
    """A list of objects; non-object entries of a list are dropped instead of failing the list."""
    if isinstance(value, builtins.list):
        return [_str_dict(entry) for entry in value if isinstance(entry, dict)]
    if isinstance(value, tuple):  # not from JSON: every entry must fit
        return [_str_dict(entry) for entry in value]
    raise _Invalid(value)


_M = TypeVar("_M", bound="KfModel")


def _model_list(model: type[_M]) -> _Converter:
    """A list of ``model`` objects, each parsed strictly; non-object entries of a list are dropped."""

    def convert(value: Any) -> builtins.list[_M]:
        if isinstance(value, builtins.list):
            value = [entry for entry in value if isinstance(entry, dict)]
        elif not isinstance(value, tuple):
            raise _Invalid(value)
        return [_parse_strict(model, entry) for entry in value]

    return convert


def _opt_model(model: type[_M]) -> _Converter:
    def convert(value: Any) -> _M | None:
        return None if value is None else _parse_strict(model, value)

    return convert


_BY_ANNOTATION: dict[str, _Converter] = {
    "str": _text,
    "str | None": _opt_text,
    "int | None": _opt_int,
    "float | None": _opt_float,
}


# --------------------------------------------------------------------------- the model base


class _Field:
    """How a model field is built: its default, and which keys of WeCom's JSON it is read from
    with which conversion (by default: the field's name, converted by its annotation)."""

    __slots__ = ("default", "factory", "keys", "convert", "read", "shown")

    def __init__(self, default: Any = None, factory: Callable[[], Any] | None = None, keys: tuple[str, ...] = (),
                 convert: _Converter | None = None, read: bool = True, shown: bool = True) -> None:
        self.default = default
        self.factory = factory
        self.keys = keys
        self.convert = convert
        self.read = read
        self.shown = shown


def _field(*, default: Any = None, default_factory: Callable[[], Any] | None = None, keys: tuple[str, ...] = (),
           convert: _Converter | None = None, read: bool = True, shown: bool = True) -> Any:
    """A field with more than a plain default. ``keys``: the keys to read, in order of preference
    (a value that does not fit falls back to the next); ``read`` False: set by the parser, never
    read from the input; ``shown`` False: left out of repr()."""
    return _Field(default, default_factory, keys, convert, read, shown)


_MISSING = object()
_Spec = tuple[tuple[str, tuple[str, ...], _Converter], ...]


@dataclass_transform(kw_only_default=True, frozen_default=True, field_specifiers=(_field,))
class KfModel:
    """Base for all WeCom JSON shapes: immutable values built from keyword arguments, every field
    with a default. Subclasses declare fields like a dataclass (annotation = default, or
    ``_field(...)``); this base is lighter to define than ``dataclasses.dataclass`` (cold start)."""

    _fields: ClassVar[dict[str, _Field]] = {}
    _spec: ClassVar[_Spec] = ()  # (field name, input keys, converter) of the fields read from the input

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        fields = dict(cls._fields)  # the parent's, in order
        for name, annotation in inspect.get_annotations(cls).items():
            if str(annotation).startswith("ClassVar"):
                continue
            value = cls.__dict__.get(name, _MISSING)
            if value is _MISSING:
                raise TypeError(f"{cls.__name__}.{name} needs a default")
            if isinstance(value, _Field):
                delattr(cls, name)
            field = value if isinstance(value, _Field) else _Field(value)
            if field.read and field.convert is None:
                field.convert = _BY_ANNOTATION.get(str(annotation))
                if field.convert is None:
                    raise TypeError(f"{cls.__name__}.{name}: no conversion for {annotation}")
            fields[name] = field
        cls._fields = fields
        cls._spec = tuple((name, f.keys or (name,), f.convert) for name, f in fields.items() if f.read and f.convert)

    def __init__(self, **values: Any) -> None:
        for name, field in self._fields.items():
            if name in values:
                value = values.pop(name)
            else:
                value = field.default if field.factory is None else field.factory()
            object.__setattr__(self, name, value)
        if values:
            raise TypeError(f"{type(self).__name__}() got unexpected keyword arguments: {', '.join(values)}")

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: cannot delete {name!r}")

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.__dict__ == other.__dict__

    def __hash__(self) -> int:
        return hash((type(self), *self.__dict__.values()))

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name, field in self._fields.items() if field.shown)
        return f"{type(self).__name__}({shown})"

    def to_dict(self) -> dict[str, Any]:
        """The fields as plain data (nested models as dicts, lists and dicts copied)."""
        return {name: _plain(getattr(self, name)) for name in self._fields}


def _plain(value: Any) -> Any:
    if isinstance(value, KfModel):
        return value.to_dict()
    if isinstance(value, builtins.list):
        return [_plain(entry) for entry in value]
    if isinstance(value, dict):
        return {key: _plain(entry) for key, entry in value.items()}
    return value


# --------------------------------------------------------------------------- parsing a model


def _read(cls: type[KfModel], data: dict[Any, Any], *, strict: bool) -> tuple[dict[str, Any], bool]:
    """The field values found in ``data`` and whether all of them fitted. Lenient (``strict``
    False): a value that does not fit is skipped. Strict: it raises _Invalid."""
    values: dict[str, Any] = {}
    clean = True
    for name, keys, convert in cls._spec:
        for key in keys:
            if key not in data:
                continue
            try:
                values[name] = convert(data[key])
            except _Invalid:
                if strict:
                    raise
                clean = False
                continue
            break
    return values, clean


def _parse_strict(cls: type[_M], data: Any) -> _M:
    if not isinstance(data, dict):
        raise _Invalid(data)
    values, _clean = _read(cls, data, strict=True)
    return cls(**values)


def _parse_lenient(cls: type[_M], data: Any) -> tuple[_M, bool]:
    """``data`` as a ``cls`` (whose fields all have defaults), without the values that do not
    fit. Returns the model and whether everything fitted. Never raises."""
    if not isinstance(data, dict):
        return cls(), False
    values, clean = _read(cls, data, strict=False)
    return cls(**values), clean


# --------------------------------------------------------------------------- message payloads


class KfPayload(KfModel):
    """Base of the typed per-msgtype payloads (the object stored under the msgtype key)."""


class TextPayload(KfPayload):
    content: str | None = None
    menu_id: str | None = None  # set when the text comes from clicking a msgmenu "click" entry


class MediaPayload(KfPayload):
    """image / voice / video / file: fetch the bytes with media/get (media ids live 3 days)."""

    media_id: str | None = None


class LocationPayload(KfPayload):
    latitude: float | None = None
    longitude: float | None = None
    name: str | None = None
    address: str | None = None


class LinkPayload(KfPayload):
    title: str | None = None
    desc: str | None = None
    url: str | None = None
    pic_url: str | None = None


class BusinessCardPayload(KfPayload):
    userid: str | None = None


class MiniprogramPayload(KfPayload):
    title: str | None = None
    appid: str | None = None
    pagepath: str | None = None
    thumb_media_id: str | None = None


class MsgMenuPayload(KfPayload):
    head_content: str | None = None
    # entries look like {"type": "click", "click": {"id": ..., "content": ...}}; kept as dicts
    list: builtins.list[dict[str, Any]] = _field(default_factory=builtins.list, convert=_dict_list)
    tail_content: str | None = None


class ChannelsShopProductPayload(KfPayload):
    # The image keys are spelled two ways across sources; accept either (the long one first).
    product_id: str | None = None
    head_image: str | None = _field(default=None, keys=("head_image", "head_img"))
    title: str | None = None
    sales_price: str | None = None  # price in fen, as a string
    shop_nickname: str | None = None
    shop_head_image: str | None = _field(default=None, keys=("shop_head_image", "shop_head_img"))


class ChannelsShopOrderPayload(KfPayload):
    order_id: str | None = None
    product_titles: str | None = None
    price_wording: str | None = None
    state: str | None = None
    image_url: str | None = None
    shop_nickname: str | None = None


class MergedMsgItem(KfModel):
    """One forwarded message inside a merged_msg (chat history)."""

    send_time: int | None = None
    msgtype: str | None = None
    sender_name: str | None = None
    # a JSON document encoded as a string, shaped like {"msgtype": "text", "text": {...}}
    msg_content: str | None = _field(default=None, convert=_opt_json_text)

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

    def as_item(self) -> SyncItem | None:
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
    title: str | None = None
    item: builtins.list[MergedMsgItem] = _field(default_factory=builtins.list, convert=_model_list(MergedMsgItem))


class ChannelsPayload(KfPayload):
    sub_type: int | None = None  # 1 video-account post, 2 live, 3 video-account card
    nickname: str | None = None
    title: str | None = None  # only for sub_type 1


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
    open_kfid: str | None = None
    external_userid: str | None = None


class WechatChannels(KfModel):
    nickname: str | None = None  # for scene 1-3
    shop_nickname: str | None = None  # for scene 4-5
    scene: int | None = None  # 1 homepage, 2 live product list, 3 showcase, 4 product, 5 order


class EnterSessionEvent(KfEvent):
    scene: str | None = None
    scene_param: str | None = None
    welcome_code: str | None = None  # single use, expires in about 20 s
    wechat_channels: WechatChannels | None = _field(default=None, convert=_opt_model(WechatChannels))

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
    fail_msgid: str | None = None
    fail_type: int | None = None


class ServicerStatusChangeEvent(KfEvent):
    servicer_userid: str | None = None
    status: int | None = None  # see ServicerStatus
    stop_type: int | None = None  # when stopped: 0 stopped, 1 suspended


class SessionStatusChangeEvent(KfEvent):
    change_type: int | None = None  # see SessionChangeType
    old_servicer_userid: str | None = None
    new_servicer_userid: str | None = None
    msg_code: str | None = None  # for send_msg_on_event (change types 1 and 3)


class UserRecallMsgEvent(KfEvent):
    recall_msgid: str | None = None


class ServicerRecallMsgEvent(KfEvent):
    recall_msgid: str | None = None
    servicer_userid: str | None = None


class RejectCustomerMsgSwitchChangeEvent(KfEvent):
    servicer_userid: str | None = None
    reject_switch: int | None = None  # 1 servicer rejects the customer's messages, 0 lifted


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


class SyncItem(KfModel):
    """One element of sync_msg ``msg_list``. Build it with ``parse_item``.

    ``open_kfid`` / ``external_userid`` are the effective values: for events they are read from
    inside the event object (WeCom leaves them off the top level there).
    ``payload`` is the typed model for known msgtypes (the event model for known events) and the
    untouched dict otherwise. ``event`` is set for every msgtype == "event" item (a plain
    ``KfEvent`` for unknown event types). ``raw`` is the item exactly as received.
    """

    # read from the item's top level
    msgid: str = ""
    open_kfid: str | None = None
    external_userid: str | None = None
    send_time: int | None = None
    origin: int | None = None  # see Origin
    servicer_userid: str | None = None  # sender, for origin 5
    msgtype: str = ""

    # set by the parser
    payload: KfPayload | KfEvent | dict[str, Any] | None = _field(default=None, read=False)
    event: KfEvent | None = _field(default=None, read=False)
    raw: dict[Any, Any] = _field(default_factory=dict, read=False, shown=False)
    malformed: bool = _field(default=False, read=False)

    @classmethod
    def parse(cls, raw: Any) -> SyncItem:
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
        return SyncItem(malformed=True)

    common, clean = _read(SyncItem, raw, strict=False)
    msgtype: str = common.get("msgtype", "")
    malformed = not clean or not msgtype
    body = raw.get(msgtype) if msgtype else None
    payload: KfPayload | KfEvent | dict[str, Any] | None = None
    event: KfEvent | None = None

    if msgtype == "event":
        if isinstance(body, dict):
            etype = body.get("event_type")
            model = EVENT_MODELS.get(etype, KfEvent) if isinstance(etype, str) else KfEvent
            event, clean = _parse_lenient(model, body)
            malformed = malformed or not clean or not event.event_type
            # unknown event types: the whole object stays available as a dict
            payload = event if model is not KfEvent else body
            common["open_kfid"] = event.open_kfid or common.get("open_kfid")
            common["external_userid"] = event.external_userid or common.get("external_userid")
        else:
            malformed = True
    elif msgtype in PAYLOAD_MODELS:
        if isinstance(body, dict):
            payload, clean = _parse_lenient(PAYLOAD_MODELS[msgtype], body)
            malformed = malformed or not clean
        else:
            malformed = True
    elif isinstance(body, dict):
        payload = body  # unknown msgtype (meeting, schedule, note, future ones)

    return SyncItem(**common, payload=payload, event=event, raw=raw, malformed=malformed)


def parse_item(raw: Any) -> SyncItem:
    """Parse one sync_msg item. Never raises: unusable parts leave ``malformed=True`` and the
    input is always available as ``item.raw``."""
    try:
        return _parse_item(raw)
    except Exception:  # pragma: no cover - last resort so one odd item cannot stop a batch
        return SyncItem(raw=raw if isinstance(raw, dict) else {}, malformed=True)


def parse_items(items: Any) -> builtins.list[SyncItem]:
    """Parse a ``msg_list``. A non-list input gives an empty list."""
    if not isinstance(items, (builtins.list, tuple)):
        return []
    return [parse_item(entry) for entry in items]
