"""Accounts as code (kefu.accounts_plan): the file's validation, the plan (desired vs WeCom's state)
and the apply runner over an in-memory WeCom."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

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
    Current,
    Desired,
    YamlFileError,
    apply_plan,
    link_accounts,
    load_accounts_file,
    make_plan,
    parse_accounts,
)
from kefu.wecom.errors import WeComError

ROOT = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
JPG = b"\xff\xd8\xff\xe0" + b"\x01" * 32


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def want(alias: str = "sales", name: str = "售前", users: tuple[str, ...] = (), departments: tuple[int, ...] = (),
         scenes: tuple[str, ...] = (), avatar: bytes = PNG) -> Desired:
    return Desired(alias, name, f"{alias}.png", Path(f"/nowhere/{alias}.png"), digest(avatar), users, departments,
                   scenes)


def have(open_kfid: str, name: str, managed: bool = True, users: tuple[str, ...] = (),
         departments: tuple[int, ...] = (), applied: Applied | None = None, sessions: int = 0,
         links: tuple[str, ...] = ()) -> Current:
    return Current(open_kfid, name, managed, "https://wework.qpic.cn/x", users, departments, applied, sessions,
                   frozenset(links))


def applied(alias: str = "sales", name: str = "售前", avatar: bytes = PNG) -> Applied:
    return Applied(alias, name, digest(avatar))


# -- the file ------------------------------------------------------------------------------------

@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "a.png").write_bytes(PNG)
    (tmp_path / "b.jpg").write_bytes(JPG)
    (tmp_path / "notes.txt").write_bytes(b"hello there")
    return tmp_path


def error(text: str, folder: Path) -> str:
    with pytest.raises(YamlFileError) as caught:
        parse_accounts(text, source="accounts.yaml", base_dir=folder)
    return str(caught.value)


def test_the_example_file_loads() -> None:
    accounts = load_accounts_file(ROOT / "config" / "accounts.yaml")
    assert [a.alias for a in accounts] == ["sales", "support"]
    assert all(a.avatar_file.is_file() and len(a.avatar_digest) == 64 for a in accounts)
    assert accounts[0].departments == (2,) and "home" in accounts[0].scenes


def test_a_file_is_read_with_avatars_relative_to_it(folder: Path) -> None:
    text = ("accounts:\n  - alias: sales\n    name: 售前咨询\n    avatar: a.png\n"
            "    servicers: {users: [alice, bob], departments: [3]}\n    scenes: [home]\n"
            "  - {alias: support, name: Support, avatar: b.jpg}\n")
    sales, support = parse_accounts(text, base_dir=folder)
    assert sales == Desired("sales", "售前咨询", "a.png", folder / "a.png", digest(PNG), ("alice", "bob"), (3,),
                            ("home",))
    assert support.users == () and support.scenes == () and support.avatar_digest == digest(JPG)


@pytest.mark.parametrize(("text", "line", "words"), [
    ("accounts:\n  - alias: s\n    name: n\n    avatar: a.png\n    owner: x\n", 5, ["accounts.0.owner", "Extra"]),
    ("account: []\n", 1, ["unknown key 'account'"]),
    ("accounts:\n  - alias: s\n    name: 一二三四五六七八九十一二三四五六七\n    avatar: a.png\n", 3,
     ["accounts.0.name", "17 characters", "at most 16"]),
    ("accounts:\n  - alias: 's p'\n    name: n\n    avatar: a.png\n", 2, ["accounts.0.alias"]),
    ("accounts:\n  - alias: s\n    name: n\n    avatar: missing.png\n", 4, ["accounts.0.avatar", "no file missing.png"]),
    ("accounts:\n  - alias: s\n    name: n\n    avatar: notes.txt\n", 4, ["JPG or PNG"]),
    ("accounts:\n  - {alias: s, name: n, avatar: a.png}\n  - alias: t\n    name: n\n    avatar: a.png\n", 4,
     ["accounts.1.name", "also the name of accounts.0", "found by its name"]),
    ("accounts:\n  - {alias: s, name: n, avatar: a.png}\n  - {alias: s, name: m, avatar: a.png}\n", 3,
     ["accounts.1.alias", "also the alias"]),
    ("accounts:\n  - alias: s\n    name: n\n    avatar: a.png\n    servicers:\n      users: [a, a]\n", 6,
     ["accounts.0.servicers.users", "listed twice"]),
    ("accounts:\n  - alias: s\n    name: n\n    avatar: a.png\n    servicers: {departments: ['2']}\n", 5,
     ["accounts.0.servicers.departments.0"]),
    ("accounts:\n  - alias: s\n    name: n\n    avatar: a.png\n    scenes: [ok, 'no way']\n", 5,
     ["accounts.0.scenes.1", "a scene is"]),
    ("accounts:\n  - alias: s\n    alias: t\n", 3, ["duplicate key 'alias'"]),
])
def test_errors_name_the_key_and_its_line(folder: Path, text: str, line: int, words: list[str]) -> None:
    message = error(text, folder)
    assert message.startswith(f"accounts.yaml line {line}:"), message
    for word in words:
        assert word in message, message


# -- the plan ------------------------------------------------------------------------------------

def test_an_account_not_at_wecom_is_added_with_its_servicers_and_links() -> None:
    plan = make_plan([want(users=("alice",), departments=(2,), scenes=("home", "promo"))], [])
    assert [c.kind for c in plan.changes] == [ADD, SERVICERS, LINKS]
    add, servicers, links = plan.changes
    assert add.open_kfid is None and add.name == "售前" and add.avatar == "sales.png" and add.avatar_digest == digest(PNG)
    assert servicers.users_add == ("alice",) and servicers.departments_add == (2,) and not servicers.users_del
    assert links.scenes == ("home", "promo")
    assert plan.aliases == {"sales": None} and plan.sides[0].status == ADD


def test_an_account_as_the_file_says_changes_nothing() -> None:
    plan = make_plan([want(users=("alice",), departments=(2,), scenes=("home",))],
                     [have("wkA0000001", "售前", users=("alice",), departments=(2,), applied=applied(), links=("home",))])
    assert plan.empty and plan.held == [] and plan.sides[0].status == "unchanged"
    assert plan.aliases == {"sales": "wkA0000001"} and link_accounts(plan.aliases) == "sales=wkA0000001"


def test_a_name_changed_in_the_file_is_found_by_the_recorded_alias_and_renamed() -> None:
    plan = make_plan([want(name="售前咨询")], [have("wkA0000001", "售前", applied=applied())])
    assert [c.kind for c in plan.changes] == [UPDATE]
    update = plan.changes[0]
    assert update.open_kfid == "wkA0000001" and update.rename_from == "售前" and update.name == "售前咨询"
    assert update.avatar is None  # the avatar's digest is the applied one


def test_without_a_record_a_renamed_entry_is_a_new_account_and_the_old_one_is_kept() -> None:
    plan = make_plan([want(name="售前咨询")], [have("wkA0000001", "售前")])
    assert [c.kind for c in plan.changes] == [ADD]
    assert [(h.reason, h.open_kfid) for h in plan.held] == [(UNLISTED, "wkA0000001")]


def test_the_avatar_is_uploaded_when_its_digest_differs_from_the_last_applied_or_none_is_recorded() -> None:
    same = make_plan([want()], [have("wkA0000001", "售前", applied=applied())])
    assert same.empty
    changed = make_plan([want(avatar=JPG)], [have("wkA0000001", "售前", applied=applied())])
    update = changed.changes[0]
    assert update.kind == UPDATE and update.rename_from is None and update.avatar == "sales.png"
    assert update.avatar_digest == digest(JPG) and "changed since the last apply" in str(update.avatar_why)
    unknown = make_plan([want()], [have("wkA0000001", "售前")])  # made in the console, assigned to the app
    assert unknown.changes[0].avatar == "sales.png" and "no avatar applied" in str(unknown.changes[0].avatar_why)


def test_an_alias_changed_in_the_file_is_recorded() -> None:
    plan = make_plan([want(alias="presales")], [have("wkA0000001", "售前", applied=applied(alias="sales"))])
    (update,) = plan.changes
    assert update.kind == UPDATE and update.alias_from == "sales" and update.rename_from is None and not update.avatar
    assert plan.aliases == {"presales": "wkA0000001"}


def test_servicers_are_diffed_users_and_departments_alike() -> None:
    plan = make_plan([want(users=("alice", "carol"), departments=(2, 5))],
                     [have("wkA0000001", "售前", users=("dave", "alice", "bob"), departments=(5, 9), applied=applied())])
    (servicers,) = plan.changes
    assert servicers.kind == SERVICERS and servicers.open_kfid == "wkA0000001"
    assert servicers.users_add == ("carol",) and servicers.users_del == ("bob", "dave")
    assert servicers.departments_add == (2,) and servicers.departments_del == (9,)
    assert "+carol -bob -dave +department 2 -department 9" in servicers.describe()


def test_only_missing_links_are_made() -> None:
    plan = make_plan([want(scenes=("home", "promo"))], [have("wkA0000001", "售前", applied=applied(), links=("home",))])
    assert [(c.kind, c.scenes) for c in plan.changes] == [(LINKS, ("promo",))]
    assert plan.sides[0].status == LINKS


def test_unmanaged_accounts_are_never_touched_even_with_delete_and_force() -> None:
    plan = make_plan([], [have("wkC0000001", "前台", managed=False, sessions=3)], delete=True, force=True)
    assert plan.empty
    (held,) = plan.held
    assert held.reason == UNMANAGED and held.open_kfid == "wkC0000001"
    assert "admin console" in held.detail and "not by this app" in held.detail and "assigned" in held.detail
    assert not plan.blocked  # nothing the operator asked for


def test_an_entry_named_like_an_unmanaged_account_is_a_conflict() -> None:
    plan = make_plan([want(name="前台")], [have("wkC0000001", "前台", managed=False)])
    assert plan.empty and [h.reason for h in plan.held] == [CONFLICT] and plan.blocked
    assert "may not manage it" in plan.held[0].detail and plan.sides[0].status == CONFLICT


def test_two_managed_accounts_with_the_file_name_are_a_conflict() -> None:
    plan = make_plan([want()], [have("wkA0000001", "售前"), have("wkA0000002", "售前")], delete=True)
    assert plan.empty and plan.conflicts[0].alias == "sales"
    assert "wkA0000001, wkA0000002" in plan.conflicts[0].detail  # neither is deleted either


def test_accounts_not_in_the_file_are_deleted_only_with_the_flag() -> None:
    current = [have("wkA0000001", "售前", applied=applied()), have("wkB0000001", "Old desk")]
    kept = make_plan([want()], current)
    assert kept.empty and [(h.reason, h.open_kfid) for h in kept.held] == [(UNLISTED, "wkB0000001")]
    assert "--delete" in kept.held[0].detail and not kept.blocked
    deleted = make_plan([want()], current, delete=True)
    assert [(c.kind, c.open_kfid) for c in deleted.changes] == [(DELETE, "wkB0000001")] and deleted.held == []


def test_open_sessions_block_a_delete_unless_forced() -> None:
    current = [have("wkB0000001", "Old desk", sessions=2, applied=applied(alias="old"))]
    blocked = make_plan([], current, delete=True)
    assert blocked.empty and [h.reason for h in blocked.held] == [HAS_SESSIONS] and blocked.blocked
    assert "2 session(s) are open" in blocked.held[0].detail and "--force" in blocked.held[0].detail
    forced = make_plan([], current, delete=True, force=True)
    (delete,) = forced.changes
    assert delete.kind == DELETE and delete.open_sessions == 2 and delete.alias == "old"


def test_changes_come_in_apply_order_and_aliases_in_file_order() -> None:
    plan = make_plan([want("b", "B", users=("x",), scenes=("s",)), want("a", "A")],
                     [have("wkA0000001", "A", applied=applied("a", "A")), have("wkZ0000001", "Z")], delete=True)
    assert [c.kind for c in plan.changes] == [ADD, SERVICERS, DELETE, LINKS]
    assert list(plan.aliases) == ["b", "a"]
    assert plan.as_json()["changes"][0]["kind"] == ADD


# -- applying ------------------------------------------------------------------------------------

@dataclass
class FakeWeCom:
    """kf/account/*, kf/servicer/*, media/upload in memory."""

    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)  # open_kfid -> {name, media_id, users, departments}
    known_users: set[str] = field(default_factory=lambda: {f"u{i}" for i in range(300)} | {"alice", "bob", "carol"})
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    uploads: list[tuple[str, bytes, str]] = field(default_factory=list)
    fail_next: dict[str, WeComError] = field(default_factory=dict)

    def _maybe_fail(self, path: str) -> None:
        if path in self.fail_next:
            raise self.fail_next.pop(path)

    def read(self, path: str, body: dict[str, Any] | None = None, *,
             params: dict[str, str] | None = None) -> dict[str, Any]:
        self.calls.append((path, dict(body or params or {})))
        if path == "kf/account/list":
            return {"account_list": [{"open_kfid": k, "name": a["name"], "avatar": "u", "manage_privilege": True}
                                     for k, a in self.accounts.items()]}
        if path == "kf/servicer/list":
            account = self.accounts[(params or {})["open_kfid"]]
            return {"servicer_list": [{"userid": u, "status": 0} for u in account["users"]]
                    + [{"department_id": d} for d in account["departments"]]}
        raise AssertionError(path)

    def write(self, path: str, body: dict[str, Any], *, retry_not_executed: bool = False) -> dict[str, Any]:
        self.calls.append((path, body))
        self._maybe_fail(path)
        if path == "kf/account/add":
            open_kfid = f"wkNEW{len(self.accounts):06d}"
            self.accounts[open_kfid] = {"name": body["name"], "media_id": body["media_id"], "users": [],
                                        "departments": []}
            return {"open_kfid": open_kfid}
        if path == "kf/account/update":
            account = self.accounts[body["open_kfid"]]
            account.update({k: body[k] for k in ("name", "media_id") if k in body})
            return {}
        if path == "kf/account/del":
            del self.accounts[body["open_kfid"]]
            return {}
        if path in ("kf/servicer/add", "kf/servicer/del"):
            assert len(body.get("userid_list", [])) <= 100 and len(body.get("department_id_list", [])) <= 100
            account = self.accounts[body["open_kfid"]]
            results: list[dict[str, Any]] = []
            for userid in body.get("userid_list", []):
                if userid not in self.known_users:
                    results.append({"userid": userid, "errcode": 60111, "errmsg": "invalid userid"})
                    continue
                if path.endswith("add") and userid not in account["users"]:
                    account["users"].append(userid)
                elif path.endswith("del") and userid in account["users"]:
                    account["users"].remove(userid)
                results.append({"userid": userid, "errcode": 0, "errmsg": "success"})
            for department in body.get("department_id_list", []):
                if path.endswith("add"):
                    account["departments"].append(department)
                else:
                    account["departments"].remove(department)
                results.append({"department_id": department, "errcode": 0, "errmsg": "success"})
            return {"result_list": results}
        raise AssertionError(path)

    def upload(self, path: str, params: dict[str, str], filename: str, data: bytes,
               content_type: str) -> dict[str, Any]:
        self.calls.append((path, params))
        self._maybe_fail(path)
        self.uploads.append((filename, data, content_type))
        return {"type": "image", "media_id": f"media{len(self.uploads)}", "created_at": "1700000000"}


@dataclass
class Records:
    items: dict[str, Applied] = field(default_factory=dict)

    def put(self, open_kfid: str, record: Applied) -> None:
        self.items[open_kfid] = record

    def forget(self, open_kfid: str) -> None:
        self.items.pop(open_kfid, None)


def current_of(wecom: FakeWeCom, records: Records) -> list[Current]:
    return [Current(k, a["name"], True, "u", tuple(a["users"]), tuple(a["departments"]), records.items.get(k))
            for k, a in wecom.accounts.items()]


def files(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "sales.png").write_bytes(PNG)
    return {"sales": tmp_path / "sales.png"}


def test_apply_adds_with_the_avatar_uploaded_first_then_servicers_and_a_second_plan_is_empty(tmp_path: Path) -> None:
    wecom, records = FakeWeCom(), Records()
    file = files(tmp_path)["sales"]
    desired = [Desired("sales", "售前", "sales.png", file, digest(PNG), ("alice", "bob"), (2,), ("home",))]
    report = apply_plan(make_plan(desired, []), wecom, records, lambda _: 0)
    assert report.ok, report.steps
    assert [c[0] for c in wecom.calls] == ["media/upload", "kf/account/add", "kf/servicer/add"]
    assert wecom.uploads == [("sales.png", PNG, "image/png")]
    (open_kfid,) = wecom.accounts
    assert wecom.accounts[open_kfid] == {"name": "售前", "media_id": "media1", "users": ["alice", "bob"],
                                         "departments": [2]}
    assert report.aliases == {"sales": open_kfid}
    assert records.items[open_kfid] == Applied("sales", "售前", digest(PNG))
    servicers = report.steps[1]
    assert [(i.get("userid") or i.get("department_id"), i["action"], i["errcode"]) for i in servicers.items] == \
           [("alice", "add", 0), ("bob", "add", 0), (2, "add", 0)]
    again = make_plan(desired, [Current(c.open_kfid, c.name, c.managed, c.avatar_url, c.users, c.departments, c.applied,
                                        links=frozenset({"home"})) for c in current_of(wecom, records)])
    assert again.empty


def test_apply_updates_only_what_changed(tmp_path: Path) -> None:
    file = files(tmp_path)["sales"]
    wecom = FakeWeCom(accounts={"wkA0000001": {"name": "Old", "media_id": "m0", "users": [], "departments": []}})
    records = Records({"wkA0000001": Applied("sales", "Old", digest(PNG))})
    desired = [Desired("sales", "New", "sales.png", file, digest(PNG))]
    report = apply_plan(make_plan(desired, current_of(wecom, records)), wecom, records, lambda _: 0)
    assert report.ok and [c for c in wecom.calls] == [("kf/account/update", {"open_kfid": "wkA0000001", "name": "New"})]
    assert records.items["wkA0000001"].name == "New"


def test_servicers_go_in_batches_of_100_and_failed_userids_are_reported(tmp_path: Path) -> None:
    file = files(tmp_path)["sales"]
    users = tuple(f"u{i}" for i in range(150)) + ("ghost",)
    wecom = FakeWeCom(accounts={"wkA0000001": {"name": "售前", "media_id": "m", "users": ["carol"], "departments": []}})
    records = Records({"wkA0000001": Applied("sales", "售前", digest(PNG))})
    plan = make_plan([Desired("sales", "售前", "sales.png", file, digest(PNG), users)], current_of(wecom, records))
    report = apply_plan(plan, wecom, records, lambda _: 0)
    adds = [body for path, body in wecom.calls if path == "kf/servicer/add"]
    assert [len(b["userid_list"]) for b in adds] == [100, 51]
    assert [body["userid_list"] for path, body in wecom.calls if path == "kf/servicer/del"] == [["carol"]]
    (step,) = report.steps
    assert not step.ok and not report.ok
    assert step.failed_items == [{"userid": "ghost", "action": "add", "errcode": 60111, "errmsg": "invalid userid"}]
    assert step.detail == "151 done, 1 failed"


def test_a_failed_add_is_reported_and_its_servicers_wait_while_other_changes_go_on(tmp_path: Path) -> None:
    file = files(tmp_path)["sales"]
    wecom = FakeWeCom(accounts={"wkZ0000001": {"name": "Z", "media_id": "m", "users": [], "departments": []}})
    wecom.fail_next["kf/account/add"] = WeComError("kf/account/add", 95027, "account limit")
    records = Records()
    plan = make_plan([Desired("sales", "售前", "sales.png", file, digest(PNG), ("alice",))],
                     current_of(wecom, records), delete=True)
    report = apply_plan(plan, wecom, records, lambda _: 0)
    assert [(s.change.kind, s.ok) for s in report.steps] == [(ADD, False), (SERVICERS, False), (DELETE, True)]
    assert "95027" in report.steps[0].detail and report.steps[1].detail == "not made: the account was not added"
    assert report.aliases == {"sales": None} and "wkZ0000001" not in wecom.accounts


def test_a_delete_counts_the_open_sessions_again_unless_forced(tmp_path: Path) -> None:
    wecom = FakeWeCom(accounts={"wkZ0000001": {"name": "Z", "media_id": "m", "users": [], "departments": []}})
    records = Records({"wkZ0000001": Applied("old", "Z", None)})
    plan = make_plan([], current_of(wecom, records), delete=True)
    report = apply_plan(plan, wecom, records, lambda _: 1)  # a session opened since the plan
    assert not report.ok and "opened since the plan" in report.steps[0].detail and "wkZ0000001" in wecom.accounts
    forced = make_plan([], current_of(wecom, records), delete=True, force=True)
    assert apply_plan(forced, wecom, records, lambda _: 1).ok
    assert wecom.accounts == {} and records.items == {}
