"""Kf accounts and their servicers as code (`kefu accounts plan|apply`).

config/accounts.yaml names the accounts this app should manage: per account an ``alias`` (the
/links alias, LinkAccounts), a ``name`` (at most 16 characters, how customers see the account), an
``avatar`` (a JPG/PNG file beside the file), its ``servicers`` (userids and department ids) and
the ``scenes`` to make contact links for.

An entry is the WeCom account with the same name (kf/account/list); one the file renamed is found
by the alias that apply recorded for it. What apply last made of an account - its alias, name and
the SHA-256 of the avatar it uploaded - is kept in the state table (``kfaccount#<open_kfid>``):
WeCom lists an avatar as a URL, never as the file, so the avatar is re-uploaded only when the
file's digest differs from the last applied one (or none was recorded), and a change made to it
in the admin console is not seen.

``make_plan`` compares the file with WeCom's state and lists the changes; ``apply_plan`` makes them
over WeCom calls. The contact links and reading the state are the CLI's (kefu_cli.accounts).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Protocol

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from kefu.ids import ALIAS_RE, is_scene
from kefu.yamllines import LinedYaml, YamlFileError

NAME_MAX = 16  # WeCom: an account's name is at most 16 characters
USERID_MAX = 64
IMAGE_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png"}
UNMANAGED_WHY = ("manage_privilege is false: the account was made in the admin console (or by another app), not by "
                 "this app, and the admin has not assigned it to this app; an app may only manage the accounts it "
                 "created or the admin assigned to it (admin console: 微信客服 -> API)")


# -- the file --------------------------------------------------------------------------------------

def _unique(values: list[Any]) -> list[Any]:
    seen: set[Any] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"{value!r} is listed twice")
        seen.add(value)
    return values


def _alias(value: str) -> str:
    if not ALIAS_RE.fullmatch(value):
        raise ValueError("an alias is 1 to 64 characters from 0-9, a-z, A-Z, '_' and '-'")
    return value


def _name(value: str) -> str:
    if not value.strip() or value != value.strip():
        raise ValueError("a name is not blank and has no leading or trailing spaces")
    if len(value) > NAME_MAX:
        raise ValueError(f"{len(value)} characters: WeCom takes a name of at most {NAME_MAX}")
    return value


def _userid(value: str) -> str:
    if not value or len(value.encode()) > USERID_MAX or any(c.isspace() for c in value):
        raise ValueError(f"a userid is 1 to {USERID_MAX} bytes without spaces")
    return value


def _scene(value: str) -> str:
    if not is_scene(value):
        raise ValueError("a scene is 1 to 32 characters from 0-9, a-z, A-Z, '_' and '-'")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ServicersSpec(_Strict):
    users: Annotated[list[Annotated[str, AfterValidator(_userid)]], AfterValidator(_unique)] = []
    departments: Annotated[list[Annotated[int, Field(ge=1)]], AfterValidator(_unique)] = []


class AccountSpec(_Strict):
    alias: Annotated[str, AfterValidator(_alias)]
    name: Annotated[str, AfterValidator(_name)]
    avatar: str = Field(min_length=1)
    servicers: ServicersSpec = ServicersSpec()
    scenes: Annotated[list[Annotated[str, AfterValidator(_scene)]], AfterValidator(_unique)] = []


@dataclass(frozen=True)
class Desired:
    """An account as the file wants it (the avatar read and checked)."""

    alias: str
    name: str
    avatar: str  # as written in the file
    avatar_file: Path
    avatar_digest: str  # SHA-256 of the file, hex
    users: tuple[str, ...] = ()
    departments: tuple[int, ...] = ()
    scenes: tuple[str, ...] = ()


def avatar_problem(name: str, data: bytes) -> str | None:
    """What is wrong with ``data`` as an avatar (media/upload image: JPG or PNG, 6 bytes to 10 MB)."""
    from kefu.routing.outbound import check_asset

    return check_asset("image", data, name)


def parse_accounts(text: str, source: str = "accounts.yaml", base_dir: Path | None = None) -> list[Desired]:
    """The accounts of the file's text; a YamlFileError names the line and key at fault.
    ``base_dir``: where avatar paths are read from (the file's directory)."""
    doc = LinedYaml(text, source)
    data = doc.data if doc.data is not None else {}
    if not isinstance(data, dict):
        raise doc.error((), "the top level must be a mapping with 'accounts'")
    for key in data:
        if key != "accounts":
            raise doc.error((key,), f"unknown key {key!r} (allowed: accounts)")
    entries = data.get("accounts")
    if entries is None:
        raise doc.error((), "'accounts' is missing: a list of accounts (an empty list is [])")
    if not isinstance(entries, list):
        raise doc.error(("accounts",), "must be a list of accounts")
    base = base_dir or Path.cwd()
    found: list[Desired] = []
    aliases: dict[str, int] = {}
    names: dict[str, int] = {}
    for index, entry in enumerate(entries):
        path = ("accounts", index)
        if not isinstance(entry, dict):
            raise doc.error(path, "must be a mapping (alias, name, avatar, servicers, scenes)")
        try:
            spec = AccountSpec.model_validate(entry)
        except ValidationError as exc:
            raise doc.invalid(exc, path) from None
        if spec.alias in aliases:
            raise doc.error((*path, "alias"), f"{spec.alias!r} is also the alias of accounts.{aliases[spec.alias]}")
        if spec.name in names:
            raise doc.error((*path, "name"), f"{spec.name!r} is also the name of accounts.{names[spec.name]} (names "
                                             "must be unique: an account is found by its name at WeCom)")
        aliases[spec.alias], names[spec.name] = index, index
        file = (base / spec.avatar).resolve()
        try:
            data_bytes = file.read_bytes()
        except OSError:
            raise doc.error((*path, "avatar"), f"no file {spec.avatar} beside {source} ({file})") from None
        if Path(spec.avatar).suffix.lower() not in IMAGE_TYPES:
            raise doc.error((*path, "avatar"), f"{spec.avatar}: an avatar must be a JPG or PNG file")
        problem = avatar_problem(spec.avatar, data_bytes)
        if problem:
            raise doc.error((*path, "avatar"), problem)
        found.append(Desired(spec.alias, spec.name, spec.avatar, file, hashlib.sha256(data_bytes).hexdigest(),
                             tuple(spec.servicers.users), tuple(spec.servicers.departments), tuple(spec.scenes)))
    return found


def load_accounts_file(path: str | Path) -> list[Desired]:
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise YamlFileError(f"cannot read {file}: {exc}") from None
    return parse_accounts(text, source=str(path), base_dir=file.resolve().parent)


# -- WeCom's state ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Applied:
    """What apply last made of an account (the state table's record)."""

    alias: str | None = None
    name: str | None = None
    avatar_digest: str | None = None


@dataclass(frozen=True)
class Current:
    """An account as WeCom lists it, with what the plan needs to know of it: its servicers (read
    for the accounts the file names), the open sessions Kefu holds (for the others) and the scenes
    that have a stored link."""

    open_kfid: str
    name: str
    managed: bool = True  # manage_privilege
    avatar_url: str = ""
    users: tuple[str, ...] = ()
    departments: tuple[int, ...] = ()
    applied: Applied | None = None
    open_sessions: int = 0
    links: frozenset[str] = frozenset()

    @classmethod
    def listed(cls, entry: dict[str, Any], applied: Applied | None = None) -> Current:
        """From a kf/account/list entry."""
        return cls(str(entry["open_kfid"]), str(entry.get("name") or ""), entry.get("manage_privilege", True) is not False,
                   str(entry.get("avatar") or ""), applied=applied)


@dataclass(frozen=True)
class Matching:
    """Which WeCom account each file entry is (alias -> open_kfid), and the entries that cannot be
    one (alias -> why)."""

    matched: dict[str, str]
    renamed: frozenset[str]  # aliases found by their recorded alias, not their name
    conflicts: dict[str, str]
    claimed: frozenset[str]  # open_kfids a file entry names, matched or in conflict


def match(desired: Iterable[Desired], current: Iterable[Current]) -> Matching:
    """By name; an entry no account is named like, by the alias apply recorded on a managed account
    no entry is named like (the file renamed it)."""
    desired, current = list(desired), list(current)
    by_name: dict[str, list[Current]] = {}
    for account in current:
        by_name.setdefault(account.name, []).append(account)
    matched: dict[str, str] = {}
    conflicts: dict[str, str] = {}
    claimed: set[str] = set()
    for want in desired:
        named = by_name.get(want.name, [])
        managed = [a for a in named if a.managed]
        claimed.update(a.open_kfid for a in named)
        if len(managed) == 1:
            matched[want.alias] = managed[0].open_kfid
        elif len(managed) > 1:
            ids = ", ".join(a.open_kfid for a in managed)
            conflicts[want.alias] = (f"{len(managed)} accounts this app manages are named {want.name!r} ({ids}): "
                                     "rename or delete all but one at WeCom")
        elif named:
            conflicts[want.alias] = (f"an account named {want.name!r} exists ({named[0].open_kfid}) but this app "
                                     "may not manage it (manage_privilege false: made in the admin console, not by "
                                     "this app): assign it to the app in the admin console (微信客服 -> API), or "
                                     "rename the entry")
    renamed: set[str] = set()
    for want in desired:
        if want.alias in matched or want.alias in conflicts:
            continue
        recorded = [a for a in current if a.managed and a.open_kfid not in claimed
                    and a.applied is not None and a.applied.alias == want.alias]
        if len(recorded) == 1:
            matched[want.alias] = recorded[0].open_kfid
            claimed.add(recorded[0].open_kfid)
            renamed.add(want.alias)
    return Matching(matched, frozenset(renamed), conflicts, frozenset(claimed))


# -- the plan --------------------------------------------------------------------------------------

ADD, UPDATE, SERVICERS, LINKS, DELETE = "add", "update", "servicers", "links", "delete"


@dataclass(frozen=True)
class Change:
    """One thing apply does. ``open_kfid`` is None for an account apply adds (and for its servicers
    and links, which follow the add)."""

    kind: str  # add | update | servicers | links | delete
    alias: str | None
    open_kfid: str | None
    name: str
    rename_from: str | None = None  # update: the name at WeCom
    alias_from: str | None = None  # update: the alias recorded by the last apply (recorded only)
    avatar: str | None = None  # add, update: the file to upload
    avatar_file: Path | None = None
    avatar_digest: str | None = None  # add, update: the file's digest, recorded
    avatar_why: str | None = None
    users_add: tuple[str, ...] = ()
    users_del: tuple[str, ...] = ()
    departments_add: tuple[int, ...] = ()
    departments_del: tuple[int, ...] = ()
    scenes: tuple[str, ...] = ()  # links: the scenes without a link yet
    open_sessions: int = 0  # delete (with --force)

    def describe(self) -> str:
        who = f"{self.alias} ({self.open_kfid or 'new'})" if self.alias else f"{self.open_kfid} {self.name!r}"
        if self.kind == ADD:
            return f"add {who}: name {self.name!r}, avatar {self.avatar}"
        if self.kind == UPDATE:
            parts = []
            if self.rename_from is not None:
                parts.append(f"name {self.rename_from!r} -> {self.name!r}")
            if self.avatar is not None:
                parts.append(f"avatar {self.avatar} ({self.avatar_why})")
            if self.alias_from is not None:
                parts.append(f"alias {self.alias_from!r} -> {self.alias!r} (recorded)")
            return f"update {who}: {'; '.join(parts)}"
        if self.kind == SERVICERS:
            return f"servicers of {who}: {diff_text(self)}"
        if self.kind == LINKS:
            return f"links of {who}: {', '.join(self.scenes)}"
        sessions = f" ({self.open_sessions} open session(s), --force)" if self.open_sessions else ""
        return f"delete {who}{sessions}"

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind, "alias": self.alias, "open_kfid": self.open_kfid, "name": self.name}
        optional = {"rename_from": self.rename_from, "alias_from": self.alias_from, "avatar": self.avatar,
                    "avatar_digest": self.avatar_digest if self.avatar else None, "avatar_why": self.avatar_why}
        data.update({k: v for k, v in optional.items() if v is not None})
        if self.kind == SERVICERS:
            data.update(users_add=list(self.users_add), users_del=list(self.users_del),
                        departments_add=list(self.departments_add), departments_del=list(self.departments_del))
        if self.kind == LINKS:
            data["scenes"] = list(self.scenes)
        if self.kind == DELETE:
            data["open_sessions"] = self.open_sessions
        return data


