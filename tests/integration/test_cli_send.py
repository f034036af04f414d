"""`kefu send`, `kefu transfer` and `kefu end` as subprocesses against this module's local stack
(found through its own state file), with WeCom played by the simulator: a helpdesk account
(handler: external) whose customer wrote; a send retried with its key is sent once; the sixth
send is refused by the send budget (exit 1, WeCom never called); a transfer to a servicer moves
the session; the end ends it. Locally the conversation API takes requests without signatures
(the signing: tests/unit/test_cli_send.py)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.test_cli import explain, kefu_with
from tests.support.stack import wait_for

pytestmark = pytest.mark.integration

RULES = Path(__file__).resolve().with_name("cli_send_rules.yaml")
STATE_FILE = Path(tempfile.mkdtemp(prefix="kefu-cli-send-")) / "local-stack.json"
STACK_ENV = {"KEFU_ROUTING_CONFIG": str(RULES), "KEFU_STATE_FILE": str(STATE_FILE)}
HELPDESK = "wkCLIsend".ljust(32, "0")


def kefu(*args: str) -> Any:
    return kefu_with({"KEFU_STATE_FILE": str(STATE_FILE)}, *args)


@pytest.fixture(scope="module")
def sim(stack, simulator) -> Any:
    simulator.add_account(open_kfid=HELPDESK, name="CLI helpdesk")
    simulator.add_servicer(HELPDESK, "alice")
    simulator.add_servicer(HELPDESK, "bob")
    simulator.customer_enter(HELPDESK, external_userid="wmwarmCLIsend")
    wait_for(lambda: any(c["open_kfid"] == HELPDESK and c.get("errcode") == 0 for c in simulator.sync_calls),
             message="first pull")
    return simulator


def a_customer_who_wrote(stack, sim) -> str:
    """A customer who entered and wrote, once Kefu has seen the message (the 48 h window is open)."""
    euid, _ = sim.customer_enter(HELPDESK, welcome=False)
    sim.customer_says(HELPDESK, euid, "anyone there?")

    def window_open() -> bool:
        answer = httpx.get(f"{stack.url}/conversations/{euid}", params={"account": HELPDESK}, timeout=10)
        return answer.status_code == 200 and bool((answer.json()["accounts"][0]["session"] or {}).get("window_at"))

    wait_for(window_open, timeout=20, message="the customer's message routed")
    return euid


def api_sends(sim, euid: str) -> list[str]:
    return [s["payload"]["content"] for s in sim.sent_messages(HELPDESK, euid) if s["via"] == "send_msg"]


def test_send_with_the_same_key_sends_once_and_the_sixth_send_is_refused(stack, sim) -> None:
    euid = a_customer_who_wrote(stack, sim)
    first = kefu("send", euid, "Order 42 ships today.", "--account", HELPDESK, "--key", "ticket-42-reply-1")
    assert first.returncode == 0, explain(first)
    assert first.stdout.startswith(f"sent to {euid}: msgid ") and "idempotency key ticket-42-reply-1" in first.stdout
    again = kefu("send", euid, "--account", HELPDESK, "--json-message", '"Order 42 ships today."',
                 "--key", "ticket-42-reply-1", "--json")
    assert again.returncode == 0, explain(again)
    repeated = json.loads(again.stdout)
    assert repeated["repeated"] is True and repeated["state"] == "sent" and repeated["msgid"] in first.stdout
    assert api_sends(sim, euid) == ["Order 42 ships today."]

    for n in range(1, 5):  # no --key: a new key each time, printed for a retry
        done = kefu("send", euid, f"answer {n}", "--account", HELPDESK)
        assert done.returncode == 0, explain(done)
        assert "kefu: idempotency key kefu-cli-" in done.stderr and "--key kefu-cli-" in done.stderr
    assert api_sends(sim, euid) == ["Order 42 ships today.", "answer 1", "answer 2", "answer 3", "answer 4"]

    calls = len(sim.calls_to("kf/send_msg"))
    refused = kefu("send", euid, "one too many", "--account", HELPDESK, "--key", "sixth")
    assert refused.returncode == 1, explain(refused)
    assert refused.stdout == "" and refused.stderr.startswith("kefu: refused by rule send_budget: the 5 sends")
    as_json = kefu("send", euid, "one too many", "--account", HELPDESK, "--key", "sixth", "--json")
    assert as_json.returncode == 1 and json.loads(as_json.stdout)["rule"] == "send_budget", explain(as_json)
    assert len(sim.calls_to("kf/send_msg")) == calls  # WeCom never asked


def test_transfer_to_a_servicer_then_end(stack, sim) -> None:
    euid = a_customer_who_wrote(stack, sim)
    moved = kefu("transfer", euid, "--account", HELPDESK, "--to-servicer", "bob")
    assert moved.returncode == 0, explain(moved)
    assert moved.stdout == f"{euid} transferred to servicer bob (state 3, with a servicer)\n"
    assert sim.session(HELPDESK, euid)["service_state"] == 3
    assert sim.session(HELPDESK, euid)["servicer_userid"] == "bob"
    stayed = kefu("transfer", euid, "--account", HELPDESK, "--to-servicer", "bob", "--json")
    assert stayed.returncode == 0 and json.loads(stayed.stdout) == {"state": 3, "servicer": "bob", "changed": False}
    nobody = kefu("transfer", euid, "--account", HELPDESK, "--to-servicer", "mallory")
    assert nobody.returncode == 1 and "refused by rule not_a_servicer" in nobody.stderr, explain(nobody)
    held = kefu("send", euid, "still there?", "--account", HELPDESK, "--key", "t1")
    assert held.returncode == 1 and "refused by rule session_state" in held.stderr, explain(held)

    ended = kefu("end", euid, "--account", HELPDESK)
    assert ended.returncode == 0, explain(ended)
    assert ended.stdout == f"ended the session of {euid} (state 4, ended)\n"
    assert sim.session(HELPDESK, euid)["service_state"] == 4
    again = kefu("end", euid, "--account", HELPDESK)
    assert again.returncode == 1 and "refused by rule session_state" in again.stderr, explain(again)


def test_requests_the_api_cannot_take_exit_2(stack, sim) -> None:
    account = kefu("end", "wmnobodyatall000", "--account", "not-an-account")
    assert account.returncode == 2 and "kefu: invalid_account: " in account.stderr, explain(account)
    image = kefu("send", "wmnobodyatall000", "--account", HELPDESK, "--json-message", '{"image": "a.png"}',
                 "--key", "k")
    assert image.returncode == 2 and "kefu: invalid_message: " in image.stderr, explain(image)
    usage = kefu("send", "wmnobodyatall000", "--account", HELPDESK)
    assert usage.returncode == 2 and "exactly one" in usage.stderr
