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

import functools
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar
from urllib.parse import quote

from kefu.stats import day_of
from kefu.wecom.errors import ACCOUNT_NOT_FOUND, INVALID_OPEN_KFID

SCENE_MAX_BYTES = 32
SCENE_PARAM_MAX_BYTES = 128
SCENE_RE = re.compile(r"[0-9A-Za-z_-]+")
OPEN_KFID_RE = re.compile(r"wk[0-9A-Za-z_-]{6,62}")
FORMATS = {"json": "application/json", "svg": "image/svg+xml", "png": "image/png"}
QR_MIN_SIZE = 64
QR_MAX_SIZE = 1024
QR_BORDER = 4  # the quiet zone the QR standard asks for, in modules
QR_ERROR = "m"  # ~15% of the symbol may be damaged (posters get scuffed); segno raises it when it fits
UNKNOWN_ACCOUNT_ERRORS = frozenset({INVALID_OPEN_KFID, ACCOUNT_NOT_FOUND})
DIRECTORY_TTL = 600.0  # seconds a kf/account/list answer is trusted
DIRECTORY_MISS_INTERVAL = 60.0  # at most one extra listing per minute for unknown open_kfids
T = TypeVar("T")


class LinkError(Exception):
    """A request Kefu will not answer with a link: HTTP status, short code, what to fix."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(f"{status} {error}: {message}")
        self.status = status
        self.error = error
        self.message = message


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
            if not OPEN_KFID_RE.fullmatch(open_kfid):
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


def _byte_len(value: str) -> int | None:
    try:
        return len(value.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate cannot be sent anywhere
        return None


def parse_request(query: Mapping[str, str] | None, config: LinkConfig) -> LinkRequest:
    """Check every query parameter; raise LinkError (400/403/404) naming the one at fault.

    Unknown parameters (cache busters, utm_*) are ignored. Repeated parameters arrive joined by
    commas (API Gateway's way), which no valid scene, format or size contains.
    """
    query = query or {}
    scene = query.get("scene", "")
    if not scene or len(scene) > SCENE_MAX_BYTES or not SCENE_RE.fullmatch(scene):
        raise LinkError(400, "invalid_scene",
                        "scene is required: 1 to 32 characters from 0-9, a-z, A-Z, '_' and '-'")
    scene_param = query.get("scene_param", "")
    size_bytes = _byte_len(scene_param)
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
    if OPEN_KFID_RE.fullmatch(account):
        return AccountRef(account, False)
    known = ", ".join(sorted(config.aliases)) or "none configured"
    raise LinkError(404, "unknown_account", f"account must be an alias ({known}) or an open_kfid of this corp")


def with_scene_param(url: str, scene_param: str) -> str:
    """The link to hand out: WeCom's URL plus the percent-encoded scene_param, when there is one."""
    if not scene_param:
        return url
    return f"{url}{'&' if '?' in url else '?'}scene_param={quote(scene_param, safe='')}"


# -- QR codes ------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=128)  # a page's QR code is asked for again and again: render it once
def render_qr(url: str, fmt: str, size: int) -> bytes:
    """The QR code of ``url`` as SVG (exactly size x size, scalable) or PNG (the largest whole
    number of pixels per module that fits in size, at least one). segno is imported here only:
    JSON requests never pay for it."""
    import io

    import segno

    qr = segno.make(url, error=QR_ERROR, micro=False)
    buffer = io.BytesIO()
    if fmt == "svg":
        qr.save(buffer, kind="svg", border=QR_BORDER, xmldecl=False, omitsize=True, light="#fff",
                svgclass=None, lineclass=None)
        # segno gives a viewBox in modules; fix the display size so <img> and CSS agree.
        return buffer.getvalue().replace(
            b"<svg ", f'<svg width="{size}" height="{size}" shape-rendering="crispEdges" '.encode(), 1)
    modules = qr.symbol_size(scale=1, border=QR_BORDER)[0]
    qr.save(buffer, kind="png", scale=max(1, size // modules), border=QR_BORDER)
    return buffer.getvalue()


# -- the corp's accounts -------------------------------------------------------------------------

class AccountDirectory:
    """The corp's kf accounts from kf/account/list, kept for DIRECTORY_TTL in the container.

    Used for two things only: the default account when none is configured (the one account the
    app manages), and checking a caller-supplied open_kfid before asking WeCom for a link, so
    made-up ids cost at most one listing per DIRECTORY_MISS_INTERVAL instead of one
    add_contact_way each.
    """

    def __init__(self, fetch: Callable[[], list[dict[str, Any]]], ttl: float = DIRECTORY_TTL,
                 miss_interval: float = DIRECTORY_MISS_INTERVAL, clock: Callable[[], float] = time.monotonic) -> None:
        self._fetch = fetch
        self._ttl = ttl
        self._miss_interval = miss_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._accounts: dict[str, bool] | None = None  # open_kfid -> this app manages it
        self._fetched_at = float("-inf")

    def _listing(self, refresh: bool = False) -> dict[str, bool]:
        with self._lock:
            now = self._clock()
            stale = self._accounts is None or now - self._fetched_at >= self._ttl
            if stale or (refresh and now - self._fetched_at >= self._miss_interval):
                self._accounts = {str(a["open_kfid"]): a.get("manage_privilege", True) is not False
                                  for a in self._fetch()}
                self._fetched_at = now
            return self._accounts or {}

    def default(self) -> str:
        managed = [kfid for kfid, mine in self._listing().items() if mine]
        if len(managed) == 1:
            return managed[0]
        raise LinkError(404, "no_default_account",
                        f"this app manages {len(managed)} kf accounts: pass account=<alias or open_kfid>, "
                        "or set the LinkAccounts parameter (its first entry is the default)")

    def knows(self, open_kfid: str) -> bool:
        return open_kfid in self._listing() or open_kfid in self._listing(refresh=True)


# -- issuing -------------------------------------------------------------------------------------

class LinkStoreLike(Protocol):
    def get(self, open_kfid: str, scene: str) -> str | None: ...
    def put_first(self, open_kfid: str, scene: str, url: str) -> str: ...
    def count_issued(self, open_kfid: str, scene: str, day: str, count: int = 1) -> None: ...


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

    def __init__(self, store: LinkStoreLike, add_contact_way: Callable[[str, str], str], directory: AccountDirectory,
                 clock: Callable[[], float] = time.time, on_count_failed: Callable[[Exception], None] | None = None,
                 timezone: str = "Asia/Shanghai") -> None:
        self._store = store
        self._add_contact_way = add_contact_way
        self._directory = directory
        self._clock = clock
        self._on_count_failed = on_count_failed
        self._timezone = timezone

    def issue(self, request: LinkRequest) -> IssuedLink:
        ref = request.account
        open_kfid = ref.open_kfid or self._asking_wecom(self._directory.default)
        base = self._store.get(open_kfid, request.scene)
        created = False
        if base is None:
            if not ref.verified and ref.open_kfid is not None \
                    and not self._asking_wecom(lambda: self._directory.knows(open_kfid)):
                raise LinkError(404, "unknown_account", f"{open_kfid} is not a kf account of this corp")
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