def diff_text(change: Change) -> str:
    parts = [*(f"+{u}" for u in change.users_add), *(f"-{u}" for u in change.users_del),
             *(f"+department {d}" for d in change.departments_add),
             *(f"-department {d}" for d in change.departments_del)]
    return " ".join(parts) or "(none)"


UNMANAGED, UNLISTED, HAS_SESSIONS, CONFLICT = "unmanaged", "unlisted", "open_sessions", "conflict"


@dataclass(frozen=True)
class Held:
    """What apply leaves alone, and why: an account it may not manage, one not in the file (without
    --delete), one with open sessions (without --force), a file entry it cannot place."""

    reason: str  # unmanaged | unlisted | open_sessions | conflict
    open_kfid: str | None
    name: str
    alias: str | None
    detail: str

    def as_json(self) -> dict[str, Any]:
        return {"reason": self.reason, "open_kfid": self.open_kfid, "name": self.name, "alias": self.alias,
                "detail": self.detail}


@dataclass(frozen=True)
class Side:
    """One account side by side: at WeCom (None: not there) and in the file (None: not in it)."""

    alias: str | None
    open_kfid: str | None
    wecom: dict[str, Any] | None
    file: dict[str, Any] | None
    status: str  # add | update | links | unchanged | conflict | delete | unmanaged | unlisted | open_sessions


