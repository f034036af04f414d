"""The routing rules file: YAML (JSON is YAML too), validated at load with errors that name the
key and its line; a block per open_kfid merged key by key over "*" (scenes merge by scene name).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from kefu import yamllines
from kefu.routing import outbound
from kefu.routing.outbound import CLICK_ID_MAX, Action, Message, OnEventMessage, PoolMessage, UpgradeRule, _bytes

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_RANGE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")
DEFAULT_KEY = "*"


class RulesError(ValueError):
    """The rules file is invalid; the message names the key (and line) at fault."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BotReply(Action):
    """Keywords and what they do: ``text`` (a text reply, the short form) or any action."""

    keywords: list[str] = Field(min_length=1)
    text: Annotated[str, AfterValidator(_bytes(2048, 1))] | None = None

    @model_validator(mode="before")
    @classmethod
    def _text_is_a_reply(cls, value: Any) -> Any:
        if isinstance(value, dict) and "text" in value:
            if "reply" in value:
                raise ValueError("give text (a text reply) or reply (any message), not both")
            value = {**value, "reply": value["text"]}
        return value

    @field_validator("keywords")
    @classmethod
    def _non_empty(cls, value: list[str]) -> list[str]:
        if any(not k.strip() for k in value):
            raise ValueError("keywords must not be empty strings")
        return value


class KnowledgeFile(outbound.Asset):
    """Where the answerer's knowledge is: a file beside the rules, or ``{s3: knowledge/<key>}`` in
    the stack's media bucket (re-read when it changes)."""

    S3_PREFIX: ClassVar[str] = "knowledge/"
    WHAT: ClassVar[str] = "knowledge file"

    @model_validator(mode="after")
    def _format(self) -> KnowledgeFile:
        if Path(self.name).suffix.lower() not in (".md", ".yaml", ".yml", ".json"):
            raise ValueError("a knowledge file is Markdown (.md) or YAML (.yaml, .yml, .json)")
        return self


class BotAi(_Strict):
    """The AI answerer (kefu.answerer): a text no keyword matched is answered from the knowledge
    file's entries that match it, or left to ``otherwise``."""

    knowledge: KnowledgeFile
    # The customer's text goes to the model (Amazon Bedrock) only when this is true; otherwise the
    # best matching entry's answer is sent as it is written, and nothing leaves the stack.
    send_text_to_model: bool = False
    top_k: int = Field(default=3, ge=1, le=8)  # entries given to the model per question
    min_match: float = Field(default=0.3, ge=0, le=1)  # share of the question an entry must match
    per_customer_per_day: int = Field(default=10, ge=1, le=1000)  # model calls
    per_day: int = Field(default=1000, ge=1, le=20_000)  # model calls for the account
    deadline_seconds: float = Field(default=6, gt=0, le=20)  # the model's answer or a hand-off by then
    otherwise: Literal["handoff", "fallback"] = "handoff"  # no answer: a human, or the fallback text
    fallback: Annotated[str, AfterValidator(_bytes(2048, 1))] | None = None

    @model_validator(mode="after")
    def _fallback(self) -> BotAi:
        if self.otherwise == "fallback" and self.fallback is None:
            raise ValueError("otherwise: fallback needs the fallback text")
        return self


class Bot(_Strict):
    replies: list[BotReply] = Field(default_factory=list)
    handoff_keywords: list[str] = Field(default_factory=list)
    unmatched: Literal["handoff", "ignore"] = "handoff"
    ai: BotAi | None = None

    @model_validator(mode="after")
    def _a_person_on_request(self) -> Bot:
        if self.ai is not None and not self.handoff_keywords:
            raise ValueError("bot.ai needs handoff_keywords: a customer must be able to ask for a person "
                             "(e.g. [人工, 转人工])")
        return self


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
    """After a session ends: a text or menu (``text`` for short), or the satisfaction menu."""

    text: Annotated[str, AfterValidator(_bytes(2048, 1))] | None = None
    message: OnEventMessage | None = None
    satisfaction: Satisfaction | None = None

    @model_validator(mode="after")
    def _one(self) -> Closing:
        if sum(x is not None for x in (self.text, self.message, self.satisfaction)) > 1:
            raise ValueError("set one of text, message, satisfaction (one message per ended session)")
        return self

    def as_message(self) -> Message | None:
        return outbound.text(self.text) if self.text else self.message


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
    off_hours_reply: Message | None = None  # sent with send_msg: any kind
    welcome: OnEventMessage | None = None  # the welcome code takes a text or a menu
    queue_notice: PoolMessage | None = None  # the pool's code takes a text
    bot: Bot | None = None
    closing: Closing | None = None
    menu_actions: dict[Annotated[str, AfterValidator(_bytes(CLICK_ID_MAX, 1))], Action] = Field(default_factory=dict)
    upgrade: UpgradeRule | None = None
    # "external": the enterprise's own system (through the conversation API) serves these customers:
    # Kefu welcomes, applies the bot and hours, but never hands a session to a WeCom servicer.
    handler: Literal["kefu", "external"] = "kefu"
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

    def messages(self) -> Iterator[tuple[tuple[Any, ...], Message]]:
        """Every message these rules may send, with its key path (for errors naming the key)."""
        for key in ("welcome", "off_hours_reply", "queue_notice"):
            message = getattr(self, key)
            if message is not None:
                yield (key,), message
        if self.closing is not None and self.closing.message is not None:
            yield ("closing", "message"), self.closing.message
        for index, reply in enumerate(self.bot.replies if self.bot else []):
            if reply.reply is not None:
                yield ("bot", "replies", index, "reply" if reply.text is None else "text"), reply.reply
        for click, action in self.menu_actions.items():
            if action.reply is not None:
                yield ("menu_actions", click, "reply"), action.reply


