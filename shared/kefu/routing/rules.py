"""The routing rules file: YAML (JSON is YAML too), validated at load with errors that name the
key and its line; a block per open_kfid merged key by key over "*" (scenes merge by scene name).
"""

from __future__ import annotations

import copy
import re
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_RANGE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")
DEFAULT_KEY = "*"


class RulesError(ValueError):
    """The rules file is invalid; the message names the key (and line) at fault."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BotReply(_Strict):
    keywords: list[str] = Field(min_length=1)
    text: str = Field(min_length=1, max_length=2048)

    @field_validator("keywords")
    @classmethod
    def _non_empty(cls, value: list[str]) -> list[str]:
        if any(not k.strip() for k in value):
            raise ValueError("keywords must not be empty strings")
        return value


class Bot(_Strict):
    replies: list[BotReply] = Field(default_factory=list)
    handoff_keywords: list[str] = Field(default_factory=list)
    unmatched: Literal["handoff", "ignore"] = "handoff"


class MenuItem(_Strict):
    id: str = Field(min_length=1, max_length=64)
    content: str = Field(min_length=1, max_length=128)
    score: int | None = None  # the rating this choice records (e.g. 1..5); default: its position


class Satisfaction(_Strict):
    head: str = Field(default="", max_length=1024)
    items: list[MenuItem] = Field(min_length=1, max_length=10)
    tail: str = Field(default="", max_length=1024)
    thanks: str | None = Field(default=None, max_length=2048)


class Closing(_Strict):
    text: str | None = Field(default=None, max_length=2048)
    satisfaction: Satisfaction | None = None

    @model_validator(mode="after")
    def _one(self) -> Closing:
        if self.text and self.satisfaction:
            raise ValueError("set either text or satisfaction (one message per ended session)")
        return self


class WorkingHours:
    """Weekday -> list of (start, end) minute ranges; a missing weekday is closed."""

    def __init__(self, ranges: dict[str, list[tuple[int, int]]]) -> None:
        self.ranges = ranges

    def is_open(self, moment: datetime) -> bool:
        day = WEEKDAYS[moment.weekday()]
        minute = moment.hour * 60 + moment.minute
        return any(start <= minute < end for start, end in self.ranges.get(day, []))


def _parse_hours(value: Any) -> dict[str, list[tuple[int, int]]]:
    if not isinstance(value, dict):
        raise ValueError("working_hours must map weekdays (mon..sun) to 'HH:MM-HH:MM' or a list of them")
    parsed: dict[str, list[tuple[int, int]]] = {}
    for day, spec in value.items():
        if day not in WEEKDAYS:
            raise ValueError(f"unknown weekday {day!r}; use one of {', '.join(WEEKDAYS)}")
        items = spec if isinstance(spec, list) else [spec]
        ranges = []
        for item in items:
            match = _RANGE.match(str(item).replace(" ", ""))
            if not match:
                raise ValueError(f"{day}: {item!r} is not a range like '09:00-18:00'")
            h1, m1, h2, m2 = (int(g) for g in match.groups())
            start, end = h1 * 60 + m1, h2 * 60 + m2
            if end > 24 * 60 or end <= start:
                raise ValueError(f"{day}: {item!r} must end after it starts, within the day (up to 24:00)")
            ranges.append((start, end))
        parsed[day] = ranges
    return parsed


class Policy(_Strict):
    """The effective rules for one (account, scene)."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    strategy: Literal["round_robin", "least_busy"] = "round_robin"
    max_active_per_servicer: int = Field(default=10, ge=1, le=10_000)
    sticky_hours: float = Field(default=72, ge=0)
    servicers: list[str] = Field(default_factory=list)
    working_hours: dict[str, Any] | None = None
    off_hours_reply: str | None = Field(default=None, max_length=2048)
    welcome: str | None = Field(default=None, max_length=2048)
    queue_notice: str | None = Field(default=None, max_length=2048)
    bot: Bot | None = None
    closing: Closing | None = None
    # End a session nobody wrote in for this long (the sweep does it, with the closing message).
    idle_end_minutes: float | None = Field(default=None, gt=0, le=7 * 24 * 60)

    @field_validator("working_hours")
    @classmethod
    def _hours(cls, value: Any) -> Any:
        if value is not None:
            _parse_hours(value)
        return value

    def hours(self) -> WorkingHours | None:
        return None if self.working_hours is None else WorkingHours(_parse_hours(self.working_hours))


POLICY_KEYS = frozenset(Policy.model_fields)


class Rules:
    """The validated rules file; ``policy(open_kfid, scene)`` gives the effective rules."""

    def __init__(self, timezone: str, accounts: dict[str, dict[str, Any]]) -> None:
        self.timezone = ZoneInfo(timezone)
        self._accounts = accounts
        self._cache: dict[tuple[str, str], Policy] = {}

    def _account_block(self, open_kfid: str) -> dict[str, Any]:
        return _merge_account(self._accounts.get(DEFAULT_KEY, {}), self._accounts.get(open_kfid, {}))

    def policy(self, open_kfid: str, scene: str | None = None) -> Policy:
        key = (open_kfid, scene or "")
        if key not in self._cache:
            block = self._account_block(open_kfid)
            scenes = block.pop("scenes", {}) or {}
            if scene and scene in scenes:
                block = {**block, **scenes[scene]}
            self._cache[key] = Policy.model_validate(block)
        return self._cache[key]

    def scenes_of(self, open_kfid: str) -> list[str]:
        """The scenes the account's rules name (each may override the account's rules)."""
        return list(self._account_block(open_kfid).get("scenes") or {})

    def local_time(self, epoch: float) -> datetime:
        return datetime.fromtimestamp(epoch, self.timezone)


