"""`kefu accounts plan|apply`: the kf accounts, their servicers and contact links as config/accounts.yaml
says (kefu.accounts_plan). plan reads WeCom (kf/account/list, kf/servicer/list), the stack's
records of earlier applies, open sessions and stored links, and shows what apply would change;
apply makes it so and then asks the stack's GET /links for the links that are missing.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from kefu.accounts_plan import (
    ADD,
    CONFLICT,
    DELETE,
    HAS_SESSIONS,
    LINKS,
    SERVICERS,
    UNLISTED,
    UNMANAGED,
    UPDATE,
    Applied,
    ApplyReport,
    Current,
    Desired,
    Plan,
    YamlFileError,
    link_accounts,
    load_accounts_file,
    make_plan,
    match,
)
from kefu_cli.output import table
from kefu_cli.target import CliError, Target
from kefu_cli.wecom import WeCom, diagnose, read_secrets

DEFAULT_FILE = Path("config") / "accounts.yaml"
MARKS = {ADD: "+", UPDATE: "~", SERVICERS: "~", LINKS: "+", DELETE: "-"}


def resolve_file(path: Path) -> Path:
    """The accounts file: as given; the default (config/accounts.yaml) when missing from the working
    directory is the project's."""
    if path == DEFAULT_FILE and not path.exists():
        from kefu_cli.target import project_root

        return project_root() / DEFAULT_FILE
    return path


def load(path: Path) -> list[Desired]:
    try:
        return load_accounts_file(path)
    except YamlFileError as exc:
        raise CliError(str(exc), exit_code=2) from None


