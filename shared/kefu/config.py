"""Settings read from the environment once per container and checked field by field.

Each function declares the settings it needs as a subclass of ``Settings``, one class attribute
per environment variable::

    class CallbackSettings(Settings):
        sync_queue_url: str = setting("KEFU_SYNC_QUEUE_URL", min_length=1)
        max_body_bytes: int = setting("KEFU_MAX_BODY_BYTES", default=64 * 1024, gt=0)

The annotation gives the type (str, int, float, str | None, or a Literal of strings with
``choices``); a missing or malformed variable fails the cold start with a ``ConfigError`` naming
the environment variable. Other variables in the environment are ignored. A settings object is
frozen; it can also be built directly, by environment names or attribute names:
``Settings(WECOM_CORP_ID="ww1", KEFU_STATE_TABLE="kefu-state")``.
"""

from __future__ import annotations

import math
import os
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Literal, TypeVar

from kefu.ids import ALIAS, SCENE_MAX_BYTES

S = TypeVar("S", bound="Settings")

DEFAULT_WECOM_API_BASE = "https://qyapi.weixin.qq.com"
_REQUIRED: Any = object()  # the default of a setting that must be given


class ConfigError(RuntimeError):
    """A setting is missing or malformed; the message names the environment variable."""


class _Spec:
    """One setting: its environment variable, default, type and checks."""

    __slots__ = ("env", "default", "kind", "optional", "min_length", "max_length", "gt", "ge", "le",
                 "choices", "check", "name")

    def __init__(self, env: str, default: Any, min_length: int | None, max_length: int | None,
                 gt: float | None, ge: float | None, le: float | None, choices: tuple[str, ...] | None,
                 check: Callable[[Any], Any] | None) -> None:
        self.env, self.default = env, default
        self.min_length, self.max_length = min_length, max_length
        self.gt, self.ge, self.le = gt, ge, le
        self.choices, self.check = choices, check
        self.kind: type = str
        self.optional = False
        self.name = ""

    def convert(self, raw: Any) -> Any:
        """The value from the environment's text (or a value given directly); ValueError says
        what is wrong with it."""
        if raw is None and self.optional:
            return None
        if self.kind is str:
            if not isinstance(raw, str):
                raise ValueError("must be a string")
            value: Any = raw
            if self.min_length is not None and len(value) < self.min_length:
                raise ValueError("must not be empty" if self.min_length == 1
                                 else f"must be at least {self.min_length} characters")
            if self.max_length is not None and len(value) > self.max_length:
                raise ValueError(f"must be at most {self.max_length} characters")
            if self.choices is not None and value not in self.choices:
                raise ValueError(f"must be one of: {', '.join(self.choices)}")
        else:
            value = _integer(raw) if self.kind is int else _number(raw)
            if self.gt is not None and not value > self.gt:
                raise ValueError(f"must be greater than {_show(self.gt)}")
            if self.ge is not None and not value >= self.ge:
                raise ValueError(f"must be at least {_show(self.ge)}")
            if self.le is not None and not value <= self.le:
                raise ValueError(f"must be at most {_show(self.le)}")
        return self.check(value) if self.check is not None else value


def setting(env: str, *, default: Any = _REQUIRED, min_length: int | None = None, max_length: int | None = None,
            gt: float | None = None, ge: float | None = None, le: float | None = None,
            choices: tuple[str, ...] | None = None, check: Callable[[Any], Any] | None = None) -> Any:
    """Declare a setting read from the environment variable ``env``. Without a default it is
    required. ``check`` gets the converted value and returns it (possibly normalised) or raises
    ValueError with what is wrong; the default is used as it is, unchecked."""
    return _Spec(env, default, min_length, max_length, gt, ge, le, choices, check)


def _integer(raw: Any) -> int:
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if isinstance(raw, str):
        text = raw.strip()
        if re.fullmatch(r"[+-]?[0-9]+", text):
            return int(text)
    raise ValueError("must be an integer")


def _number(raw: Any) -> float:
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        value = float(raw)
    elif isinstance(raw, str) and re.fullmatch(r"\s*[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\s*", raw):
        value = float(raw)
    else:
        raise ValueError("must be a number")
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