@dataclass
class Plan:
    changes: list[Change]
    held: list[Held]
    sides: list[Side]
    aliases: dict[str, str | None]  # the file's aliases in order -> open_kfid (None: added by apply)
    delete: bool = False
    force: bool = False

    @property
    def empty(self) -> bool:
        return not self.changes

    @property
    def conflicts(self) -> list[Held]:
        return [h for h in self.held if h.reason == CONFLICT]

    @property
    def blocked(self) -> list[Held]:
        """What the operator asked for and apply will not do (conflicts; deletes held by sessions)."""
        return [h for h in self.held if h.reason in (CONFLICT, HAS_SESSIONS)]

    def of(self, kind: str) -> list[Change]:
        return [c for c in self.changes if c.kind == kind]

    def as_json(self) -> dict[str, Any]:
        return {"changes": [c.as_json() for c in self.changes], "held": [h.as_json() for h in self.held],
                "accounts": [{"alias": s.alias, "open_kfid": s.open_kfid, "status": s.status, "wecom": s.wecom,
                              "file": s.file} for s in self.sides],
                "aliases": self.aliases, "delete": self.delete, "force": self.force}


def _missing(wanted: Iterable[Any], have: Iterable[Any]) -> tuple[Any, ...]:
    present = set(have)
    return tuple(v for v in wanted if v not in present)