def _merge_account(default: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(default)
    for key, value in override.items():
        if key == "scenes":
            scenes = dict(merged.get("scenes") or {})
            for name, block in (value or {}).items():
                scenes[name] = {**scenes.get(name, {}), **(block or {})}
            merged["scenes"] = scenes
        else:
            merged[key] = copy.deepcopy(value)
    return merged


# -- loading with line numbers ----------------------------------------------------------------

class _LineLoader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    mapping = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in mapping:
            raise RulesError(f"line {key_node.start_mark.line + 1}: duplicate key {key!r}")
        mapping[key] = loader.construct_object(value_node, deep=deep)
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _lines(node: yaml.Node, path: tuple[Any, ...], out: dict[tuple[Any, ...], int]) -> None:
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            out[(*path, key)] = key_node.start_mark.line + 1
            _lines(value_node, (*path, key), out)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _lines(item, (*path, index), out)


def _where(lines: dict[tuple[Any, ...], int], path: tuple[Any, ...]) -> str:
    for cut in range(len(path), -1, -1):
        if path[:cut] in lines:
            return f"line {lines[path[:cut]]}"
    return "line ?"


def parse_rules(text: str, source: str = "rules") -> Rules:
    try:
        data = yaml.load(text, Loader=_LineLoader)  # nosec B506 - _LineLoader is a SafeLoader subclass
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise RulesError(f"{source}: not valid YAML: {exc}") from None
    except RulesError as exc:  # a duplicate key, found while loading: name the file as every error does
        raise RulesError(f"{source} {exc}") from None
    data = data or {}
    lines: dict[tuple[Any, ...], int] = {}
    if node is not None:
        _lines(node, (), lines)
    if not isinstance(data, dict):
        raise RulesError(f"{source}: the top level must be a mapping with 'accounts'")
    unknown = set(data) - {"timezone", "accounts"}
    if unknown:
        key = sorted(map(str, unknown))[0]
        raise RulesError(f"{source} {_where(lines, (key,))}: unknown key {key!r} (allowed: timezone, accounts)")
    timezone = data.get("timezone", "Asia/Shanghai")
    try:
        ZoneInfo(str(timezone))
    except (ZoneInfoNotFoundError, ValueError):
        raise RulesError(f"{source} {_where(lines, ('timezone',))}: timezone: unknown IANA zone {timezone!r}") from None
    accounts = data.get("accounts") or {}
    if not isinstance(accounts, dict):
        raise RulesError(f"{source} {_where(lines, ('accounts',))}: accounts must map open_kfid (or '*') to rules")
    for name, block in accounts.items():
        _check_block(block or {}, ("accounts", name), lines, source)
        accounts[name] = block or {}
    rules = Rules(str(timezone), accounts)
    for name in accounts:  # every merged (account, scene) policy must validate, not only the blocks
        merged = rules._account_block(str(name))  # noqa: SLF001
        for scene in [None, *(merged.get("scenes") or {})]:
            try:
                rules.policy(str(name), scene)
            except ValidationError as exc:
                raise RulesError(_describe(exc, lines, ("accounts", name) + (("scenes", scene) if scene else ()), source)) from None
    return rules


def _check_block(block: Any, path: tuple[Any, ...], lines: dict[tuple[Any, ...], int], source: str) -> None:
    if not isinstance(block, dict):
        raise RulesError(f"{source} {_where(lines, path)}: {'.'.join(map(str, path))} must be a mapping")
    for key, value in block.items():
        if key == "scenes":
            if not isinstance(value, dict):
                raise RulesError(f"{source} {_where(lines, (*path, key))}: scenes must map scene names to rules")
            for scene, scene_block in value.items():
                if isinstance(scene_block, dict) and "scenes" in scene_block:
                    raise RulesError(f"{source} {_where(lines, (*path, key, scene, 'scenes'))}: scenes cannot nest")
                _check_block(scene_block or {}, (*path, key, scene), lines, source)
        elif key not in POLICY_KEYS:
            raise RulesError(f"{source} {_where(lines, (*path, key))}: unknown key {key!r} in "
                             f"{'.'.join(map(str, path))} (allowed: {', '.join(sorted(POLICY_KEYS | {'scenes'}))})")
    try:
        Policy.model_validate({k: v for k, v in block.items() if k != "scenes"})
    except ValidationError as exc:
        raise RulesError(_describe(exc, lines, path, source)) from None


def _describe(exc: ValidationError, lines: dict[tuple[Any, ...], int], path: tuple[Any, ...], source: str) -> str:
    err = exc.errors()[0]
    loc = tuple(err["loc"])
    full = (*path, *loc)
    name = ".".join(str(p) for p in full)
    return f"{source} {_where(lines, full)}: {name}: {err['msg']}"


def load_rules_file(path: str) -> Rules:
    with open(path, encoding="utf-8") as handle:
        return parse_rules(handle.read(), source=path)