def _show(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else str(bound)


def _kind(spec: _Spec, annotation: Any, owner: str) -> None:
    """Set the spec's type from the field's annotation (a string under postponed evaluation)."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", None) or repr(annotation)
    text = text.replace("typing.", "").replace(" ", "")
    if text in ("str|None", "None|str", "Optional[str]"):
        spec.kind, spec.optional = str, True
    elif text in ("str", "int", "float"):
        spec.kind = {"str": str, "int": int, "float": float}[text]
    elif text.startswith("Literal[") and spec.choices is not None:
        spec.kind = str
    else:
        raise TypeError(f"{owner}.{spec.name}: unsupported settings type {annotation!r} "
                        "(str, int, float, str | None, or Literal with choices=)")


def _zone(value: str) -> str:
    """An IANA time zone key, looked up where zoneinfo looks (without importing zoneinfo, whose
    import reads sysconfig: ~10 ms of every cold start): a TZif file in the system's zoneinfo
    directories or in the tzdata package."""
    problem = "must be an IANA time zone such as Asia/Shanghai"
    parts = value.split("/")
    if not value or value.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\\" in value or "\0" in value:
        raise ValueError(problem)
    tzpath = os.environ.get("PYTHONTZPATH")
    roots = tzpath.split(os.pathsep) if tzpath else ["/usr/share/zoneinfo", "/usr/lib/zoneinfo",
                                                      "/usr/share/lib/zoneinfo", "/etc/zoneinfo"]
    roots += [os.path.join(entry, "tzdata", "zoneinfo") for entry in sys.path if entry]
    for root in roots:
        if not os.path.isabs(root):
            continue
        try:
            with open(os.path.join(root, *parts), "rb") as handle:
                if handle.read(4) == b"TZif":
                    return value
        except OSError:
            continue
    raise ValueError(problem)


def _prefix(value: str) -> str:
    if not value.startswith("/") or value.endswith("/") or len(value) < 2:
        raise ValueError("must be an SSM path like /kefu (leading slash, no trailing slash)")
    return value


def _base(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError("must be an http(s) URL")
    return value.rstrip("/")


class Settings:
    """Settings every function shares."""

    _specs: ClassVar[dict[str, _Spec]] = {}

    corp_id: str = setting("WECOM_CORP_ID", min_length=1, max_length=64)
    secrets_prefix: str = setting("KEFU_SECRETS_PREFIX", default="/kefu", check=_prefix)
    wecom_api_base: str = setting("WECOM_API_BASE", default=DEFAULT_WECOM_API_BASE, check=_base)
    state_table: str = setting("KEFU_STATE_TABLE", min_length=3)
    stats_timezone: str = setting("KEFU_STATS_TIMEZONE", default="Asia/Shanghai", check=_zone)
    event_bus: str = setting("KEFU_EVENT_BUS", default="")
    # "full": message events carry the message itself (for a helpdesk); "none": only who and when.
    event_content: Literal["none", "full"] = setting("KEFU_EVENT_CONTENT", default="none", choices=("none", "full"))
    # Service-provider mode (kefu.tenancy, kefu.provider): one deployment serves every corp that
    # authorized the provider's suite. "single" (the default) is one corp and its own app.
    mode: Literal["single", "provider"] = setting("KEFU_MODE", default="single", choices=("single", "provider"))
    suite_id: str = setting("WECOM_SUITE_ID", default="", max_length=64)
    # third_party: a 第三方应用 (corp tokens from service/get_corp_token); custom_app: 代开发 (the
    # permanent code is the app's secret at the corp, tokens from gettoken).
    provider_app: Literal["third_party", "custom_app"] = setting(
        "KEFU_PROVIDER_APP", default="third_party", choices=("third_party", "custom_app"))
    permanent_code_key: str = setting("KEFU_PERMANENT_CODE_KEY", default="")  # the KMS key of permanent codes
    # What becomes of a corp's data when it cancels the authorization.
    cancelled_corp_data: Literal["keep", "delete"] = setting(
        "KEFU_CANCELLED_CORP_DATA", default="keep", choices=("keep", "delete"))

    def require_provider(self) -> None:
        """Provider mode needs the suite id and the permanent codes' KMS key."""
        missing = [env for env, value in (("WECOM_SUITE_ID", self.suite_id),
                                          ("KEFU_PERMANENT_CODE_KEY", self.permanent_code_key)) if not value]
        if missing:
            raise ConfigError(f"invalid configuration: KEFU_MODE=provider needs {', '.join(missing)}")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _collect(cls)

    def __init__(self, **values: Any) -> None:
        problems: list[str] = []
        for name, spec in self._specs.items():
            if spec.env in values:
                raw = values[spec.env]
            elif name in values:
                raw = values[name]
            elif spec.default is not _REQUIRED:
                object.__setattr__(self, name, spec.default)
                continue
            else:
                problems.append(f"{spec.env}: required, not set")
                continue
            try:
                object.__setattr__(self, name, spec.convert(raw))
            except ValueError as exc:
                problems.append(f"{spec.env}: {exc}")
        if problems:
            raise ConfigError("invalid configuration: " + "; ".join(problems))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen: {name} cannot be set")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen: {name} cannot be deleted")

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self._specs)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Settings) and type(other) is type(self) and self._values() == other._values()

    def __hash__(self) -> int:
        return hash((type(self), self._values()))

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._specs)
        return f"{type(self).__name__}({fields})"


