"""The simulator's data: limits, error texts, the records it keeps and small shared helpers."""

from __future__ import annotations

import re
import secrets
import string
from dataclasses import dataclass, field
from typing import Any

DEMO_CORP_ID = "wwkefudemo0000001"
DEMO_CORP_SECRET = "KefuDemoCorpSecret0000000000000000000000000"  # nosec B105 - public demo value
DEMO_TOKEN = "KefuDemoCallbackToken"  # nosec B105 - public demo value
DEMO_AES_KEY = "KefuDemoEncodingAesKey000000000000000000000"
DEMO_AGENT_ID = "1000002"
DEFAULT_EGRESS_IP = "203.0.113.10"

ACCESS_TOKEN_TTL = 7200
CALLBACK_TOKEN_TTL = 600
RETENTION = 3 * 86400
MEDIA_TTL = 3 * 86400
SESSION_WINDOW = 48 * 3600
SEND_BUDGET = 5
WELCOME_CODE_TTL = 20
END_CODE_TTL = 20
REPLY_CODE_TTL = 48 * 3600
MAX_SYNC_LIMIT = 1000
MAX_BODY = 4 * 1024 * 1024
# media/upload takes files up to 20 MB; its body may be that plus the multipart framing, and a
# little more so that a file just over a limit is answered with the errcode, not cut off.
MAX_UPLOAD_BODY = 21 * 1024 * 1024

NEW, BOT, POOL, HUMAN, ENDED = 0, 1, 2, 3, 4
# Transitions the API may make (service_state/trans); 3 -> 3 means "to another servicer".
ALLOWED_TRANSITIONS: dict[int, frozenset[int]] = {
    NEW: frozenset({BOT, POOL, HUMAN, ENDED}),
    BOT: frozenset({POOL, HUMAN, ENDED}),
    POOL: frozenset({HUMAN, ENDED}),
    HUMAN: frozenset({HUMAN, ENDED}),
    ENDED: frozenset(),
}

SEND_MSGTYPES = frozenset(
    {"text", "image", "voice", "video", "file", "link", "miniprogram", "msgmenu", "location", "ca_link",
     "business_card"}
)
MEDIA_MSGTYPES = ("image", "voice", "video", "file")
# media/upload: the smallest size refused (every file must be larger than 5 bytes) and the
# largest size each type takes.
MEDIA_MIN_REFUSED = 5
MEDIA_MAX_SIZE = {"image": 10 * 1024 * 1024, "voice": 2 * 1024 * 1024, "video": 10 * 1024 * 1024,
                  "file": 20 * 1024 * 1024}
VOICE_MAX_SECONDS = 60
# Byte limits of the send payloads (UTF-8 bytes).
TEXT_MAX = 2048
LINK_TITLE_MAX, LINK_DESC_MAX, URL_MAX = 128, 512, 2048
MINIPROGRAM_TITLE_MAX = 64
MENU_HEAD_TAIL_MAX, MENU_MAX_ITEMS = 1024, 10
MENU_CLICK_MAX, MENU_VIEW_CONTENT_MAX, MENU_TEXT_MAX = 128, 1024, 256
# A click id: the reference says up to 128 bytes, an SDK 64; the simulator takes the stricter.
MENU_CLICK_ID_MAX = 64
BUSINESS_CARD_WINDOW = 48 * 3600
UPGRADE_MEMBER, UPGRADE_GROUP = 1, 2
MENU_ITEM_TYPES = frozenset({"click", "view", "miniprogram", "text"})
# Message types each kind of send_msg_on_event code accepts.
CODE_MSGTYPES: dict[str, frozenset[str]] = {
    "welcome": frozenset({"text", "msgmenu"}),
    "pool": frozenset({"text"}),
    "pickup": frozenset({"text"}),
    "end": frozenset({"text", "msgmenu"}),
}

MSGID_RE = re.compile(r"[0-9A-Za-z_-]{1,32}")
SCENE_RE = re.compile(r"[0-9A-Za-z_-]*")
# A backslash-u escape not itself escaped: an odd run of backslashes followed by uXXXX.
UNICODE_ESCAPE_RE = re.compile(rb"(?<!\\)(?:\\\\)*\\u[0-9A-Fa-f]{4}")
ID_ALPHABET = string.ascii_letters + string.digits + "_-"

