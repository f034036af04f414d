"""Scene-tagged contact links: the rules behind GET /links, kept free of AWS and HTTP.

A request names a ``scene`` (where the customer starts: a product page, a poster), optionally a
``scene_param`` (free text that comes back in enter_session), an ``account`` and an output
format. Everything the caller sent is checked here before anything else happens, so an invalid
request costs neither a WeCom call nor a write.

WeCom's rules: a scene is at most 32 bytes of [0-9A-Za-z_-] (Kefu also requires one: a link
without a scene cannot be attributed); a scene_param is at most 128 bytes before percent-encoding
and is appended to the link as ``&scene_param=...`` - it is never sent to WeCom, so one stored
link per (account, scene) serves every scene_param.

Accounts: ``account`` is an alias from the configuration, a configured open_kfid, or any other
open_kfid of the corp (checked against kf/account/list, cached); without it the first configured
account, or - with none configured - the one account the app manages.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar
from urllib.parse import quote

from kefu.errors import HttpError
from kefu.ids import SCENE_PARAM_MAX_BYTES, byte_len, is_open_kfid, is_scene
from kefu.qr import QR_MAX_SIZE, QR_MIN_SIZE
from kefu.stats import day_of
from kefu.wecom.errors import ACCOUNT_NOT_FOUND, INVALID_OPEN_KFID

FORMATS = {"json": "application/json", "svg": "image/svg+xml", "png": "image/png"}
UNKNOWN_ACCOUNT_ERRORS = frozenset({INVALID_OPEN_KFID, ACCOUNT_NOT_FOUND})
T = TypeVar("T")


class LinkError(HttpError):
    """A request Kefu will not answer with a link."""


# -- configuration -------------------------------------------------------------------------------

@dataclass(frozen=True)
class LinkConfig:
    aliases: Mapping[str, str]  # alias -> open_kfid
    accounts: tuple[str, ...]  # configured open_kfids, the default first
    scenes: frozenset[str] | None  # None: every valid scene is allowed
    origins: tuple[str, ...]  # CORS origins ("*" = any)
    qr_size: int = 256
    cache_seconds: int = 3600

    @property
    def default_account(self) -> str | None:
        return self.accounts[0] if self.accounts else None

    @classmethod
    def parse(cls, accounts: str = "", scenes: str = "", origins: str = "", qr_size: int = 256,
              cache_seconds: int = 3600) -> LinkConfig:
        """Read the comma-separated settings (their syntax was checked by LinksSettings)."""
        from kefu.config import ConfigError

        aliases: dict[str, str] = {}
        ordered: list[str] = []
        for entry in filter(None, (e.strip() for e in accounts.split(","))):
            alias, _, open_kfid = entry.rpartition("=")
            if not is_open_kfid(open_kfid):
                raise ConfigError(f"KEFU_LINK_ACCOUNTS: {open_kfid!r} is not an open_kfid (wk...)")
            if alias:
                aliases[alias] = open_kfid
            if open_kfid not in ordered:
                ordered.append(open_kfid)
        allowed = frozenset(filter(None, (s.strip() for s in scenes.split(","))))
        return cls(
            aliases=aliases,
            accounts=tuple(ordered),
            scenes=allowed or None,
            origins=tuple(filter(None, (o.strip() for o in origins.split(",")))),
            qr_size=qr_size,
            cache_seconds=cache_seconds,
        )

    @classmethod
    def from_settings(cls, settings: Any) -> LinkConfig:
        return cls.parse(settings.link_accounts, settings.link_scenes, settings.link_cors_origins,
                         settings.link_qr_size, settings.link_cache_seconds)


# -- the request ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class AccountRef:
    open_kfid: str | None  # None: the default account, to be discovered
    verified: bool  # configured (trusted) rather than a caller-supplied open_kfid


@dataclass(frozen=True)
class LinkRequest:
    scene: str
    scene_param: str
    account: AccountRef
    format: str
    size: int


def parse_request(query: Mapping[str, str] | None, config: LinkConfig) -> LinkRequest:
    """Check every query parameter; raise LinkError (400/403/404) naming the one at fault.

    Unknown parameters (cache busters, utm_*) are ignored. Repeated parameters arrive joined by
    commas (API Gateway's way), which no valid scene, format or size contains.
    """
    query = query or {}
    scene = query.get("scene", "")
    if not is_scene(scene):
        raise LinkError(400, "invalid_scene",
                        "scene is required: 1 to 32 characters from 0-9, a-z, A-Z, '_' and '-'")
    scene_param = query.get("scene_param", "")
    size_bytes = byte_len(scene_param)
    if size_bytes is None or size_bytes > SCENE_PARAM_MAX_BYTES:
        raise LinkError(400, "invalid_scene_param",
                        f"scene_param must be valid text of at most {SCENE_PARAM_MAX_BYTES} bytes in UTF-8 "
                        "(before URL encoding)")
    fmt = query.get("format") or "json"
    if fmt not in FORMATS:
        raise LinkError(400, "invalid_format", "format must be json, svg or png")
    raw_size = query.get("size")
    if raw_size is None or raw_size == "":
        size = config.qr_size
    elif raw_size.isascii() and raw_size.isdigit() and len(raw_size) <= 5 and QR_MIN_SIZE <= int(raw_size) <= QR_MAX_SIZE:
        size = int(raw_size)
    else:
        raise LinkError(400, "invalid_size",
                        f"size is the QR code's width in pixels, a whole number from {QR_MIN_SIZE} to {QR_MAX_SIZE}")
    if config.scenes is not None and scene not in config.scenes:
        raise LinkError(403, "scene_not_allowed", f"scene {scene!r} is not in this deployment's list of scenes")
    return LinkRequest(scene, scene_param, resolve_account(query.get("account") or None, config), fmt, size)


def resolve_account(account: str | None, config: LinkConfig) -> AccountRef:
    if account is None:
        return AccountRef(config.default_account, config.default_account is not None)
    if account in config.aliases:
        return AccountRef(config.aliases[account], True)
    if account in config.accounts:
        return AccountRef(account, True)
    if is_open_kfid(account):
        return AccountRef(account, False)
    known = ", ".join(sorted(config.aliases)) or "none configured"
    raise LinkError(404, "unknown_account", f"account must be an alias ({known}) or an open_kfid of this corp")


def with_scene_param(url: str, scene_param: str) -> str:
    """The link to hand out: WeCom's URL plus the percent-encoded scene_param, when there is one."""
    if not scene_param:
        return url
    return f"{url}{'&' if '?' in url else '?'}scene_param={quote(scene_param, safe='')}"


# -- issuing -------------------------------------------------------------------------------------

class AccountsLike(Protocol):
    """The corp's accounts (kefu.accounts.AccountDirectory deployed)."""

    def default(self) -> str: ...

    def knows(self, open_kfid: str) -> bool: ...


class LinkStoreLike(Protocol):
    def get(self, open_kfid: str, scene: str) -> str | None: ...
    def put_first(self, open_kfid: str, scene: str, url: str) -> str: ...
    def count_issued(self, open_kfid: str, scene: str, day: str, count: int = 1) -> None: ...
    def take_new_link(self, day: str, limit: int) -> bool: ...


@dataclass(frozen=True)
class IssuedLink:
    url: str  # what the customer opens: WeCom's URL plus the scene_param
    base_url: str  # WeCom's URL as stored
    open_kfid: str
    scene: str
    scene_param: str
    created: bool  # this request asked WeCom (no stored URL yet)
    counted: bool  # the funnel counter took it

    def body(self, corp_id: str) -> dict[str, str]:
        return {"url": self.url, "scene": self.scene, "scene_param": self.scene_param,
                "open_kfid": self.open_kfid, "corp_id": corp_id}


class LinkService:
    """One stored URL per (open_kfid, scene); kf/add_contact_way only when none is stored yet.

    Two first requests racing for a scene may both ask WeCom, but the conditional put lets one
    URL win and both answer it (the other link WeCom made is never handed out). WeCom failures
    become answers: 95000/95004 (not an account of the corp) 404, busy or no answer 503 (the
    frontend asks again; nothing is retried here), anything else 502.
    """

    def __init__(self, store: LinkStoreLike, add_contact_way: Callable[[str, str], str], directory: AccountsLike,
                 clock: Callable[[], float] = time.time, on_count_failed: Callable[[Exception], None] | None = None,
                 timezone: str = "Asia/Shanghai", daily_new_limit: int = 0) -> None:
        self._store = store
        self._add_contact_way = add_contact_way
        self._directory = directory
        self._clock = clock
        self._on_count_failed = on_count_failed
        self._timezone = timezone
        self._daily_new_limit = daily_new_limit  # 0: no limit

    def issue(self, request: LinkRequest) -> IssuedLink:
        ref = request.account
        open_kfid = ref.open_kfid or self._asking_wecom(self._directory.default)
        base = self._store.get(open_kfid, request.scene)
        created = False
        if base is None:
            if not ref.verified and ref.open_kfid is not None \
                    and not self._asking_wecom(lambda: self._directory.knows(open_kfid)):
                raise LinkError(404, "unknown_account", f"{open_kfid} is not a kf account of this corp")
            self._take_new_link()
            fresh = self._asking_wecom(lambda: self._add_contact_way(open_kfid, request.scene))
            base = self._store.put_first(open_kfid, request.scene, fresh)
            created = True
        counted = True
        try:
            self._store.count_issued(open_kfid, request.scene, day_of(self._clock(), self._timezone))
        except Exception as exc:  # the link matters more than its count
            counted = False
            if self._on_count_failed is not None:
                self._on_count_failed(exc)
        return IssuedLink(with_scene_param(base, request.scene_param), base, open_kfid, request.scene,
                          request.scene_param, created, counted)

    def _take_new_link(self) -> None:
        """Each new (account, scene) is a contact way made at WeCom, and /links is public: cap
        how many a day may make, so an anonymous caller cannot mint them without end. Links made
        already are served whatever the count."""
        limit = self._daily_new_limit
        if limit and not self._store.take_new_link(day_of(self._clock(), self._timezone), limit):
            raise LinkError(429, "too_many_new_links",
                            f"{limit} new links were made today (LinkDailyNewLimit); links for scenes "
                            "already used are still served, new scenes can be linked tomorrow")

    @staticmethod
    def _asking_wecom(call: Callable[[], T]) -> T:
        """Run a WeCom call, turning its failure into the answer the caller gets."""
        from kefu.wecom.errors import WeComError

        try:
            return call()
        except WeComError as exc:
            if exc.errcode in UNKNOWN_ACCOUNT_ERRORS:
                raise LinkError(404, "unknown_account", "WeCom does not know this account (errcode "
                                f"{exc.errcode}); pass an alias or an open_kfid of this corp") from None
            if exc.transient:
                raise LinkError(503, "wecom_unavailable", "WeCom is busy or did not answer; try again shortly") from None
            raise LinkError(502, "wecom_error", f"WeCom refused the request (errcode {exc.errcode})") from None