def _collect(cls: type[Settings]) -> None:
    """Gather the class's settings (its bases' first) into ``_specs``; the class attributes that
    declared them are removed, so each instance's own values are what attribute access finds."""
    specs: dict[str, _Spec] = {}
    for base in reversed(cls.__mro__[1:]):
        specs.update(base.__dict__.get("_specs", {}))
    annotations = getattr(cls, "__annotations__", {})  # this class's own (Python 3.10+)
    for name, value in list(cls.__dict__.items()):
        if isinstance(value, _Spec):
            value.name = name
            _kind(value, annotations.get(name, "str"), cls.__name__)
            specs[name] = value
            delattr(cls, name)
    cls._specs = specs


_collect(Settings)


class CallbackSettings(Settings):
    sync_queue_url: str = setting("KEFU_SYNC_QUEUE_URL", min_length=1)
    max_body_bytes: int = setting("KEFU_MAX_BODY_BYTES", default=64 * 1024, gt=0)


def load(cls: type[S], environ: Mapping[str, str] | None = None) -> S:
    env = os.environ if environ is None else environ
    wanted = {spec.env for spec in cls._specs.values()}
    return cls(**{key: value for key, value in env.items() if key in wanted})


class SyncSettings(Settings):
    messages_table: str = setting("KEFU_MESSAGES_TABLE", min_length=3)
    route_queue_url: str = setting("KEFU_ROUTE_QUEUE_URL", min_length=1)
    media_bucket: str = setting("KEFU_MEDIA_BUCKET", min_length=3)
    message_retention_days: int = setting("KEFU_MESSAGE_RETENTION_DAYS", default=0, ge=0)
    handoff_max_age_hours: int = setting("KEFU_HANDOFF_MAX_AGE_HOURS", default=48, gt=0)
    catchup_grace_seconds: int = setting("KEFU_CATCHUP_GRACE_SECONDS", default=300, ge=0)
    media_queue_url: str = setting("KEFU_MEDIA_QUEUE_URL", min_length=1)


class MediaSettings(Settings):
    messages_table: str = setting("KEFU_MESSAGES_TABLE", min_length=3)
    media_bucket: str = setting("KEFU_MEDIA_BUCKET", min_length=3)
    media_queue_url: str = setting("KEFU_MEDIA_QUEUE_URL", min_length=1)


class RulesSettings(Settings):
    """Where the routing rules come from (kefu.routing.source)."""

    routing_config: str | None = setting("KEFU_ROUTING_CONFIG", default=None)
    routing_parameter: str | None = setting("KEFU_ROUTING_PARAMETER", default=None)


class RouteSettings(RulesSettings):
    welcome_max_age_seconds: float = setting("KEFU_WELCOME_MAX_AGE_SECONDS", default=20, gt=0)
    roster_ttl_seconds: float = setting("KEFU_ROSTER_TTL_SECONDS", default=600, gt=0)
    # Kefu's own sends are stored beside the customer's messages (the complete record).
    messages_table: str = setting("KEFU_MESSAGES_TABLE", min_length=3)
    message_retention_days: int = setting("KEFU_MESSAGE_RETENTION_DAYS", default=0, ge=0)
    # The rules' S3 assets ({s3: assets/<key>}) are read from this bucket.
    media_bucket: str = setting("KEFU_MEDIA_BUCKET", default="")
    # The AI answerer (rules' bot.ai, kefu.answerer): the Bedrock model (empty: no model, an entry's
    # answer is sent as written), its list prices and the month's ceiling on what it may cost.
    ai_model_id: str = setting("KEFU_AI_MODEL_ID", default="", max_length=256)
    ai_monthly_budget_usd: float = setting("KEFU_AI_MONTHLY_BUDGET_USD", default=10, ge=0)
    ai_input_price_per_mtok: float = setting("KEFU_AI_INPUT_PRICE_PER_MTOK", default=0.06, ge=0)
    ai_output_price_per_mtok: float = setting("KEFU_AI_OUTPUT_PRICE_PER_MTOK", default=0.24, ge=0)
    ai_max_answer_tokens: int = setting("KEFU_AI_MAX_ANSWER_TOKENS", default=500, ge=50, le=4000)


