"""`kefu customer` as a subprocess against this module's local stack (its own state file), WeCom
played by the simulator: a customer who entered from 视频号 through the whole pipeline (sync,
profile, route), and customers written straight into the tables (one unionid, two external_userids)."""

from __future__ import annotations

import json
import re
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest

from kefu_cli.messages import local_time
from tests.integration.test_cli import explain, kefu_with, message, put_items
from tests.support.stack import StackProcess, wait_for

pytestmark = pytest.mark.integration

STATE_FILE = Path(tempfile.mkdtemp(prefix="kefu-cli-customer-")) / "local-stack.json"
STACK_ENV = {"KEFU_STATE_FILE": str(STATE_FILE)}
ACCOUNT = "wkCUSTOMER00000000000000000001"


@pytest.fixture(scope="module", autouse=True)
def account(simulator: Any) -> None:
    simulator.add_account(open_kfid=ACCOUNT, name="Customer desk")


def kefu(*args: str) -> Any:
    return kefu_with({"KEFU_STATE_FILE": str(STATE_FILE)}, *args)


def get(aws: boto3.Session, aws_endpoint: str, table: str, key: dict[str, str]) -> dict[str, Any] | None:
    return aws.resource("dynamodb", endpoint_url=aws_endpoint).Table(table).get_item(Key=key).get("Item")


def fields(lines: list[str]) -> dict[str, str]:
    """The ``name  value`` lines of the text output (first occurrence of each name)."""
    found: dict[str, str] = {}
    for line in lines:
        parts = re.split(r"  +", line.strip(), maxsplit=1)
        if len(parts) == 2:
            found.setdefault(parts[0], parts[1])
    return found


def test_a_customer_who_came_from_channels(stack: StackProcess, simulator: Any, aws: boto3.Session,
                                           aws_endpoint: str) -> None:
    euid, _ = simulator.customer_enter(ACCOUNT, wechat_channels={"nickname": "好物频道", "scene": 1}, nickname="小王")
    simulator.customer_says(ACCOUNT, euid, "你好")
    state = stack.resources["StateTable"]
    wait_for(lambda: (get(aws, aws_endpoint, state, {"pk": f"customer#{euid}", "sk": "profile"}) or {}).get("nickname"),
             timeout=30, message="the customer's profile stored")
    wait_for(lambda: (get(aws, aws_endpoint, state, {"pk": f"rsession#{ACCOUNT}#{euid}", "sk": "s"})
                      or {}).get("state") is not None, timeout=30, message="the routed session stored")

    done = kefu("customer", euid)  # every account kf/account/list names
    assert done.returncode == 0, explain(done)
    lines = done.stdout.splitlines()
    assert lines[0] == f"Customer {euid}"
    assert fields(lines[1:5])["nickname"] == "小王"
    assert f"  Account {ACCOUNT}" in lines and "    entries: 1" in lines, explain(done)
    entry = next(line for line in lines if "视频号" in line)
    assert entry.strip().endswith("视频号 nickname 好物频道 (homepage)")
    assert re.split(r"  +", entry.strip())[1] == "channels:好物频道"
    assert any(line.startswith("    session: ") and "none stored" not in line for line in lines), explain(done)

    answer = json.loads(kefu("customer", euid, "--account", ACCOUNT, "--json").stdout)
    [found] = answer["customers"]
    assert found["profile"]["nickname"] == "小王" and answer["accounts"] == [ACCOUNT]
    [per_account] = found["accounts"]
    assert per_account["entries"][0]["wechat_channels"] == {"nickname": "好物频道", "scene": 1}
    stored = get(aws, aws_endpoint, state, {"pk": f"rsession#{ACCOUNT}#{euid}", "sk": "s"}) or {}
    assert per_account["session"]["state"] == int(stored["state"])  # no servicer here: it stays where it is
    assert per_account["session"]["scene"] == "channels:好物频道"


