"""Department servicers through the local stack: an account served by a department (added with
kf/servicer/add) routes a customer to one of the department's members, and a department the app
may not read adds nobody."""

from __future__ import annotations

import pytest

from tests.support.stack import wait_for

pytestmark = pytest.mark.integration
DESK = "wkDEPTdesk".ljust(32, "0")


def test_a_customer_is_routed_to_a_member_of_a_servicing_department(stack, simulator) -> None:
    from kefu.wecom import kf
    from kefu.wecom.client import WeComClient

    simulator.add_account(open_kfid=DESK, name="department desk")
    simulator.add_department(7, members=["dora", "ed"])
    simulator.add_department(8, members=["mallory"])
    simulator.set_visible_departments([1, 7])  # the app may not read department 8
    client = WeComClient(simulator.base_url, token_source=lambda: _token(simulator))  # Kefu's own client
    results = kf.servicer_change(client, "add", DESK, [], [7])
    assert [r.get("errcode") for r in results] == [0]
    assert kf.servicers(client, DESK).departments == (7,)
    simulator.customer_enter(DESK, external_userid="wmwarmdept0000")  # the account's first pull
    wait_for(lambda: any(c["open_kfid"] == DESK and c.get("errcode") == 0 for c in simulator.sync_calls),
             message="first pull")
    euid, _ = simulator.customer_enter(DESK)
    simulator.customer_says(DESK, euid, "hello")
    wait_for(lambda: simulator.session(DESK, euid)["service_state"] == 3, message="assigned")
    assert simulator.session(DESK, euid)["servicer_userid"] in ("dora", "ed")
    assert kf.duty_roster(client, DESK) == {"dora": True, "ed": True}
    simulator.set_visible_departments(None)


def _token(simulator) -> str:
    import httpx

    answer = httpx.get(f"{simulator.base_url}/cgi-bin/gettoken",
                       params={"corpid": simulator.corp_id, "corpsecret": simulator.corp_secret}).json()
    return str(answer["access_token"])
