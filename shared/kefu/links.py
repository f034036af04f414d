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

A warm container answers a link it has seen from memory (LinkMemory), and the funnel count of a
link can wait until the answer is out (LinkService.flush_counts): a known link then costs no
round trip before its answer.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
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
    counted: bool  # the funnel counter took it (or, with deferred counts, it waits for flush_counts)

    def body(self, corp_id: str) -> dict[str, str]:
        return {"url": self.url, "scene": self.scene, "scene_param": self.scene_param,
                "open_kfid": self.open_kfid, "corp_id": corp_id}


MEMORY_ENTRIES = 1024  # (account, scene) links a container keeps: ~0.5 MB at most
MEMORY_SECONDS = 300.0  # then the stored item is read again, so a hand edit of it shows


class LinkMemory:
    """The links a container has answered: (open_kfid, scene) -> WeCom's URL as stored.

    Kefu never changes or deletes a stored link (put_first is conditional and nothing else writes
    the item), so a remembered URL stays right. Two bounds all the same: at most ``max_entries``
    pairs, the least recently used dropped first (scenes are open-ended unless LinkScenes lists
    them), and an entry older than ``max_age`` seconds is read again from the table, so an
    operator who deletes or replaces a link item by hand is followed by every warm container
    within that time (browsers and CDNs keep an answer for its own max-age anyway). Only stored
    URLs are remembered, never a miss or a refusal.
    """

    def __init__(self, max_entries: int = MEMORY_ENTRIES, max_age: float = MEMORY_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._max_entries = max_entries
        self._max_age = max_age
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[str, str], tuple[str, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, open_kfid: str, scene: str) -> str | None:
        key = (open_kfid, scene)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if self._clock() - entry[1] >= self._max_age:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return entry[0]

    def put(self, open_kfid: str, scene: str, url: str) -> None:
        if self._max_entries <= 0:
            return
        key = (open_kfid, scene)
        with self._lock:
            self._entries[key] = (url, self._clock())
            self._entries.move_to_end(key)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)


class LinkService:
    """One stored URL per (open_kfid, scene); kf/add_contact_way only when none is stored yet.

    Two first requests racing for a scene may both ask WeCom, but the conditional put lets one
    URL win and both answer it (the other link WeCom made is never handed out). WeCom failures
    become answers: 95000/95004 (not an account of the corp) 404, busy or no answer 503 (the
    frontend asks again; nothing is retried here), anything else 502.

    With a ``memory``, a link answered before is answered without reading the table. With
    ``defer_counts``, each answered link adds one to a pending count instead of being written
    at once, and ``flush_counts`` writes them (one write per account, scene and day pending): the
    caller flushes before the process can stop (deployed: right after the answer has gone out),
    so every answered link is counted exactly as before, only later in the invocation.
    """

    def __init__(self, store: LinkStoreLike, add_contact_way: Callable[[str, str], str], directory: AccountsLike,
                 clock: Callable[[], float] = time.time, on_count_failed: Callable[[Exception], None] | None = None,
                 timezone: str = "Asia/Shanghai", daily_new_limit: int = 0, memory: LinkMemory | None = None,
                 defer_counts: bool = False) -> None:
        self._store = store
        self._add_contact_way = add_contact_way
        self._directory = directory
        self._clock = clock
        self._on_count_failed = on_count_failed
        self._timezone = timezone
        self._daily_new_limit = daily_new_limit  # 0: no limit
        self._memory = memory
        self._defer_counts = defer_counts
        self._pending: dict[tuple[str, str, str], int] = {}  # (open_kfid, scene, day) -> links not yet counted
        self._pending_lock = threading.Lock()

    def issue(self, request: LinkRequest) -> IssuedLink:
        ref = request.account
        open_kfid = ref.open_kfid or self._asking_wecom(self._directory.default)
        created = False
        base = self._memory.get(open_kfid, request.scene) if self._memory is not None else None
        if base is None:
            base = self._store.get(open_kfid, request.scene)
            if base is None:
                if not ref.verified and ref.open_kfid is not None \
                        and not self._asking_wecom(lambda: self._directory.knows(open_kfid)):
                    raise LinkError(404, "unknown_account", f"{open_kfid} is not a kf account of this corp")
                self._take_new_link()
                fresh = self._asking_wecom(lambda: self._add_contact_way(open_kfid, request.scene))
                base = self._store.put_first(open_kfid, request.scene, fresh)
                created = True
            if self._memory is not None:
                self._memory.put(open_kfid, request.scene, base)
        day = day_of(self._clock(), self._timezone)
        if self._defer_counts:
            with self._pending_lock:
                key = (open_kfid, request.scene, day)
                self._pending[key] = self._pending.get(key, 0) + 1
            counted = True
        else:
            counted = self._count(open_kfid, request.scene, day, 1)
        return IssuedLink(with_scene_param(base, request.scene_param), base, open_kfid, request.scene,
                          request.scene_param, created, counted)

    def flush_counts(self) -> int:
        """Write the pending counts (deferred mode): one write per (account, scene, day), adding
        every link answered for it since the last flush. Returns how many writes failed (each
        reported to ``on_count_failed``; those links stay uncounted, as a failed count always did)."""
        with self._pending_lock:
            pending, self._pending = self._pending, {}
        return sum(not self._count(open_kfid, scene, day, n) for (open_kfid, scene, day), n in pending.items())

    def _count(self, open_kfid: str, scene: str, day: str, count: int) -> bool:
        try:
            self._store.count_issued(open_kfid, scene, day, count)
            return True
        except Exception as exc:  # the link matters more than its count
            if self._on_count_failed is not None:
                self._on_count_failed(exc)
            return False

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