POLICY_KEYS = frozenset(Policy.model_fields)
BLOCK_KEYS = POLICY_KEYS | {"scenes", "scene_params"}


class Rules:
    """The validated rules file; ``policy(open_kfid, scene, scene_param)`` gives the effective
    rules: the account's ("*" merged with its own block), then its ``scene_params`` block with
    the longest prefix of the scene_param, then the scene's block, then the scene's own
    ``scene_params`` block with the longest prefix."""

    def __init__(self, timezone: str, accounts: dict[str, dict[str, Any]]) -> None:
        self.timezone = ZoneInfo(timezone)
        self._accounts = accounts
        self._cache: dict[tuple[str, str, str | None, str | None], Policy] = {}

    def _account_block(self, open_kfid: str) -> dict[str, Any]:
        return _merge_account(self._accounts.get(DEFAULT_KEY, {}), self._accounts.get(open_kfid, {}))

    def policy(self, open_kfid: str, scene: str | None = None, scene_param: str | None = None) -> Policy:
        block = self._account_block(open_kfid)
        scenes = block.pop("scenes", {}) or {}
        params = block.pop("scene_params", {}) or {}
        scene_block = dict(scenes.get(scene) or {}) if scene else {}
        scene_params = scene_block.pop("scene_params", {}) or {}
        outer, inner = _longest_prefix(params, scene_param), _longest_prefix(scene_params, scene_param)
        key = (open_kfid, scene if scene and scene in scenes else "", outer, inner)
        if key not in self._cache:
            merged = {**block, **(params[outer] if outer is not None else {}), **scene_block,
                      **(scene_params[inner] if inner is not None else {})}
            self._cache[key] = Policy.model_validate(merged)
        return self._cache[key]

    def scenes_of(self, open_kfid: str) -> list[str]:
        """The scenes the account's rules name (each may override the account's rules)."""
        return list(self._account_block(open_kfid).get("scenes") or {})

    def variants(self, open_kfid: str) -> Iterator[tuple[tuple[Any, ...], str | None, str | None]]:
        """Every (scene, scene_param prefix) the account's rules distinguish, with its key path."""
        block = self._account_block(open_kfid)
        outer = list(block.get("scene_params") or {})
        yield (), None, None
        for prefix in outer:
            yield ("scene_params", prefix), None, prefix
        for scene, scene_block in (block.get("scenes") or {}).items():
            yield ("scenes", scene), scene, None
            for prefix in [*outer, *((scene_block or {}).get("scene_params") or {})]:
                yield ("scenes", scene, "scene_params", prefix), scene, prefix

    def local_time(self, epoch: float) -> datetime:
        return datetime.fromtimestamp(epoch, self.timezone)


def _longest_prefix(blocks: dict[str, Any], scene_param: str | None) -> str | None:
    if not scene_param:
        return None
    matches = [prefix for prefix in blocks if scene_param.startswith(str(prefix))]
    return max(matches, key=len) if matches else None


