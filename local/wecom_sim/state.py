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
# Accounts (kf/account/add): a name of 1..16 characters, an avatar media_id of up to 128 bytes;
# 5000 accounts per corp, 10 while the corp is unverified.
ACCOUNT_NAME_MAX, AVATAR_MEDIA_ID_MAX = 16, 128
MAX_ACCOUNTS, UNVERIFIED_MAX_ACCOUNTS = 5000, 10
# Servicers: kf/servicer/add and del take up to 100 userids and 100 departments per call. The
# reference gives two unconfirmed caps per account (500 in an older doc, 2000 in a 2022 guide);
# the simulator keeps the lower one and counts the people who serve (direct servicers and the
# members of servicing departments and their sub-departments). WeCom publishes no errcode for
# going over it: 95020 is the simulator's pick.
SERVICER_BATCH_MAX = 100
MAX_SERVICERS_PER_ACCOUNT = 500
SERVICERS_OVER_LIMIT = 95020
ROOT_DEPARTMENT = 1
# Customers a kf of the corp may serve, cumulative: 100 while unverified, 10,000 when verified
# without a bound 视频号 (None: no limit, verified and bound).
UNVERIFIED_MAX_CUSTOMERS, UNBOUND_MAX_CUSTOMERS = 100, 10_000
# Statistics: days are counted in China time (UTC+8, no daylight saving); a query reaches from
# yesterday back 180 days and spans at most 31 days (both ends included). A day's figures are
# given from 06:00 the next day (WeCom computes them overnight).
STAT_TZ_OFFSET = 8 * 3600
STAT_DAYS_BACK, STAT_MAX_SPAN_DAYS = 180, 31
STAT_READY_AFTER = 6 * 3600
CORP_STAT_FIELDS = frozenset(
    {"session_cnt", "customer_cnt", "customer_msg_cnt", "upgrade_service_customer_cnt", "ai_session_reply_cnt",
     "ai_transfer_rate", "ai_knowledge_hit_rate", "msg_rejected_customer_cnt"}
)
SERVICER_STAT_FIELDS = frozenset(
    {"session_cnt", "customer_cnt", "customer_msg_cnt", "reply_rate", "first_reply_average_sec",
     "satisfaction_investgate_cnt", "satisfaction_participation_rate", "satisfied_rate", "middling_rate",
     "dissatisfied_rate", "upgrade_service_customer_cnt", "upgrade_service_member_invite_cnt",
     "upgrade_service_member_customer_cnt", "upgrade_service_groupchat_invite_cnt",
     "upgrade_service_groupchat_customer_cnt", "msg_rejected_customer_cnt"}
)
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
    60011: "no privilege to access/modify contact/party/agent",
    60020: "not allow to access from your ip",
    60111: "userid not found",
    60123: "invalid party id",
    90207: "invalid miniprogram appid",
    95000: "invalid open_kfid",
    95001: "send msg count limit",
    95002: "send msg time limit",
    95003: "consultation capacity out of limit",
    95004: "open_kfid not exist",
    95005: "kf account count out of limit",
    95006: "invalid kf account name",
    95007: "invalid msg token",
    95008: "msgmenu item count out of limit",
    95009: "invalid msgmenu item type",
    95013: "session not ended",
    95014: "user is not servicer",
    95016: "invalid service state transition",
    95018: "send msg session status invalid",
    95020: "servicer count out of limit",
    95025: "business card send limit: one per customer in 48 hours",
    95027: "unverified corp: kf account count out of limit",
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
        "add_department",
        "set_visible_departments",
        "set_statistic",
        "set_qualification",
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
    manage_privilege: bool  # this app may operate the account (else the API answers 48002)
    servicers: dict[str, _Servicer] = field(default_factory=dict)
    msgids: set[str] = field(default_factory=set)
    avatar_media_id: str | None = None  # the media_id the avatar was set from (kf/account/add, update)
    departments: list[int] = field(default_factory=list)  # departments whose members serve
    # The status of the members of those departments, as they serve (made receiving on first use).
    department_servicers: dict[str, _Servicer] = field(default_factory=dict)


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