def make_plan(desired: list[Desired], current: list[Current], delete: bool = False, force: bool = False) -> Plan:
    """The changes that bring WeCom to ``desired``. Accounts this app may not manage are never
    touched; accounts not in the file are deleted only with ``delete``, and one with open sessions
    only with ``force`` too."""
    by_id = {a.open_kfid: a for a in current}
    found = match(desired, current)
    changes: list[Change] = []
    held: list[Held] = []
    sides: list[Side] = []
    aliases: dict[str, str | None] = {}
    for want in desired:
        in_file: dict[str, Any] = {"name": want.name, "avatar": want.avatar, "avatar_digest": want.avatar_digest,
                   "users": list(want.users), "departments": list(want.departments), "scenes": list(want.scenes)}
        if want.alias in found.conflicts:
            held.append(Held(CONFLICT, None, want.name, want.alias, found.conflicts[want.alias]))
            sides.append(Side(want.alias, None, None, in_file, CONFLICT))
            continue
        open_kfid = found.matched.get(want.alias)
        aliases[want.alias] = open_kfid
        if open_kfid is None:
            changes.append(Change(ADD, want.alias, None, want.name, avatar=want.avatar, avatar_file=want.avatar_file,
                                  avatar_digest=want.avatar_digest, avatar_why="a new account"))
            if want.users or want.departments:
                changes.append(Change(SERVICERS, want.alias, None, want.name, users_add=want.users,
                                      departments_add=want.departments))
            if want.scenes:
                changes.append(Change(LINKS, want.alias, None, want.name, scenes=want.scenes))
            sides.append(Side(want.alias, None, None, in_file, ADD))
            continue
        have = by_id[open_kfid]
        applied = have.applied or Applied()
        before = len(changes)
        rename = have.name if have.name != want.name else None
        avatar_why = None
        if applied.avatar_digest is None:
            avatar_why = "no avatar applied by kefu is recorded for this account"
        elif applied.avatar_digest != want.avatar_digest:
            avatar_why = f"the file changed since the last apply: sha256 {applied.avatar_digest[:12]} -> " \
                         f"{want.avatar_digest[:12]}"
        alias_from = applied.alias if applied.alias is not None and applied.alias != want.alias else None
        if rename is not None or avatar_why is not None or alias_from is not None:
            changes.append(Change(UPDATE, want.alias, open_kfid, want.name, rename_from=rename, alias_from=alias_from,
                                  avatar=want.avatar if avatar_why else None,
                                  avatar_file=want.avatar_file if avatar_why else None,
                                  avatar_digest=want.avatar_digest, avatar_why=avatar_why))
        servicers = Change(SERVICERS, want.alias, open_kfid, want.name,
                           users_add=_missing(want.users, have.users),
                           users_del=tuple(sorted(_missing(have.users, want.users))),
                           departments_add=_missing(want.departments, have.departments),
                           departments_del=tuple(sorted(_missing(have.departments, want.departments))))
        if servicers.users_add or servicers.users_del or servicers.departments_add or servicers.departments_del:
            changes.append(servicers)
        unlinked = _missing(want.scenes, have.links)
        if unlinked:
            changes.append(Change(LINKS, want.alias, open_kfid, want.name, scenes=unlinked))
        at_wecom: dict[str, Any] = {"name": have.name, "avatar": have.avatar_url, "avatar_digest": applied.avatar_digest,
                    "users": list(have.users), "departments": list(have.departments),
                    "scenes": sorted(s for s in have.links if s in want.scenes)}
        kinds = {c.kind for c in changes[before:]}
        status = UPDATE if kinds - {LINKS} else LINKS if kinds else "unchanged"
        sides.append(Side(want.alias, open_kfid, at_wecom, in_file, status))
    for have in current:
        if have.open_kfid in found.claimed:
            continue
        listed: dict[str, Any] = {"name": have.name, "avatar": have.avatar_url, "managed": have.managed,
                    "open_sessions": have.open_sessions}
        recorded = have.applied.alias if have.applied else None
        if not have.managed:
            held.append(Held(UNMANAGED, have.open_kfid, have.name, None, UNMANAGED_WHY))
            sides.append(Side(None, have.open_kfid, listed, None, UNMANAGED))
        elif not delete:
            held.append(Held(UNLISTED, have.open_kfid, have.name, recorded,
                             "not in the file; apply deletes it only with --delete"
                             + (f" (it has {have.open_sessions} open session(s))" if have.open_sessions else "")))
            sides.append(Side(recorded, have.open_kfid, listed, None, UNLISTED))
        elif have.open_sessions and not force:
            held.append(Held(HAS_SESSIONS, have.open_kfid, have.name, recorded,
                             f"not in the file, but {have.open_sessions} session(s) are open on it: not deleted "
                             "(--force deletes it anyway)"))
            sides.append(Side(recorded, have.open_kfid, listed, None, HAS_SESSIONS))
        else:
            changes.append(Change(DELETE, recorded, have.open_kfid, have.name, open_sessions=have.open_sessions))
            sides.append(Side(recorded, have.open_kfid, listed, None, DELETE))
    order = {ADD: 0, UPDATE: 1, SERVICERS: 2, DELETE: 3, LINKS: 4}
    changes.sort(key=lambda c: order[c.kind])  # stable: the file's order within a kind
    return Plan(changes, held, sides, aliases, delete, force)