def test_customers_of_one_unionid(stack: StackProcess, aws: boto3.Session, aws_endpoint: str) -> None:
    unionid, at = f"oU{uuid.uuid4().hex[:12]}", int(time.time()) - 3600
    first, second = f"wmU1{uuid.uuid4().hex[:8]}", f"wmU2{uuid.uuid4().hex[:8]}"
    put_items(aws, aws_endpoint, stack.resources["StateTable"], [
        {"pk": f"customer#{first}", "sk": "profile", "external_userid": first, "nickname": "小王", "gender": 2,
         "unionid": unionid, "updated_at": at},
        {"pk": f"customer#{second}", "sk": "profile", "external_userid": second, "nickname": "Wang", "gender": 1,
         "unionid": unionid, "updated_at": at + 60},
        {"pk": f"rsession#{ACCOUNT}#{first}", "sk": "s", "state": 3, "servicer": "alice", "scene": "poster",
         "scene_param": "city=上海", "entered_at": at, "session_started": at + 5, "session_id": "m-open",
         "last_servicer": "bob", "last_served_at": at - 86400, "rating": 5, "window_at": at + 10, "sends": 2}])
    conv = f"{ACCOUNT}#{first}"
    put_items(aws, aws_endpoint, stack.resources["MessagesTable"], [
        message(first, at, {"msgtype": "event", "event": {"event_type": "enter_session", "scene": "poster",
                                                          "scene_param": "city=上海"}}, ACCOUNT,
                origin=4, entry_of=conv, scene="poster", scene_param="city=上海", event_type="enter_session")])

    done = kefu("customer", "--unionid", unionid)
    assert done.returncode == 0, explain(done)
    text = done.stdout
    assert text.startswith(f"unionid {unionid}: 2 customer(s)\n\nCustomer {first}\n"), explain(done)
    blocks = text.split("\nCustomer ")
    one, two = blocks[1].splitlines(), blocks[2].splitlines()
    shown = fields(one)
    assert (shown["nickname"], shown["gender"], shown["unionid"]) == ("小王", "female", unionid)
    assert shown["updated"] == local_time(at)
    assert "    entries: 1" in one and "    session: with a servicer (3)" in one
    row = next(line for line in one if line.strip().startswith(local_time(at)))
    assert re.split(r"  +", row.strip())[1:] == ["poster", "city=上海", "-"]
    assert shown["servicer"] == "alice" and shown["rating"] == "5" and shown["started"] == local_time(at + 5)
    assert shown["last servicer"] == f"bob (at {local_time(at - 86400)})"
    assert shown["sends"] == f"2/5 used in the window, open until {local_time(at + 10 + 48 * 3600)}"
    assert two[0] == second and fields(two)["gender"] == "male"
    assert two[-1] == f"  no entries or routing session with 1 other account(s): {ACCOUNT}"

    answer = json.loads(kefu("customer", "--unionid", unionid, "--account", ACCOUNT, "--json").stdout)
    assert answer["unionid"] == unionid
    assert [c["external_userid"] for c in answer["customers"]] == sorted([first, second])
    session = next(c for c in answer["customers"] if c["external_userid"] == first)["accounts"][0]["session"]
    assert session["state_name"] == "with a servicer" and session["sends"] == 2 and session["window_open"] is True


def test_customer_errors(stack: StackProcess) -> None:
    usage = kefu("customer")
    assert usage.returncode == 2 and "give EXTERNAL_USERID or --unionid UNIONID (exactly one)" in usage.stderr
    both = kefu("customer", "wmA", "--unionid", "oU")
    assert both.returncode == 2
    nobody = kefu("customer", "wmNOBODY")
    assert nobody.returncode == 1 and "nothing stored of wmNOBODY" in nobody.stderr, explain(nobody)
    assert "any of the 1 kf account(s)" in nobody.stderr
    as_json = kefu("customer", "--unionid", "oNOBODY", "--json")
    assert as_json.returncode == 1 and json.loads(as_json.stdout)["ok"] is False
    assert "no customer profile carries unionid oNOBODY" in as_json.stderr