class SweepSettings(RulesSettings):
    """The scheduled sweep (kefu.sweep): it reads the routing rules like the route function."""

    sync_queue_url: str = setting("KEFU_SYNC_QUEUE_URL", min_length=1)
    route_queue_url: str = setting("KEFU_ROUTE_QUEUE_URL", min_length=1)
    media_queue_url: str = setting("KEFU_MEDIA_QUEUE_URL", min_length=1)
    # Minutes, fractions allowed (the tests use seconds' worth); 0 = at every run.
    resync_minutes: float = setting("KEFU_RESYNC_MINUTES", default=10, ge=0, le=24 * 60)
    reconcile_minutes: float = setting("KEFU_RECONCILE_MINUTES", default=60, ge=0, le=7 * 24 * 60)
    media_bucket: str = setting("KEFU_MEDIA_BUCKET", default="")  # provider mode: the corps' rules


_LINK_ID = ALIAS
_LINK_ACCOUNTS = rf"{_LINK_ID}(={_LINK_ID})?(,{_LINK_ID}(={_LINK_ID})?)*"
_SCENE = rf"[0-9A-Za-z_-]{{1,{SCENE_MAX_BYTES}}}"
_LINK_SCENES = rf"{_SCENE}(,{_SCENE})*"
_LINK_ORIGIN = r"\*|https?://[0-9A-Za-z.-]+(:[0-9]{1,5})?"


def _accounts(value: str) -> str:
    value = value.replace(" ", "")
    if value and not re.fullmatch(_LINK_ACCOUNTS, value):
        raise ValueError("must be alias=open_kfid entries (or bare open_kfids) separated by commas")
    aliases = [entry.split("=", 1)[0] for entry in value.split(",") if "=" in entry]
    if len(aliases) != len(set(aliases)):
        raise ValueError("an alias appears twice")
    return value


def _scenes(value: str) -> str:
    value = value.replace(" ", "")
    if value and not re.fullmatch(_LINK_SCENES, value):
        raise ValueError("must be scenes of up to 32 characters [0-9A-Za-z_-] separated by commas")
    return value


def _origins(value: str) -> str:
    value = value.replace(" ", "")
    for origin in filter(None, value.split(",")):
        if not re.fullmatch(_LINK_ORIGIN, origin):
            raise ValueError(f"{origin!r} is not an origin like https://shop.example.com (no path, no "
                             "trailing slash) or *")
    return value


class LinksSettings(Settings):
    """The links function: account aliases, scene allow-list, CORS origins, QR and cache defaults.

    Lists are comma separated, as CloudFormation passes them. ``KEFU_LINK_ACCOUNTS``:
    "alias=open_kfid,..." where an entry may also be a bare open_kfid; the first entry is the
    default account. ``KEFU_LINK_SCENES``: the scenes allowed (empty = any valid scene).
    ``KEFU_LINK_CORS_ORIGINS``: browser origins allowed, exactly as browsers send them
    ("https://shop.example.com", no path or trailing slash), or "*"; empty = none.
    """

    link_accounts: str = setting("KEFU_LINK_ACCOUNTS", default="", check=_accounts)
    link_scenes: str = setting("KEFU_LINK_SCENES", default="", check=_scenes)
    link_cors_origins: str = setting("KEFU_LINK_CORS_ORIGINS", default="", check=_origins)
    link_qr_size: int = setting("KEFU_LINK_QR_SIZE", default=256, ge=64, le=1024)
    link_cache_seconds: int = setting("KEFU_LINK_CACHE_SECONDS", default=3600, ge=0, le=31536000)
    link_daily_new_limit: int = setting("KEFU_LINK_DAILY_NEW_LIMIT", default=100, ge=0)  # 0: no cap
    # Provider mode: each corp's link settings (kefu.corp_links) are read from this bucket.
    media_bucket: str = setting("KEFU_MEDIA_BUCKET", default="")
