"""`kefu accounts plan|apply` as a subprocess against this module's local stack, with WeCom played by
the simulator: an empty corp brought to the file's accounts, servicers and links; a second apply
that changes nothing; a change made at WeCom that plan shows exactly; deletes that need --delete
(and --force while a session is open).

The tests run in order and share the simulator's corp.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from kefu.wecom import kf
from kefu.wecom.client import WeComClient
from tests.integration.test_cli import explain, kefu_with

pytestmark = pytest.mark.integration

STATE_FILE = Path(tempfile.mkdtemp(prefix="kefu-accounts-")) / "local-stack.json"
STACK_ENV = {"KEFU_STATE_FILE": str(STATE_FILE)}
SEED = "wkSEED000000000000000000000001"  # the app must manage one account before kf/account/add works
CONSOLE = "wkCONSOLE000000000000000000001"  # made in the admin console, not assigned to the app
PNG_A = b"\x89PNG\r\n\x1a\n" + bytes(range(64))
PNG_B = b"\x89PNG\r\n\x1a\n" + bytes(range(64, 160))
FILE = """\
accounts:
  - alias: sales
    name: 售前咨询
    avatar: sales.png
    servicers:
      users: [alice, bob]
      departments: [7]
    scenes: [home, poster]
  - alias: support
    name: {support_name}
    avatar: support.png
    servicers:
      users: [{support_users}]
    scenes: [order_help]