def link_accounts(aliases: dict[str, str | None]) -> str:
    """The LinkAccounts parameter: alias=open_kfid in the file's order (the first is the default)."""
    return ",".join(f"{alias}={kfid}" for alias, kfid in aliases.items() if kfid)


# -- applying --------------------------------------------------------------------------------------

class AccountsApi(Protocol):
    """WeComClient: the kf calls and media/upload."""

    def read(self, path: str, body: dict[str, Any] | None = None, *,
             params: dict[str, str] | None = None) -> dict[str, Any]: ...

    def write(self, path: str, body: dict[str, Any], *, retry_not_executed: bool = False) -> dict[str, Any]: ...

    def upload(self, path: str, params: dict[str, str], filename: str, data: bytes,
               content_type: str) -> dict[str, Any]: ...


class AppliedRecords(Protocol):
    """The state table's record of what apply made of an account."""

    def put(self, open_kfid: str, record: Applied) -> None: ...

    def forget(self, open_kfid: str) -> None: ...


@dataclass
class Step:
    """A change as it went: ``ok``, what was done (or why not), and for servicers the per-item
    results ({userid | department_id, action, errcode, errmsg})."""

    change: Change
    ok: bool
    open_kfid: str | None
    detail: str
    items: list[dict[str, Any]] = field(default_factory=list)

    @property
    def failed_items(self) -> list[dict[str, Any]]:
        return [i for i in self.items if i.get("errcode") != 0]

    def as_json(self) -> dict[str, Any]:
        return {**self.change.as_json(), "open_kfid": self.open_kfid, "ok": self.ok, "detail": self.detail,
                **({"results": self.items} if self.change.kind == SERVICERS else {})}