def _merge_account(default: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(default)
    for key, value in override.items():
        if key in ("scenes", "scene_params"):
            named = dict(merged.get(key) or {})
            for name, block in (value or {}).items():
                named[name] = {**named.get(name, {}), **copy.deepcopy(block or {})}
            merged[key] = named
        else:
            merged[key] = copy.deepcopy(value)
    return merged


# -- loading with line numbers ----------------------------------------------------------------

def _where(lines: dict[tuple[Any, ...], int], path: tuple[Any, ...]) -> str:
    return yamllines.where(lines, path)


def parse_rules(text: str, source: str = "rules", base_dir: Path | None = None) -> Rules:
    """``base_dir``: where asset paths are read from (the rules file's directory); None for rules
    that come from an SSM parameter, which may name S3 assets only."""
    try:
        doc = yamllines.LinedYaml(text, source)
    except yamllines.YamlFileError as exc:
        raise RulesError(str(exc)) from None
    data, lines = doc.data or {}, doc.lines
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
    checker = _Checker(lines, source, base_dir)
    for name, block in accounts.items():
        checker.block(block or {}, ("accounts", name))
        accounts[name] = block or {}
    rules = Rules(str(timezone), accounts)
    for name in accounts:  # every merged (account, scene, scene_param) policy must validate, not only the blocks
        for where, scene, prefix in rules.variants(str(name)):
            path = ("accounts", name, *where)
            try:
                policy = rules.policy(str(name), scene, prefix)
            except ValidationError as exc:
                raise RulesError(_describe(exc, lines, path, source)) from None
            checker.merged(policy, path)
    return rules


class _Checker:
    """Checks of one rules file beyond the models: block shapes, asset files, and the links
    between keys (a menu's click ids and their actions, a rating rule and its menu)."""

    def __init__(self, lines: dict[tuple[Any, ...], int], source: str, base_dir: Path | None) -> None:
        self.lines, self.source, self.base_dir = lines, source, base_dir

    def fail(self, path: tuple[Any, ...], message: str) -> RulesError:
        return RulesError(f"{self.source} {_where(self.lines, path)}: {'.'.join(map(str, path))}: {message}")

    def block(self, block: Any, path: tuple[Any, ...], nested: str | None = None) -> None:
        if not isinstance(block, dict):
            raise self.fail(path, "must be a mapping")
        for key, value in block.items():
            if key in ("scenes", "scene_params"):
                if nested == "scene_params" or (nested == "scenes" and key == "scenes"):
                    raise self.fail((*path, key), f"{key} cannot nest here")
                if not isinstance(value, dict):
                    raise self.fail((*path, key), f"{key} must map names to rules")
                for name, inner in value.items():
                    self.block(inner or {}, (*path, key, name), nested=key)
            elif key not in POLICY_KEYS:
                allowed = BLOCK_KEYS if nested is None else (POLICY_KEYS | {"scene_params"} if nested == "scenes"
                                                              else POLICY_KEYS)
                raise self.fail((*path, key), f"unknown key {key!r} (allowed: {', '.join(sorted(allowed))})")
        try:
            policy = Policy.model_validate({k: v for k, v in block.items() if k not in ("scenes", "scene_params")})
        except ValidationError as exc:
            raise RulesError(_describe(exc, self.lines, path, self.source)) from None
        for where, message in policy.messages():
            for kind, asset in message.assets():
                self.asset(kind, asset, (*path, *where, message.kind))
        if policy.bot is not None and policy.bot.ai is not None:
            self.knowledge(policy.bot.ai.knowledge, (*path, "bot", "ai", "knowledge"))

    def knowledge(self, ref: KnowledgeFile, path: tuple[Any, ...]) -> None:
        if ref.path is None:
            return  # in S3: read at the first question, and a problem hands that customer to a person
        if self.base_dir is None:
            raise self.fail(path, "rules read from an SSM parameter name a knowledge file in S3 "
                                  "({s3: knowledge/<key>}), not a file")
        from kefu.knowledge import KnowledgeError, read_file

        file = (self.base_dir / ref.path).resolve()
        if not file.is_file():
            raise self.fail(path, f"no file {ref.path} beside the rules file ({file})")
        try:
            read_file(str(file))
        except (KnowledgeError, UnicodeDecodeError) as exc:
            raise self.fail(path, str(exc)) from None

    def asset(self, kind: str, asset: outbound.Asset, path: tuple[Any, ...]) -> None:
        if asset.path is None:
            return  # an S3 asset is read when first sent: a missing one fails that send, named in its decision
        if self.base_dir is None:
            raise self.fail(path, "rules read from an SSM parameter name assets in S3 ({s3: assets/<key>}), "
                                  "not files")
        file = (self.base_dir / asset.path).resolve()
        if not file.is_file():
            raise self.fail(path, f"no file {asset.path} beside the rules file ({file})")
        problem = outbound.check_asset(kind, file.read_bytes(), asset.path)
        if problem:
            raise self.fail(path, problem)

    def merged(self, policy: Policy, path: tuple[Any, ...]) -> None:
        rated = {item.id for item in policy.closing.satisfaction.items} if policy.closing and policy.closing.satisfaction else set()
        for where, message in policy.messages():
            for click in message.click_ids():
                if click not in policy.menu_actions and click not in rated:
                    raise self.fail((*path, *where), f"the menu's click id {click!r} has no entry in menu_actions "
                                                     "(a click nobody acts on would go unanswered)")
        if policy.upgrade is not None and policy.upgrade.after_rating is not None and not rated:
            raise self.fail((*path, "upgrade", "after_rating"), "needs closing.satisfaction (the rating menu)")


def _describe(exc: ValidationError, lines: dict[tuple[Any, ...], int], path: tuple[Any, ...], source: str) -> str:
    err = exc.errors()[0]
    loc = tuple(err["loc"])
    full = (*path, *loc)
    name = ".".join(str(p) for p in full)
    text = str(err["msg"]).removeprefix("Value error, ")
    return f"{source} {_where(lines, full)}: {name}: {text}"


def load_rules_file(path: str) -> Rules:
    with open(path, encoding="utf-8") as handle:
        return parse_rules(handle.read(), source=path, base_dir=Path(path).resolve().parent)