"""


@pytest.fixture(scope="module")
def folder() -> Path:
    path = Path(tempfile.mkdtemp(prefix="kefu-accounts-file-"))
    (path / "sales.png").write_bytes(PNG_A)
    (path / "support.png").write_bytes(PNG_B)
    return path


def write(folder: Path, support_name: str = "售后服务", support_users: str = "carol") -> Path:
    file = folder / "accounts.yaml"
    file.write_text(FILE.format(support_name=support_name, support_users=support_users), encoding="utf-8")
    return file


@pytest.fixture(scope="module", autouse=True)
def corp(simulator) -> None:
    simulator.add_account(open_kfid=SEED, name="Seed desk")
    simulator.add_account(open_kfid=CONSOLE, name="前台", manage_privilege=False)
    for userid in ("alice", "bob", "carol"):
        simulator.add_member(userid)
    simulator.add_department(7, members=["dora"])


def accounts(*args: str) -> Any:
    return kefu_with({"KEFU_STATE_FILE": str(STATE_FILE)}, "accounts", *args, timeout=120)


def at_wecom(simulator) -> dict[str, dict[str, Any]]:
    return {a["name"]: a for a in simulator.state()["accounts"]}


def stored_links(clients, stack, open_kfid: str) -> set[str]:
    page = clients.dynamodb.query(TableName=stack.resources["StateTable"], KeyConditionExpression="pk = :p",
                                  ExpressionAttributeValues={":p": {"S": f"link#{open_kfid}"}})
    return {item["sk"]["S"] for item in page["Items"]}


def test_plan_on_a_corp_without_the_files_accounts_lists_the_adds(stack, simulator, folder) -> None:
    done = accounts("plan", "--file", str(write(folder)))
    assert done.returncode == 0, explain(done)
    out = done.stdout
    assert "+ add sales (new): name '售前咨询', avatar sales.png" in out, explain(done)
    assert "~ servicers of sales (new): +alice +bob +department 7" in out
    assert "+ links of support (new): order_help" in out
    assert f"{SEED}  'Seed desk'  kept: not in the file; apply deletes it only with --delete" in out
    assert f"{CONSOLE}  '前台': manage_privilege is false" in out and "admin console" in out
    plan = json.loads(accounts("plan", "--file", str(write(folder)), "--json").stdout)
    assert [c["kind"] for c in plan["changes"]] == ["add", "add", "servicers", "servicers", "links", "links"]
    assert {h["open_kfid"]: h["reason"] for h in plan["held"]} == {SEED: "unlisted", CONSOLE: "unmanaged"}
    assert simulator.calls_to("kf/account/add") == []  # plan changes nothing


def test_apply_brings_the_corp_to_the_file(stack, simulator, clients, folder) -> None:
    done = accounts("apply", "--file", str(write(folder)))
    assert done.returncode == 0, explain(done)
    accounts_now = at_wecom(simulator)
    sales, support = accounts_now["售前咨询"], accounts_now["售后服务"]
    assert sorted(s["userid"] for s in sales["servicers"]) == ["alice", "bob"] and sales["departments"] == [7]
    assert [s["userid"] for s in support["servicers"]] == ["carol"]
    assert sales["avatar_media_id"] and sales["avatar_media_id"] != support["avatar_media_id"]
    assert len(simulator.calls_to("media/upload")) == 2
    assert stored_links(clients, stack, sales["open_kfid"]) == {"home", "poster"}
    assert stored_links(clients, stack, support["open_kfid"]) == {"order_help"}
    out = done.stdout
    assert f"✓ add sales: added {sales['open_kfid']} '售前咨询'" in out
    assert "✓ servicers of sales" in out and "added alice, bob, department 7" in out
    assert "✓ link sales home: https://" in out
    assert f"LinkAccounts=sales={sales['open_kfid']},support={support['open_kfid']}" in out
    assert "KEFU_TEMPLATE_PARAMS='{\"LinkAccounts\": \"sales=" in out  # the local stack's way to take them
    assert f"! {SEED} 'Seed desk': not in the file" in out and CONSOLE in accounts_now["前台"]["open_kfid"]
    assert out.rstrip().endswith("apply done: WeCom matches " + str(folder / "accounts.yaml"))
    record = clients.dynamodb.get_item(TableName=stack.resources["StateTable"],
                                       Key={"pk": {"S": f"kfaccount#{sales['open_kfid']}"}, "sk": {"S": "applied"}})
    assert record["Item"]["alias"]["S"] == "sales" and len(record["Item"]["avatar_digest"]["S"]) == 64


def test_a_second_apply_changes_nothing(stack, simulator, folder) -> None:
    writes = {p: len(simulator.calls_to(p)) for p in ("media/upload", "kf/account/add", "kf/account/update",
                                                      "kf/servicer/add", "kf/servicer/del", "kf/add_contact_way")}
    done = accounts("apply", "--file", str(write(folder)))
    assert done.returncode == 0, explain(done)
    assert done.stdout.startswith(f"No changes: WeCom matches {folder / 'accounts.yaml'}; nothing was done.")
    assert {p: len(simulator.calls_to(p)) for p in writes} == writes
    result = json.loads(accounts("apply", "--file", str(write(folder)), "--json").stdout)
    assert result["ok"] is True and result["changed"] is False and result["steps"] == [] and result["links"] == []
    plan = accounts("plan", "--file", str(write(folder)))
    assert plan.returncode == 0 and "No changes: WeCom matches" in plan.stdout, explain(plan)


def test_a_change_made_at_wecom_shows_in_plan_exactly(stack, simulator, folder) -> None:
    sales = at_wecom(simulator)["售前咨询"]["open_kfid"]
    client = WeComClient(simulator.base_url, token_source=lambda: token, max_attempts=1)
    token, _ = client.gettoken(simulator.corp_id, simulator.corp_secret)
    try:
        assert kf.servicer_change(client, "del", sales, ["bob"], [])[0]["errcode"] == 0  # someone in the console
    finally:
        client.close()
    plan = json.loads(accounts("plan", "--file", str(write(folder)), "--json").stdout)
    assert plan["changes"] == [{"kind": "servicers", "alias": "sales", "open_kfid": sales, "name": "售前咨询",
                                "users_add": ["bob"], "users_del": [], "departments_add": [], "departments_del": []}]
    text = accounts("plan", "--file", str(write(folder))).stdout
    assert f"~ servicers of sales ({sales}): +bob" in text and "Changes (1):" in text
    assert accounts("apply", "--file", str(write(folder))).returncode == 0
    assert "bob" in [s["userid"] for s in at_wecom(simulator)["售前咨询"]["servicers"]]


def test_the_file_renames_an_account_changes_an_avatar_and_a_failed_userid_fails_apply(stack, simulator, folder) -> None:
    support = at_wecom(simulator)["售后服务"]
    (folder / "support.png").write_bytes(PNG_B + b"v2")
    file = write(folder, support_name="售后支持", support_users="carol, ghost")
    plan = json.loads(accounts("plan", "--file", str(file), "--json").stdout)
    update, servicers = plan["changes"]
    assert update["kind"] == "update" and update["open_kfid"] == support["open_kfid"]
    assert update["rename_from"] == "售后服务" and update["avatar"] == "support.png"
    assert "changed since the last apply" in update["avatar_why"]
    assert servicers["users_add"] == ["ghost"]
    done = accounts("apply", "--file", str(file))
    assert done.returncode == 1, explain(done)
    assert "✗ servicers of support" in done.stdout and "FAILED to add ghost (60111" in done.stdout
    renamed = at_wecom(simulator)["售后支持"]
    assert renamed["open_kfid"] == support["open_kfid"] and renamed["avatar_media_id"] != support["avatar_media_id"]
    again = json.loads(accounts("plan", "--file", str(file), "--json").stdout)
    assert [c["kind"] for c in again["changes"]] == ["servicers"]  # only ghost, who cannot be added
    assert accounts("apply", "--file", str(write(folder, support_name="售后支持"))).returncode == 0


def test_an_account_not_in_the_file_is_deleted_only_with_delete_and_not_while_a_session_is_open(
        stack, simulator, clients, folder) -> None:
    file = write(folder, support_name="售后支持")
    table = stack.resources["StateTable"]
    clients.dynamodb.put_item(TableName=table, Item={
        "pk": {"S": f"rsession#{SEED}#wmCUSTOMER1"}, "sk": {"S": "s"},
        "active_of": {"S": SEED}, "active_at": {"N": str(int(time.time()))}})
    kept = accounts("apply", "--file", str(file))
    assert kept.returncode == 0 and SEED in {a["open_kfid"] for a in simulator.state()["accounts"]}, explain(kept)
    assert "it has 1 open session(s)" in kept.stdout

    blocked = accounts("apply", "--file", str(file), "--delete")
    assert blocked.returncode == 1, explain(blocked)
    assert blocked.stdout.startswith("Nothing was done: what is left to change is held (below).")
    assert f"✗ {SEED} 'Seed desk': not in the file, but 1 session(s) are open on it" in blocked.stdout
    assert SEED in {a["open_kfid"] for a in simulator.state()["accounts"]}

    forced = accounts("apply", "--file", str(file), "--delete", "--force")
    assert forced.returncode == 0, explain(forced)
    assert f"✓ delete {SEED}: deleted {SEED} 'Seed desk'" in forced.stdout
    left = {a["name"] for a in simulator.state()["accounts"]}
    assert left == {"售前咨询", "售后支持", "前台"}  # the console's account is never touched
    plan = accounts("plan", "--file", str(file), "--delete")
    assert plan.returncode == 0 and "No changes" in plan.stdout, explain(plan)


def test_force_without_delete_and_a_bad_file_are_usage_errors(stack, folder) -> None:
    done = accounts("apply", "--file", str(write(folder)), "--force")
    assert done.returncode == 2 and "--force only matters with --delete" in done.stderr
    bad = folder / "bad.yaml"
    bad.write_text("accounts:\n  - alias: x\n    name: 一二三四五六七八九十一二三四五六七\n    avatar: sales.png\n",
                   encoding="utf-8")
    done = accounts("plan", "--file", str(bad))
    assert done.returncode == 2 and f"{bad} line 3: accounts.0.name: 17 characters" in done.stderr, explain(done)
