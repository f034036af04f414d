"""Settings read from the environment once per container and validated with pydantic.

Each function declares the settings it needs as a subclass of ``Settings``; a missing or malformed
variable fails the cold start with a ``ConfigError`` naming the environment variable.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from kefu.ids import ALIAS, SCENE_MAX_BYTES

S = TypeVar("S", bound="Settings")

DEFAULT_WECOM_API_BASE = "https://qyapi.weixin.qq.com"


class ConfigError(RuntimeError):
    """A setting is missing or malformed; the message names the environment variable."""


class Settings(BaseModel):
    """Settings every function shares."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)

    corp_id: str = Field(alias="WECOM_CORP_ID", min_length=1, max_length=64)
    secrets_prefix: str = Field(alias="KEFU_SECRETS_PREFIX", default="/kefu")
    wecom_api_base: str = Field(alias="WECOM_API_BASE", default=DEFAULT_WECOM_API_BASE)
    state_table: str = Field(alias="KEFU_STATE_TABLE", min_length=3)
    stats_timezone: str = Field(alias="KEFU_STATS_TIMEZONE", default="Asia/Shanghai")
    event_bus: str = Field(alias="KEFU_EVENT_BUS", default="")
    # "full": message events carry the message itself (for a helpdesk); "none": only who and when.
    event_content: Literal["none", "full"] = Field(alias="KEFU_EVENT_CONTENT", default="none")

    @field_validator("stats_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("must be an IANA time zone such as Asia/Shanghai") from None
        return value

    @field_validator("secrets_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not value.startswith("/") or value.endswith("/") or len(value) < 2:
            raise ValueError("must be an SSM path like /kefu (leading slash, no trailing slash)")
        return value

    @field_validator("wecom_api_base")
    @classmethod
    def _base(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/")


class CallbackSettings(Settings):
    sync_queue_url: str = Field(alias="KEFU_SYNC_QUEUE_URL", min_length=1)
    max_body_bytes: int = Field(alias="KEFU_MAX_BODY_BYTES", default=64 * 1024, gt=0)


def load(cls: type[S], environ: Mapping[str, str] | None = None) -> S:
    env = os.environ if environ is None else environ
    try:
        return cls.model_validate(dict(env))
    except ValidationError as exc:
        raise ConfigError(_describe(cls, exc)) from None


def _describe(cls: type[Settings], exc: ValidationError) -> str:
    problems = []
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else "?"
        info = cls.model_fields.get(field)
        name = info.alias if info is not None and info.alias else field
        problems.append(f"{name}: {err['msg']}")
    return "invalid configuration: " + "; ".join(problems)


class SyncSettings(Settings):
    messages_table: str = Field(alias="KEFU_MESSAGES_TABLE", min_length=3)
    route_queue_url: str = Field(alias="KEFU_ROUTE_QUEUE_URL", min_length=1)
    media_bucket: str = Field(alias="KEFU_MEDIA_BUCKET", min_length=3)
    message_retention_days: int = Field(alias="KEFU_MESSAGE_RETENTION_DAYS", default=0, ge=0)
    handoff_max_age_hours: int = Field(alias="KEFU_HANDOFF_MAX_AGE_HOURS", default=48, gt=0)
    catchup_grace_seconds: int = Field(alias="KEFU_CATCHUP_GRACE_SECONDS", default=300, ge=0)
    media_queue_url: str = Field(alias="KEFU_MEDIA_QUEUE_URL", min_length=1)


class MediaSettings(Settings):
    messages_table: str = Field(alias="KEFU_MESSAGES_TABLE", min_length=3)
    media_bucket: str = Field(alias="KEFU_MEDIA_BUCKET", min_length=3)
    media_queue_url: str = Field(alias="KEFU_MEDIA_QUEUE_URL", min_length=1)


class RulesSettings(Settings):
    """Where the routing rules come from (kefu.routing.source)."""

    routing_config: str | None = Field(alias="KEFU_ROUTING_CONFIG", default=None)
    routing_parameter: str | None = Field(alias="KEFU_ROUTING_PARAMETER", default=None)


class RouteSettings(RulesSettings):
    welcome_max_age_seconds: float = Field(alias="KEFU_WELCOME_MAX_AGE_SECONDS", default=20, gt=0)
    roster_ttl_seconds: float = Field(alias="KEFU_ROSTER_TTL_SECONDS", default=600, gt=0)
    # Kefu's own sends are stored beside the customer's messages (the complete record).
    messages_table: str = Field(alias="KEFU_MESSAGES_TABLE", min_length=3)
    message_retention_days: int = Field(alias="KEFU_MESSAGE_RETENTION_DAYS", default=0, ge=0)
    # The rules' S3 assets ({s3: assets/<key>}) are read from this bucket.
    media_bucket: str = Field(alias="KEFU_MEDIA_BUCKET", default="")


class SweepSettings(RulesSettings):
    """The scheduled sweep (kefu.sweep): it reads the routing rules like the route function."""

    sync_queue_url: str = Field(alias="KEFU_SYNC_QUEUE_URL", min_length=1)
    route_queue_url: str = Field(alias="KEFU_ROUTE_QUEUE_URL", min_length=1)
    media_queue_url: str = Field(alias="KEFU_MEDIA_QUEUE_URL", min_length=1)
    # Minutes, fractions allowed (the tests use seconds' worth); 0 = at every run.
    resync_minutes: float = Field(alias="KEFU_RESYNC_MINUTES", default=10, ge=0, le=24 * 60)
    reconcile_minutes: float = Field(alias="KEFU_RECONCILE_MINUTES", default=60, ge=0, le=7 * 24 * 60)


_LINK_ID = ALIAS
_LINK_ACCOUNTS = re.compile(rf"{_LINK_ID}(={_LINK_ID})?(,{_LINK_ID}(={_LINK_ID})?)*")
_SCENE = rf"[0-9A-Za-z_-]{{1,{SCENE_MAX_BYTES}}}"
_LINK_SCENES = re.compile(rf"{_SCENE}(,{_SCENE})*")
_LINK_ORIGIN = re.compile(r"\*|https?://[0-9A-Za-z.-]+(:[0-9]{1,5})?")


class LinksSettings(Settings):
    """The links function: account aliases, scene allow-list, CORS origins, QR and cache defaults.

    Lists are comma separated, as CloudFormation passes them. ``KEFU_LINK_ACCOUNTS``:
    "alias=open_kfid,..." where an entry may also be a bare open_kfid; the first entry is the
    default account. ``KEFU_LINK_SCENES``: the scenes allowed (empty = any valid scene).
    ``KEFU_LINK_CORS_ORIGINS``: browser origins allowed, exactly as browsers send them
    ("https://shop.example.com", no path or trailing slash), or "*"; empty = none.
    """

    link_accounts: str = Field(alias="KEFU_LINK_ACCOUNTS", default="")
    link_scenes: str = Field(alias="KEFU_LINK_SCENES", default="")
    link_cors_origins: str = Field(alias="KEFU_LINK_CORS_ORIGINS", default="")
    link_qr_size: int = Field(alias="KEFU_LINK_QR_SIZE", default=256, ge=64, le=1024)
    link_cache_seconds: int = Field(alias="KEFU_LINK_CACHE_SECONDS", default=3600, ge=0, le=31536000)
    link_daily_new_limit: int = Field(alias="KEFU_LINK_DAILY_NEW_LIMIT", default=100, ge=0)  # 0: no cap

    @field_validator("link_accounts")
    @classmethod
    def _accounts(cls, value: str) -> str:
        value = value.replace(" ", "")
        if value and not _LINK_ACCOUNTS.fullmatch(value):
            raise ValueError("must be alias=open_kfid entries (or bare open_kfids) separated by commas")
        aliases = [entry.split("=", 1)[0] for entry in value.split(",") if "=" in entry]
        if len(aliases) != len(set(aliases)):
            raise ValueError("an alias appears twice")
        return value

    @field_validator("link_scenes")
    @classmethod
    def _scenes(cls, value: str) -> str:
        value = value.replace(" ", "")
        if value and not _LINK_SCENES.fullmatch(value):
            raise ValueError("must be scenes of up to 32 characters [0-9A-Za-z_-] separated by commas")
        return value

    @field_validator("link_cors_origins")
    @classmethod
    def _origins(cls, value: str) -> str:
        value = value.replace(" ", "")
        for origin in filter(None, value.split(",")):
            if not _LINK_ORIGIN.fullmatch(origin):
                raise ValueError(f"{origin!r} is not an origin like https://shop.example.com (no path, no "
                                 "trailing slash) or *")
        return value