ERRMSG: dict[int, str] = {
    -1: "system busy",
    40001: "invalid credential",
    40004: "invalid media type",
    40005: "invalid file type",
    40006: "invalid file size",
    40007: "invalid media_id",
    40008: "invalid message type",
    40013: "invalid corpid",
    40014: "invalid access_token",
    40029: "invalid code",
    40033: "invalid charset. please check your request, if include \\uxxxx will create fail!",
    40058: "invalid parameter",
    40096: "invalid external userid",
    41001: "access_token missing",
    42001: "access_token expired",
    43001: "require GET method",
    43002: "require POST method",
    45001: "media size out of limit",
    45002: "content size out of limit",
    45009: "api freq out of limit",
    45033: "api concurrent out of limit",
    47001: "data format error",
    48002: "api forbidden",
    60020: "not allow to access from your ip",
    60111: "userid not found",
    90207: "invalid miniprogram appid",
    95000: "invalid open_kfid",
    95001: "send msg count limit",
    95002: "send msg time limit",
    95007: "invalid msg token",
    95008: "msgmenu item count out of limit",
    95009: "invalid msgmenu item type",
    95014: "user is not servicer",
    95016: "invalid service state transition",
    95018: "send msg session status invalid",
    95025: "business card send limit: one per customer in 48 hours",
}

MEDIA_CONTENT_TYPES = {
    "image": ("image/jpeg", "jpg"),
    "voice": ("audio/amr", "amr"),
    "video": ("video/mp4", "mp4"),
    "file": ("application/octet-stream", "bin"),
}
ADMIN_ACTIONS = frozenset(
    {
        "add_account",
        "add_servicer",
        "set_servicer_status",
        "customer_enter",
        "customer_enter_via_link",
        "customer_says",
        "customer_sends_media",
        "servicer_says",
        "pickup",
        "transfer",
        "end_session",
        "end_session_silently",
        "move_session_silently",
        "reopen",
        "send_fail",
        "add_raw_item",
        "fire_callback",
        "lose_callbacks",
        "lost_callbacks",
        "inject_fault",
        "clear_faults",
        "set_callback_url",
        "advance",
        "expire_all_tokens",
        "configure",
        "add_member",
        "link_miniprogram",
        "set_upgrade_config",
        "upgrade_offers",
    }
)
CONFIGURABLE = frozenset(
    {"page_cap", "empty_page_every", "tokenless_limit_per_minute", "ip_blocked", "egress_ip", "auto_callback",
     "callback_loss", "seed"}
)


class ApiError(Exception):
    """An answer with a non-zero errcode; ``detail`` replaces the default errmsg text."""

    def __init__(self, errcode: int, detail: str | None = None) -> None:
        super().__init__(f"{errcode}: {detail or ERRMSG.get(errcode, 'error')}")
        self.errcode = errcode
        self.detail = detail


@dataclass
class _Servicer:
    userid: str
    status: int = 0  # servicer/list encoding: 0 receiving, 1 stopped
    stop_type: int = 0


@dataclass
class _Account:
    open_kfid: str
    name: str
    avatar: str
    manage_privilege: bool
    servicers: dict[str, _Servicer] = field(default_factory=dict)
    msgids: set[str] = field(default_factory=set)


@dataclass
class _Customer:
    external_userid: str
    nickname: str
    avatar: str
    gender: int = 0
    unionid: str | None = None
    context: dict[str, Any] | None = None
    entered_at: float | None = None
    last_seen: float = 0.0


@dataclass
class _Session:
    open_kfid: str
    external_userid: str
    state: int = NEW
    servicer_userid: str = ""
    generation: int = 1  # bumped whenever an ended session starts again
    last_customer_msg: float | None = None
    sends: int = 0  # send_msg calls since the last customer message
    reply_codes: set[int] = field(default_factory=set)  # states (2, 3) that already gave a msg_code
    last_welcome_sent: float | None = None
    last_entered: float | None = None  # the customer's last enter_session at this account


@dataclass
class _Code:
    code: str
    kind: str  # welcome | pool | pickup | end
    open_kfid: str
    external_userid: str
    expires_at: float
    state: int | None  # the session state the code needs; None for welcome codes
    generation: int
    used: bool = False


@dataclass
class _Fault:
    errcode: int | None
    http_status: int | None
    delay: float | None
    remaining: int
    passes: int = 0  # calls let through untouched before this fault starts


@dataclass
class _Media:
    content_type: str
    data: bytes
    filename: str
    created: float
    kind: str = "file"  # image | voice | video | file: the msgtype it may be sent as
    origin: str = "added"  # upload (media/upload), added (add_media) or customer (customer_sends_media)


@dataclass
class _Binary:
    content_type: str
    data: bytes
    filename: str


def _random_id(prefix: str, length: int) -> str:
    return prefix + "".join(secrets.choice(ID_ALPHABET) for _ in range(length))


def _normalize_path(path: str) -> str:
    path = path.strip("/")
    return path[len("cgi-bin/") :] if path.startswith("cgi-bin/") else path


def _byte_len(value: str) -> int:
    return len(value.encode("utf-8"))