class StateRecords:
    """The state table's side: what earlier applies recorded, open sessions, stored links."""

    def __init__(self, target: Target) -> None:
        name = target.output("StateTableName")
        self.table = target.session().resource("dynamodb", endpoint_url=target.aws_endpoint or None).Table(name)

    def applied(self, open_kfids: list[str]) -> dict[str, Applied]:
        from kefu.store import keys

        found: dict[str, Applied] = {}
        for open_kfid in open_kfids:  # a few accounts: one read each keeps it simple
            item = self.table.get_item(Key=keys.kf_account(open_kfid)).get("Item")
            if item:
                found[open_kfid] = Applied(item.get("alias"), item.get("name"), item.get("avatar_digest"))
        return found

    def put(self, open_kfid: str, record: Applied) -> None:
        from kefu.store import keys

        item: dict[str, Any] = {**keys.kf_account(open_kfid), "applied_at": int(time.time())}
        item.update({k: v for k, v in (("alias", record.alias), ("name", record.name),
                                        ("avatar_digest", record.avatar_digest)) if v is not None})
        self.table.put_item(Item=item)

    def forget(self, open_kfid: str) -> None:
        from kefu.store import keys

        self.table.delete_item(Key=keys.kf_account(open_kfid))

    def open_sessions(self, open_kfid: str) -> int:
        """Sessions open on the account: its entries in the sparse ``active`` index."""
        from boto3.dynamodb.conditions import Key

        from kefu.store import keys
        from kefu.store.active_sessions import INDEX

        args: dict[str, Any] = {"IndexName": INDEX, "Select": "COUNT",
                                "KeyConditionExpression": Key("active_of").eq(keys.indexed(open_kfid))}
        count = 0
        while True:
            page = self.table.query(**args)
            count += int(page.get("Count", 0))
            if not page.get("LastEvaluatedKey"):
                return count
            args["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def linked_scenes(self, open_kfid: str) -> frozenset[str]:
        """The scenes with a stored contact link (``link#<open_kfid>`` / scene)."""
        from boto3.dynamodb.conditions import Key

        from kefu.store import keys

        args: dict[str, Any] = {"KeyConditionExpression": Key("pk").eq(keys.link(open_kfid, "")["pk"]),
                                "ProjectionExpression": "sk"}
        scenes: set[str] = set()
        while True:
            page = self.table.query(**args)
            scenes.update(str(i["sk"]) for i in page.get("Items", []))
            if not page.get("LastEvaluatedKey"):
                return frozenset(scenes)
            args["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _wecom(target: Target) -> WeCom:
    values, missing = read_secrets(target)
    if not values.get("corp-secret"):
        raise CliError(f"no corp secret in SSM ({', '.join(missing) or target.secrets_prefix}); run `kefu preflight`")
    return WeCom(target, values["corp-secret"])


def read_current(wecom: WeCom, records: StateRecords, desired: list[Desired]) -> list[Current]:
    """WeCom's accounts with what the plan needs: servicers and links of the accounts the file
    names, open sessions of the others this app manages."""
    from kefu.wecom import kf

    listing = kf.account_list(wecom.client)
    applied = records.applied([str(a["open_kfid"]) for a in listing if a.get("manage_privilege", True) is not False])
    current = [Current.listed(a, applied.get(str(a["open_kfid"]))) for a in listing]
    found = match(desired, current)
    named = set(found.matched.values())
    filled: list[Current] = []
    for account in current:
        if account.open_kfid in named:
            servicers = kf.servicers(wecom.client, account.open_kfid)
            account = Current(account.open_kfid, account.name, account.managed, account.avatar_url,
                              tuple(servicers.users), servicers.departments, account.applied,
                              links=records.linked_scenes(account.open_kfid))
        elif account.managed and account.open_kfid not in found.claimed:
            account = Current(account.open_kfid, account.name, account.managed, account.avatar_url,
                              applied=account.applied, open_sessions=records.open_sessions(account.open_kfid))
        filled.append(account)
    return filled


def plan(target: Target, path: Path, delete: bool, force: bool) -> Plan:
    from kefu.wecom.errors import WeComError

    desired = load(path)
    records = StateRecords(target)
    wecom = _wecom(target)
    try:
        current = read_current(wecom, records, desired)
    except WeComError as exc:
        raise CliError(f"cannot read the kf accounts: {diagnose(exc, target).summary}") from None
    finally:
        wecom.close()
    return make_plan(desired, current, delete, force)


def apply(target: Target, http: Any, path: Path, delete: bool, force: bool) -> tuple[Plan, ApplyReport,
                                                                                      list[dict[str, Any]]]:
    """The plan, what apply made of its WeCom changes, and the links asked for."""
    from kefu.accounts_plan import apply_plan
    from kefu.wecom.errors import WeComError

    desired = load(path)
    records = StateRecords(target)
    wecom = _wecom(target)
    try:
        current = read_current(wecom, records, desired)
        the_plan = make_plan(desired, current, delete, force)
        report = apply_plan(the_plan, wecom.client, records, records.open_sessions)
    except WeComError as exc:
        raise CliError(f"cannot read the kf accounts: {diagnose(exc, target).summary}") from None
    finally:
        wecom.close()
    return the_plan, report, make_links(target, http, the_plan, report)


def make_links(target: Target, http: Any, the_plan: Plan, report: ApplyReport) -> list[dict[str, Any]]:
    """GET /links for each scene without a stored link (the stack asks WeCom and stores it)."""
    from kefu_cli import link

    made: list[dict[str, Any]] = []
    for change in the_plan.of(LINKS):
        open_kfid = change.open_kfid or report.aliases.get(str(change.alias))
        for scene in change.scenes:
            entry: dict[str, Any] = {"alias": change.alias, "open_kfid": open_kfid, "scene": scene}
            if open_kfid is None:
                entry.update(ok=False, error="not made: the account was not added")
            else:
                try:
                    entry.update(ok=True, url=link.run(target, http, scene, None, open_kfid, None, None)["url"])
                except CliError as exc:
                    entry.update(ok=False, error=str(exc))
            made.append(entry)
    return made


# -- text --------------------------------------------------------------------------------------------

def _listed(values: list[Any]) -> str:
    return ", ".join(map(str, values)) if values else "-"


def _avatar(side: dict[str, Any] | None, in_file: bool) -> str:
    if side is None:
        return "-"
    digest = str(side.get("avatar_digest") or "")
    if in_file:
        return f"{side['avatar']} (sha256 {digest[:12]})"
    return f"sha256 {digest[:12]} (last applied)" if digest else "(no applied avatar recorded)"


def _account_block(side: Any, the_plan: Plan) -> str:
    wecom, file = side.wecom, side.file
    head = f"{side.alias or '-'}  {side.open_kfid or '(new)'}  {side.status}"
    changes = {c.kind: c for c in the_plan.changes if c.alias == side.alias and c.open_kfid == side.open_kfid}
    update, servicers, links = changes.get(UPDATE), changes.get(SERVICERS), changes.get(LINKS)

    def users_change(users: bool) -> str:
        if servicers is None:
            return ""
        add, drop = ((servicers.users_add, servicers.users_del) if users
                     else (servicers.departments_add, servicers.departments_del))
        return " ".join([*(f"+{v}" for v in add), *(f"-{v}" for v in drop)])

    rows = [
        ["name", wecom["name"] if wecom else "-", file["name"],
         "add" if side.status == ADD else "rename" if update and update.rename_from is not None else ""],
        ["avatar", _avatar(wecom, False), _avatar(file, True),
         "upload" if side.status == ADD or (update and update.avatar) else ""],
        ["users", _listed(wecom["users"]) if wecom else "-", _listed(file["users"]), users_change(True)],
        ["departments", _listed(wecom["departments"]) if wecom else "-", _listed(file["departments"]),
         users_change(False)],
        ["scenes", _listed(wecom["scenes"]) if wecom else "-", _listed(file["scenes"]),
         f"link {' '.join(links.scenes)}" if links else ""],
    ]
    body = table(["", "AT WECOM", "IN FILE", "CHANGE"], rows)
    return head + "\n" + "\n".join("  " + line for line in body.splitlines())


def render_plan(the_plan: Plan, source: Path, target: Target) -> str:
    out = [f"kf accounts: {source} against corp {target.corp_id} ({target.describe()})", ""]
    for side in the_plan.sides:
        if side.file is not None and side.status != CONFLICT:
            out += [_account_block(side, the_plan), ""]
    if the_plan.of(DELETE) or any(h.reason in (UNLISTED, HAS_SESSIONS) for h in the_plan.held):
        out.append("At WeCom, not in the file:")
        for held in the_plan.held:
            if held.reason in (UNLISTED, HAS_SESSIONS):
                out.append(f"  {held.open_kfid}  {held.name!r}  kept: {held.detail}")
        for change in the_plan.of(DELETE):
            out.append(f"  {change.open_kfid}  {change.name!r}  deleted by apply"
                       + (f" ({change.open_sessions} open session(s), --force)" if change.open_sessions else ""))
        out.append("")
    unmanaged = [h for h in the_plan.held if h.reason in (UNMANAGED, CONFLICT)]
    if unmanaged:
        out.append("Cannot touch:")
        for held in unmanaged:
            who = f"{held.alias} (in the file)" if held.reason == CONFLICT else f"{held.open_kfid}  {held.name!r}"
            out.append(f"  {who}: {held.detail}")
        out.append("")
    if the_plan.empty:
        out.append(f"No changes: WeCom matches {source}.")
    else:
        out.append(f"Changes ({len(the_plan.changes)}):")
        out += [f"  {MARKS[c.kind]} {c.describe()}" for c in the_plan.changes]
        out.append("Run `kefu accounts apply` to make them.")
    if the_plan.blocked:
        out.append(f"{len(the_plan.blocked)} account(s) cannot be brought to the file (see above).")
    known = link_accounts(the_plan.aliases)
    if known and all(the_plan.aliases.values()) and not target.local and target.parameters.get("LinkAccounts") != known:
        out += ["", *link_accounts_advice(the_plan.aliases, target)]
    return "\n".join(out)


def render_apply(the_plan: Plan, report: ApplyReport, links: list[dict[str, Any]], source: Path,
                 target: Target) -> str:
    out: list[str] = []
    if the_plan.empty and not the_plan.blocked:
        out.append(f"No changes: WeCom matches {source}; nothing was done.")
    elif the_plan.empty:
        out.append("Nothing was done: what is left to change is held (below).")
    for step in report.steps:
        mark = "✓" if step.ok else "✗"
        change = step.change
        if change.kind == SERVICERS:
            who = f"{change.alias} ({step.open_kfid or 'not added'})"
            done: dict[tuple[str, bool], list[str]] = {(a, ok): [] for a in ("add", "del") for ok in (True, False)}
            for item in step.items:
                name = str(item.get("userid") or f"department {item.get('department_id')}")
                ok = item["errcode"] == 0
                done[(item["action"], ok)].append(name if ok else f"{name} ({item['errcode']} {item['errmsg']})")
            parts = [f"added {', '.join(done[('add', True)])}" if done[("add", True)] else "",
                     f"removed {', '.join(done[('del', True)])}" if done[("del", True)] else "",
                     f"FAILED to add {', '.join(done[('add', False)])}" if done[("add", False)] else "",
                     f"FAILED to remove {', '.join(done[('del', False)])}" if done[("del", False)] else ""]
            text = "; ".join(p for p in parts if p) or step.detail
            out.append(f"{mark} servicers of {who}: {text}")
        else:
            out.append(f"{mark} {change.kind} {change.alias or change.open_kfid}: {step.detail}")
    for made in links:
        mark = "✓" if made["ok"] else "✗"
        out.append(f"{mark} link {made['alias']} {made['scene']}: {made.get('url') or made.get('error')}")
    for held in the_plan.held:
        if held.reason in (CONFLICT, HAS_SESSIONS, UNLISTED):
            mark = "!" if held.reason == UNLISTED else "✗"
            out.append(f"{mark} {held.alias or held.open_kfid} {held.name!r}: {held.detail}")
    out += ["", *link_accounts_advice(report.aliases, target)]
    failed = sum(not s.ok for s in report.steps) + sum(not m["ok"] for m in links) + len(the_plan.blocked)
    if failed:
        out.append(f"apply failed: {failed} problem(s) above")
    elif not the_plan.empty:
        out.append(f"apply done: WeCom matches {source}")
    return "\n".join(out)


def link_accounts_advice(aliases: dict[str, str | None], target: Target) -> list[str]:
    """The LinkAccounts value for the file's aliases, and how the stack takes it."""
    value = link_accounts(aliases)
    if not value:
        return ["LinkAccounts: none of the file's accounts exists at WeCom."]
    lines = [f"LinkAccounts={value}"]
    deployed = target.parameters.get("LinkAccounts")
    if target.local:
        lines.append("  GET /links takes these aliases (the first is the default account) once the stack has "
                     "them: start the local stack with")
        lines.append(f"  KEFU_TEMPLATE_PARAMS='{{\"LinkAccounts\": \"{value}\"}}'")
    elif deployed == value:
        lines.append(f"  the stack {target.stack_name} has this LinkAccounts already")
    else:
        lines.append(f"  GET /links takes these aliases (the first is the default account) once the stack has them; "
                     f"the stack {target.stack_name} has {deployed or 'none'}.")
        lines.append(f"  Add LinkAccounts=\\\"{value}\\\" to parameter_overrides in samconfig.toml, then `sam deploy`.")
    return lines


def plan_json(the_plan: Plan, source: Path) -> dict[str, Any]:
    return {"file": str(source), **the_plan.as_json(), "link_accounts": link_accounts(the_plan.aliases),
            "ok": not the_plan.blocked}


def apply_json(the_plan: Plan, report: ApplyReport, links: list[dict[str, Any]], source: Path) -> dict[str, Any]:
    ok = report.ok and all(m["ok"] for m in links) and not the_plan.blocked
    return {"file": str(source), "ok": ok, "changed": not the_plan.empty,
            "steps": [s.as_json() for s in report.steps], "links": links,
            "held": [h.as_json() for h in the_plan.held], "aliases": report.aliases,
            "link_accounts": link_accounts(report.aliases)}
