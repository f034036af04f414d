"""WeCom's own statistics beside Kefu's, through the local stack: the simulator holds WeCom's
figures of a past day, the template's schedule (every 2 s here) reads them into the StateTable,
and GET /stats and `kefu stats` show them beside the counters Kefu kept that day, with the one
figure that disagrees beyond what the two definitions explain."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.support.stack import wait_for

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
STATE_FILE = Path(tempfile.mkdtemp(prefix="kefu-wecomstats-")) / "local-stack.json"
STACK_ENV = {"KEFU_LOCAL_SCHEDULE_SECONDS": "2", "KEFU_STATE_FILE": str(STATE_FILE)}


def past_day() -> str:
    """Yesterday in China time - or, before 06:30 there, the day before, since WeCom (and the
    simulator) give a day's figures from 06:00 the next day."""
    now = datetime.now(ZoneInfo("Asia/Shanghai"))
    return (now - timedelta(days=1 if now.hour * 60 + now.minute >= 6 * 60 + 30 else 2)).strftime("%Y-%m-%d")


def kefu(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEFU_", "WECOM_", "AWS_"))}
    env.update({"PYTHONPATH": os.pathsep.join([str(ROOT / "cli"), str(ROOT / "shared")]), "PYTHONIOENCODING": "utf-8",
                "KEFU_STATE_FILE": str(STATE_FILE)})
    script = Path(sys.executable).parent / "kefu"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "kefu_cli"]
    return subprocess.run([*command, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=90)


def put_counters(clients, table: str, day: str, open_kfid: str) -> None:
    """The counters the route function would have kept that day (kefu.stats): two scenes, two servicers."""
    def put(pk: str, sk: str, labels: dict[str, str], figures: dict[str, int]) -> None:
        item = {"pk": {"S": pk}, "sk": {"S": sk}, **{k: {"S": v} for k, v in labels.items()},
                **{k: {"N": str(v)} for k, v in figures.items()}}
        clients.dynamodb.put_item(TableName=table, Item=item)

    for scene, wrote, assigned in (("home", 4, 3), ("-", 2, 1)):
        put(f"funnel#{day}", f"{open_kfid}#{scene}", {"day": day, "open_kfid": open_kfid, "scene": scene},
            {"sessions_entered": wrote, "customers_wrote": wrote, "sessions_assigned": assigned})
    for userid, assigned in (("alice", 3), ("bob", 1)):
        put(f"servicer#{day}", f"{open_kfid}#{userid}", {"day": day, "open_kfid": open_kfid, "servicer": userid},
            {"sessions_assigned": assigned, "messages": 2 * assigned})


def wecom_items(clients, table: str, day: str) -> list[dict]:
    return clients.dynamodb.query(TableName=table, ConsistentRead=True, KeyConditionExpression="pk = :p",
                                  ExpressionAttributeValues={":p": {"S": f"wecom#{day}"}})["Items"]


def test_wecoms_figures_are_read_and_set_beside_kefus(stack, simulator, clients) -> None:
    sim, day, table = simulator, past_day(), stack.resources["StateTable"]
    k = sim.add_account(name="wecom stats")
    quiet = sim.add_account(name="wecom only")  # Kefu counted nothing here
    for userid in ("alice", "bob"):
        sim.add_servicer(k, userid)
    put_counters(clients, table, day, k)
    # WeCom's figures of the day: the account, its servicers together, each servicer
    sim.set_statistic(day, k, {"session_cnt": 5, "customer_cnt": 4, "customer_msg_cnt": 21,
                               "upgrade_service_customer_cnt": 0, "msg_rejected_customer_cnt": 0})
    sim.set_statistic(day, k, {"session_cnt": 4, "customer_cnt": 4, "reply_rate": 1, "first_reply_average_sec": 42},
                      kind="servicer")
    sim.set_statistic(day, k, {"session_cnt": 3, "customer_cnt": 3, "customer_msg_cnt": 12}, servicer_userid="alice")
    sim.set_statistic(day, k, {"session_cnt": 9, "customer_cnt": 1, "customer_msg_cnt": 9}, servicer_userid="bob")
    sim.set_statistic(day, quiet, {"session_cnt": 10, "customer_cnt": 8})

    # the scheduled read stores them: the accounts first seen, then settled (a later run adds nothing)
    wait_for(lambda: {i["sk"]["S"] for i in wecom_items(clients, table, day)} >= {f"{k}#-", f"{k}#alice", f"{k}#bob",
                                                                                  f"{quiet}#-"},
             timeout=30, message="WeCom's figures in the StateTable")
    first = {i["sk"]["S"]: i for i in wecom_items(clients, table, day)}
    time.sleep(5)  # two more runs
    assert {i["sk"]["S"]: i for i in wecom_items(clients, table, day)} == first  # settled: not read again
    assert first[f"{k}#-"]["statistic"]["M"]["session_cnt"] == {"N": "5"}

    http = httpx.Client(base_url=stack.url, timeout=10)
    body = http.get("/stats", params={"from": day, "to": day, "account": k}).json()
    # Kefu's figures as before
    assert {r["scene"]: r["customers_wrote"] for r in body["funnel"]} == {"home": 4, "-": 2}
    assert {r["servicer"]: r["sessions_assigned"] for r in body["servicers"]} == {"alice": 3, "bob": 1}
    # WeCom's beside them, as WeCom gave them
    wecom = {r["servicer"]: r for r in body["wecom"]}
    assert set(wecom) == {None, "alice", "bob"} and {r["day"] for r in body["wecom"]} == {day}
    assert wecom[None]["statistic"]["customer_msg_cnt"] == 21
    assert wecom[None]["servicer_statistic"] == {"session_cnt": 4, "customer_cnt": 4, "reply_rate": 1,
                                                 "first_reply_average_sec": 42}
    assert wecom["bob"]["statistic"]["session_cnt"] == 9
    # 5 sessions lie between Kefu's 4 assigned and 6 written, 4 human sessions are Kefu's 4, alice's
    # 3 are 3: only bob's 9 against Kefu's 1 is beyond the definitions
    assert [(d["figure"], d["servicer"], d["wecom"], d["kefu"]) for d in body["disagreements"]] == [
        ("servicer_sessions", "bob", 9, {"sessions_assigned": 1})]
    everyone = http.get("/stats", params={"from": day, "to": day}).json()
    assert [(d["open_kfid"], d["figure"], d["wecom"]) for d in everyone["disagreements"] if d["open_kfid"] == quiet] \
        == [(quiet, "customers", 8), (quiet, "sessions", 10)]

    done = kefu("stats", "--from", day, "--to", day, "--account", k)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    lines = done.stdout.splitlines()
    table_at = lines.index("WeCom (T+1, days in Asia/Shanghai)")
    rows = [line.split() for line in lines[table_at + 3 : table_at + 6]]
    assert rows == [[day, k, "(account)", "5", "4", "4", "21", "100%", "42s", "0", "0"],
                    [day, k, "alice", "-", "3", "3", "12", "-", "-", "-", "-"],
                    [day, k, "bob", "-", "9", "1", "9", "-", "-", "-", "-"]]
    disagreements = lines[lines.index("Disagreements (WeCom vs Kefu)") + 1 :]
    assert disagreements[0].split()[:4] == [day, k, "bob", "servicer_sessions:"]
    assert "WeCom counted 9 sessions of bob" in disagreements[1]
    shown = kefu("stats", "--json", "--from", day, "--to", day, "--account", k)
    assert json.loads(shown.stdout) == body