@dataclass
class ApplyReport:
    steps: list[Step]
    aliases: dict[str, str | None]

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.steps)


def _reportable(exc: Exception) -> bool:
    """A WeCom refusal, an unreadable avatar, the state table failing: reported as the change's
    failure while the other changes are still made. Anything else is a bug and propagates."""
    from kefu.wecom.errors import WeComError

    return isinstance(exc, WeComError | OSError) or type(exc).__module__.split(".")[0] in ("botocore", "boto3")


def _error(exc: Exception) -> str:
    from kefu.wecom.errors import WeComError

    if isinstance(exc, WeComError):
        return f"{exc.path}: errcode {exc.errcode} {exc.errmsg}"
    return f"{type(exc).__name__}: {exc}"


def _item_results(action: str, userids: tuple[str, ...], departments: tuple[int, ...],
                  results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One result per userid and department asked for, in that order (an item WeCom answered
    nothing for is a failure: its state is unknown)."""
    by_user = {str(r["userid"]): r for r in results if r.get("userid")}
    by_department = {str(r["department_id"]): r for r in results if r.get("department_id") is not None}
    out: list[dict[str, Any]] = []
    for key, wanted in (("userid", [str(u) for u in userids]), ("department_id", [str(d) for d in departments])):
        answered = by_user if key == "userid" else by_department
        for value in wanted:
            result = answered.get(value)
            item: dict[str, Any] = {key: value if key == "userid" else int(value), "action": action}
            if result is None:
                item.update(errcode=-1, errmsg="WeCom returned no result for it")
            else:
                item.update(errcode=int(result.get("errcode") or 0), errmsg=str(result.get("errmsg") or ""))
            out.append(item)
    return out


def apply_plan(plan: Plan, client: AccountsApi, records: AppliedRecords, open_sessions: Callable[[str], int],
               read_file: Callable[[Path], bytes] = Path.read_bytes) -> ApplyReport:
    """Make the plan's WeCom changes (not its links: they are made through the stack): adds (the
    avatar uploaded first), updates, servicer adds then removals (batches of 100, per-item results),
    deletes (the open sessions counted again first, unless the plan was made with force). A failed
    change is reported and the others still made; an added account's servicers wait for its add."""
    from kefu.wecom import kf

    aliases = dict(plan.aliases)
    steps: list[Step] = []

    def upload(change: Change) -> str:
        if change.avatar_file is None or change.avatar is None:
            raise ValueError(f"{change.alias}: no avatar to upload")  # make_plan gives every add and avatar update one
        data = read_file(change.avatar_file)
        content_type = IMAGE_TYPES.get(change.avatar_file.suffix.lower(), "image/jpeg")
        media_id, _ = kf.media_upload(client, "image", Path(change.avatar).name, data, content_type)
        return media_id

    for change in plan.changes:
        open_kfid = change.open_kfid or (aliases.get(change.alias) if change.alias else None)
        try:
            if change.kind == ADD:
                open_kfid = kf.account_add(client, change.name, upload(change))
                aliases[str(change.alias)] = open_kfid
                records.put(open_kfid, Applied(change.alias, change.name, change.avatar_digest))
                steps.append(Step(change, True, open_kfid, f"added {open_kfid} {change.name!r}"))
            elif change.kind == UPDATE:
                if open_kfid is None:
                    raise ValueError(f"{change.alias}: the account to update is not known")
                media_id = upload(change) if change.avatar is not None else None
                if change.rename_from is not None or media_id is not None:
                    kf.account_update(client, open_kfid, name=change.name if change.rename_from is not None else None,
                                      media_id=media_id)
                records.put(open_kfid, Applied(change.alias, change.name, change.avatar_digest))
                steps.append(Step(change, True, open_kfid, change.describe().split(": ", 1)[1]))
            elif change.kind == SERVICERS:
                if open_kfid is None:
                    steps.append(Step(change, False, None, "not made: the account was not added"))
                    continue
                items: list[dict[str, Any]] = []
                if change.users_add or change.departments_add:
                    results = kf.servicer_change(client, "add", open_kfid, list(change.users_add),
                                                 list(change.departments_add))
                    items += _item_results("add", change.users_add, change.departments_add, results)
                if change.users_del or change.departments_del:
                    results = kf.servicer_change(client, "del", open_kfid, list(change.users_del),
                                                 list(change.departments_del))
                    items += _item_results("del", change.users_del, change.departments_del, results)
                failed = [i for i in items if i["errcode"] != 0]
                steps.append(Step(change, not failed, open_kfid,
                                  f"{len(items) - len(failed)} done, {len(failed)} failed", items))
            elif change.kind == LINKS:
                continue  # made through the stack's GET /links by the caller, once the accounts exist
            elif change.kind == DELETE:
                if open_kfid is None:
                    raise ValueError("the account to delete is not known")
                sessions = 0 if plan.force else open_sessions(open_kfid)
                if sessions:
                    steps.append(Step(change, False, open_kfid, f"not deleted: {sessions} session(s) opened since the "
                                                                "plan (--force deletes it anyway)"))
                    continue
                kf.account_del(client, open_kfid)
                records.forget(open_kfid)
                steps.append(Step(change, True, open_kfid, f"deleted {open_kfid} {change.name!r}"))
        except Exception as exc:
            if not _reportable(exc):
                raise
            steps.append(Step(change, False, open_kfid, _error(exc)))
    return ApplyReport(steps, aliases)
