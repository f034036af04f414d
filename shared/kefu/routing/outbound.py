"""What Kefu says: the message kinds the routing rules may hold, checked against WeCom's limits
when the rules load, and turned into send_msg / send_msg_on_event payloads when sent.

In the rules a message is a plain string (a text) or a mapping with exactly one kind:

    text: "..."                                  # up to 2048 bytes
    msgmenu: {head, items: [...], tail}          # items: {click: {id, content}}, {view: {url, content}},
                                                 # {miniprogram: {appid, pagepath, content}}, {text: "..."}
    link: {title, desc, url, thumb}              # 图文; thumb is an image asset
    miniprogram: {appid, title, pagepath, thumb}
    image | video | file: <asset>
    business_card: {userid}
    ca_link: {link_url}                          # a 获客链接 (https://work.weixin.qq.com/ca/...)

An asset is a path relative to the rules file (it ships with the route function) or
``{s3: assets/<key>}`` in the stack's media bucket; Kefu uploads it with media/upload and reuses
the media_id while it lives (kefu.routing.assets). Lengths are WeCom's, in UTF-8 bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

# Which kinds each way of sending takes (WeCom: a code of send_msg_on_event takes text or a menu,
# a pool code text only; send_msg takes every kind).
ANY_KIND = frozenset({"text", "msgmenu", "link", "miniprogram", "image", "video", "file", "business_card", "ca_link"})
ON_EVENT_KINDS = frozenset({"text", "msgmenu"})
TEXT_ONLY = frozenset({"text"})
MEDIA_KINDS = ("image", "video", "file")
MENU_MAX_ITEMS = 10
S3_PREFIX = "assets/"

# media/upload's limits (bytes) and the files each kind takes.
ASSET_LIMITS = {"image": 10 * 1024 * 1024, "video": 10 * 1024 * 1024, "file": 20 * 1024 * 1024}
ASSET_MIN = 6  # WeCom: every file must be larger than 5 bytes
IMAGE_SUFFIXES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png"}
VIDEO_SUFFIXES = {".mp4": "video/mp4"}


def _bytes(limit: int, minimum: int = 0) -> Callable[[str], str]:
    def check(value: str) -> str:
        size = len(value.encode("utf-8"))
        if size > limit:
            raise ValueError(f"{size} bytes in UTF-8, WeCom takes at most {limit}")
        if size < minimum:
            raise ValueError("must not be empty")
        return value

    return check


def _http_url(value: str) -> str:
    if not value.startswith(("https://", "http://")):
        raise ValueError("must be an http(s) URL")
    return value


Text2048 = Annotated[str, AfterValidator(_bytes(2048, 1))]
Url = Annotated[str, AfterValidator(_bytes(2048, 1)), AfterValidator(_http_url)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# -- assets ------------------------------------------------------------------------------------

class AssetError(Exception):
    """An asset that cannot be sent (missing, or not what WeCom takes); the message names it."""


class Asset(_Strict):
    """A file Kefu uploads: ``path`` relative to the rules file, or ``s3`` key in the media bucket
    under ``S3_PREFIX`` (the route function may read only there)."""

    S3_PREFIX: ClassVar[str] = S3_PREFIX
    WHAT: ClassVar[str] = "asset"

    path: str | None = None
    s3: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return {"path": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one(self) -> Asset:
        prefix = self.S3_PREFIX
        if (self.path is None) == (self.s3 is None):
            raise ValueError(f"give a file path (relative to the rules file) or {{s3: {prefix}<key>}}")
        if self.s3 is not None and (not self.s3.startswith(prefix) or self.s3 == prefix):
            raise ValueError(f"an S3 {self.WHAT}'s key starts with {prefix!r} (the route function may read only those)")
        return self

    @property
    def name(self) -> str:
        return Path(self.path or self.s3 or "asset").name

    def key(self) -> str:
        return f"s3:{self.s3}" if self.s3 else f"file:{self.path}"


def content_type(kind: str, name: str) -> str:
    suffix = Path(name).suffix.lower()
    if kind == "image":
        return IMAGE_SUFFIXES.get(suffix, "image/jpeg")
    if kind == "video":
        return "video/mp4"
    return "application/octet-stream"


def check_asset(kind: str, data: bytes, name: str) -> str | None:
    """What is wrong with ``data`` as a ``kind`` asset for WeCom, or None."""
    if len(data) < ASSET_MIN:
        return f"{name}: WeCom takes files of more than 5 bytes"
    if len(data) > ASSET_LIMITS[kind]:
        return f"{name}: {len(data)} bytes, WeCom takes a {kind} of at most {ASSET_LIMITS[kind]}"
    suffix = Path(name).suffix.lower()
    if kind == "image":
        if suffix not in IMAGE_SUFFIXES or not (data.startswith(b"\xff\xd8\xff") or data.startswith(b"\x89PNG\r\n\x1a\n")):
            return f"{name}: an image must be a JPG or PNG file"
    if kind == "video" and (suffix not in VIDEO_SUFFIXES or data[4:8] != b"ftyp"):
        return f"{name}: a video must be an MP4 file"
    return None


# -- the kinds ---------------------------------------------------------------------------------

CLICK_ID_MAX = 64  # WeCom's reference says 128 bytes, an SDK 64: the stricter holds under both


class MenuClick(_Strict):
    id: Annotated[str, AfterValidator(_bytes(CLICK_ID_MAX, 1))]
    content: Annotated[str, AfterValidator(_bytes(128, 1))]


class MenuView(_Strict):
    url: Url
    content: Annotated[str, AfterValidator(_bytes(1024, 1))]


class MenuMiniprogram(_Strict):
    appid: str = Field(min_length=1)
    pagepath: str = Field(min_length=1)
    content: Annotated[str, AfterValidator(_bytes(1024, 1))]


class MenuText(_Strict):
    content: Annotated[str, AfterValidator(_bytes(256, 1))]
    no_newline: bool = False

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return {"content": value} if isinstance(value, str) else value


class MenuItem(_Strict):
    """One line of a menu: exactly one of click, view, miniprogram, text."""

    click: MenuClick | None = None
    view: MenuView | None = None
    miniprogram: MenuMiniprogram | None = None
    text: MenuText | None = None

    @model_validator(mode="after")
    def _one(self) -> MenuItem:
        if sum(x is not None for x in (self.click, self.view, self.miniprogram, self.text)) != 1:
            raise ValueError("a menu item is exactly one of click, view, miniprogram, text")
        return self

    def payload(self) -> dict[str, Any]:
        if self.click:
            return {"type": "click", "click": {"id": self.click.id, "content": self.click.content}}
        if self.view:
            return {"type": "view", "view": {"url": self.view.url, "content": self.view.content}}
        if self.miniprogram:
            m = self.miniprogram
            return {"type": "miniprogram", "miniprogram": {"appid": m.appid, "pagepath": m.pagepath, "content": m.content}}
        if self.text is None:  # _one allows no other case
            raise ValueError("a menu item is exactly one of click, view, miniprogram, text")
        return {"type": "text", "text": {"content": self.text.content, "no_newline": int(self.text.no_newline)}}


class Menu(_Strict):
    head: Annotated[str, AfterValidator(_bytes(1024))] = ""
    items: list[MenuItem] = Field(min_length=1, max_length=MENU_MAX_ITEMS)
    tail: Annotated[str, AfterValidator(_bytes(1024))] = ""

    @model_validator(mode="after")
    def _unique_ids(self) -> Menu:
        ids = [item.click.id for item in self.items if item.click]
        if len(ids) != len(set(ids)):
            raise ValueError("click ids must be unique within a menu")
        return self

    def click_ids(self) -> list[str]:
        return [item.click.id for item in self.items if item.click]


class Link(_Strict):
    title: Annotated[str, AfterValidator(_bytes(128, 1))]
    desc: Annotated[str, AfterValidator(_bytes(512))] = ""
    url: Url
    thumb: Asset


class Miniprogram(_Strict):
    appid: str = Field(min_length=1)
    title: Annotated[str, AfterValidator(_bytes(64))] = ""
    pagepath: str = Field(min_length=1)
    thumb: Asset


class BusinessCard(_Strict):
    userid: str = Field(min_length=1, max_length=64)


class CaLink(_Strict):
    link_url: Annotated[str, AfterValidator(_bytes(2048, 1))]

    @model_validator(mode="after")
    def _acquisition_link(self) -> CaLink:
        if not self.link_url.startswith("https://work.weixin.qq.com/ca/"):
            raise ValueError("link_url must be a 获客链接 (https://work.weixin.qq.com/ca/...)")
        return self


KINDS = ("text", "msgmenu", "link", "miniprogram", "image", "video", "file", "business_card", "ca_link")

MediaId = Callable[[str, Asset], str]  # (kind, asset) -> a live media_id


class Message(_Strict):
    """One message Kefu may send; exactly one kind is set."""

    text: Text2048 | None = None
    msgmenu: Menu | None = None
    link: Link | None = None
    miniprogram: Miniprogram | None = None
    image: Asset | None = None
    video: Asset | None = None
    file: Asset | None = None
    business_card: BusinessCard | None = None
    ca_link: CaLink | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return {"text": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one(self) -> Message:
        kinds = [k for k in KINDS if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(f"a message is a text or a mapping with exactly one of {', '.join(KINDS)}")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in KINDS if getattr(self, k) is not None)

    def assets(self) -> list[tuple[str, Asset]]:
        """The files this message needs uploaded: (media kind, asset)."""
        if self.link:
            return [("image", self.link.thumb)]
        if self.miniprogram:
            return [("image", self.miniprogram.thumb)]
        return [(kind, asset) for kind in MEDIA_KINDS if (asset := getattr(self, kind)) is not None]

    def click_ids(self) -> list[str]:
        return self.msgmenu.click_ids() if self.msgmenu else []

    def payload(self, media_id: MediaId | None = None) -> dict[str, Any]:
        """The message as WeCom takes it: {"msgtype": kind, kind: {...}}; assets become media ids."""
        kind = self.kind

        def upload(media_kind: str, asset: Asset) -> str:
            if media_id is None:
                raise ValueError(f"a {kind} message needs its assets uploaded")
            return media_id(media_kind, asset)

        body: dict[str, Any]
        if self.text is not None:
            body = {"content": self.text}
        elif self.msgmenu:
            body = {"list": [item.payload() for item in self.msgmenu.items]}
            if self.msgmenu.head:
                body["head_content"] = self.msgmenu.head
            if self.msgmenu.tail:
                body["tail_content"] = self.msgmenu.tail
        elif self.link:
            body = {"title": self.link.title, "url": self.link.url, "thumb_media_id": upload("image", self.link.thumb)}
            if self.link.desc:
                body["desc"] = self.link.desc
        elif self.miniprogram:
            m = self.miniprogram
            body = {"appid": m.appid, "pagepath": m.pagepath, "thumb_media_id": upload("image", m.thumb)}
            if m.title:
                body["title"] = m.title
        elif self.business_card:
            body = {"userid": self.business_card.userid}
        elif self.ca_link:
            body = {"link_url": self.ca_link.link_url}
        else:
            asset = getattr(self, kind)
            body = {"media_id": upload(kind, asset)}
        return {"msgtype": kind, kind: body}


def text(content: str) -> Message:
    return Message(text=content)


def only(kinds: frozenset[str], how: str) -> Callable[[Message | None], Message | None]:
    """A validator: the message must be of ``kinds`` (``how`` says which send forces it)."""

    def check(message: Message | None) -> Message | None:
        if message is not None and message.kind not in kinds:
            raise ValueError(f"{how} takes only {' or '.join(sorted(kinds))}, not {message.kind}")
        return message

    return check


OnEventMessage = Annotated[Message, AfterValidator(only(ON_EVENT_KINDS, "a welcome or closing (send_msg_on_event)"))]
PoolMessage = Annotated[Message, AfterValidator(only(TEXT_ONLY, "the queue notice (the pool's send_msg_on_event code)"))]


# -- actions: what a bot keyword or a menu click does ------------------------------------------------

class Handoff(_Strict):
    """To a human: the customer's own scene's servicers, or those of ``scene``."""

    scene: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_bool(cls, value: Any) -> Any:
        if value is True:
            return {}
        if value is False or value is None:
            raise ValueError("handoff is true or {scene: <scene>}; leave it out for no hand-off")
        return value


class UpgradeOffer(_Strict):
    """升级服务: a member (a userid, or ``auto``) or a customer group (a chat_id, or ``auto``).
    ``auto``: the member who served the customer last when the enterprise's upgrade range holds
    them, else the range's first member (or first group)."""

    member: str | None = Field(default=None, min_length=1)
    group: str | None = Field(default=None, min_length=1)
    wording: Annotated[str, AfterValidator(_bytes(1024))] = ""

    @model_validator(mode="after")
    def _one(self) -> UpgradeOffer:
        if (self.member is None) == (self.group is None):
            raise ValueError("an upgrade offer names a member or a group (a userid, a chat_id, or auto)")
        return self


class Action(_Strict):
    """What a bot keyword or a menu click does, in this order: reply, offer 升级服务, then hand
    off or end the session."""

    reply: Message | None = None
    upgrade: UpgradeOffer | None = None
    handoff: Handoff | None = None
    end: bool = False

    @model_validator(mode="after")
    def _something(self) -> Action:
        if self.reply is None and self.upgrade is None and self.handoff is None and not self.end:
            raise ValueError("an action needs at least one of reply, upgrade, handoff, end")
        if self.handoff is not None and self.end:
            raise ValueError("an action hands off or ends the session, not both")
        return self


class UpgradeRule(_Strict):
    """升级服务 offered by the rules themselves: on entry, and/or after a good rating."""

    offer: UpgradeOffer
    on_entry: bool = False
    after_rating: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _when(self) -> UpgradeRule:
        if not self.on_entry and self.after_rating is None:
            raise ValueError("say when: on_entry: true and/or after_rating: <lowest score>")
        return self

