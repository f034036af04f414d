"""Statistics through the local stack: customers driven through several scenes (with every
callback fired three times) and every funnel and servicer figure checked against what was done."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from kefu.stats import day_of
from tests.support.stack import wait_for

pytestmark = pytest.mark.integration
STACK_ENV = {"KEFU_ROUTING_CONFIG": str(Path(__file__).with_name("stats_rules.yaml")), "KEFU_LOCAL_WORKERS": "4"}


def test_funnel_and_servicer_figures_match_what_was_driven(stack, simulator, clients) -> None:
    sim = simulator
    k = sim.add_account(name="stats")
    for userid in ("alice", "bob"):
        sim.add_servicer(k, userid)
    # The account's first pull. The warm-up customer enters now, so it is live (rule 9), not
    # history: counted in the account's row without a scene, which the comparison below leaves out.
    warm, _ = sim.customer_enter(k)
    wait_for(lambda: any(c["open_kfid"] == k and c.get("errcode") == 0 for c in sim.sync_calls), message="first pull")
    sim.auto_callback = False
    http = httpx.Client(base_url=stack.url, timeout=10)

    def link(scene: str, param: str) -> str:
        answer = http.get("/links", params={"scene": scene, "scene_param": param, "account": k})
        assert answer.status_code == 200, answer.text
        return answer.json()["url"]

    def callback() -> None:
        assert sim.fire_callback(k, repeat=3) == [200, 200, 200]  # WeCom's retries of each callback

    home = [sim.customer_enter_via_link(link("home", f"h{i}"))[0] for i in range(3)]
    poster = [sim.customer_enter_via_link(link("poster", f"p{i}"))[0] for i in range(2)]
    link("home", "unused")  # issued, never opened
    callback()
    writers = home[:2] + poster[:1]
    for euid in writers:
        sim.customer_says(k, euid, "我想咨询")
    callback()
    wait_for(lambda: all(sim.session(k, e)["service_state"] == 3 for e in writers), message="assignments")
    holder = {e: sim.session(k, e)["servicer_userid"] for e in writers}
    for euid in writers:  # each servicer answers twice
        sim.servicer_says(k, euid, holder[euid], "您好")
        sim.servicer_says(k, euid, holder[euid], "请问还有什么问题")
    callback()
    ended = [home[0], poster[0]]
    for euid in ended:
        sim.end_session(k, euid, holder[euid])
    callback()
    wait_for(lambda: all(any(s.get("code_kind") == "end" for s in sim.sent_messages(k, e)) for e in ended),
             message="the satisfaction menus")
    sim.customer_says(k, home[0], "满意", menu_id="rate_5")
    sim.customer_says(k, poster[0], "一般", menu_id="rate_3")
    callback()
    callback()  # nothing new: duplicates only

    day = day_of(time.time(), "Asia/Shanghai")
    expected = {
        "home": {"links_issued": 4, "sessions_entered": 3, "customers_wrote": 2, "sessions_assigned": 2,
                 "sessions_ended": 1, "ratings": 1, "rating_avg": 5.0},
        "poster": {"links_issued": 2, "sessions_entered": 2, "customers_wrote": 1, "sessions_assigned": 1,
                   "sessions_ended": 1, "ratings": 1, "rating_avg": 3.0},
    }

    def funnel() -> dict[str, dict]:
        body = http.get("/stats", params={"from": day, "to": day, "account": k}).json()
        return {row["scene"]: {f: row[f] for f in expected["home"]} for row in body["funnel"] if row["scene"] in expected}

    wait_for(lambda: funnel() == expected, timeout=20, message=f"funnel {expected}")
    body = http.get("/stats", params={"from": day, "to": day, "account": k}).json()
    servicers = {row["servicer"]: row for row in body["servicers"]}
    per_servicer: dict[str, list[str]] = {}
    for euid, userid in holder.items():
        per_servicer.setdefault(userid, []).append(euid)
    for userid, customers in per_servicer.items():
        row = servicers[userid]
        assert row["sessions_assigned"] == len(customers)
        assert row["messages"] == 2 * len(customers)
        assert row["first_responses"] == len(customers)
        assert row["first_response_avg_seconds"] is not None and row["first_response_avg_seconds"] >= 0
        rated = [e for e in customers if e in ended]
        assert row["ratings"] == len(rated)
    assert set(servicers) == set(per_servicer)
    # the scene filter and the 4xx answers
    only = http.get("/stats", params={"from": day, "to": day, "account": k, "scene": "poster"}).json()
    assert [r["scene"] for r in only["funnel"]] == ["poster"]
    for bad in ({"from": "2026-13-01"}, {"from": day, "to": "2000-01-01"}, {"account": "bad id!"}, {"scene": "x" * 40}):
        answer = http.get("/stats", params=bad)
        assert answer.status_code == 400 and answer.json()["error"].startswith("invalid_"), (bad, answer.text)
