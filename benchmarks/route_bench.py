"""Route latency through the local stack: the whole chain callback -> sync -> route queue ->
route function -> WeCom (the simulator), one customer at a time.

(a) enter_session callback -> welcome sent: from firing the callback that announces a customer's
    entry to the simulator recording the send_msg_on_event with that customer's welcome_code
    (which lives 20 s at WeCom).
(b) new customer message -> transfer: from the customer writing (and its callback) to the
    simulator recording the kf/service_state/trans to state 3.

Each step starts once the account's previous sync has finished (customers take seconds to type);
a second round goes back-to-back, so a step may wait behind the previous sync (one at a time per
account), which fetches customer profiles after handing items to the route queue.

    .venv/bin/python benchmarks/route_bench.py [--customers 30]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import boto3

from common import local_stack, percentile, summary  # noqa: I001 - benchmarks/ is run as a script

RULES = """\
timezone: Asia/Shanghai
accounts:
  "*":
    strategy: round_robin
    max_active_per_servicer: 1000
    sticky_hours: 0
    welcome: "Welcome! How can we help?"
"""
TIMEOUT = 30.0


def bench(name: str, value: float, unit: str, note: str = "") -> None:
    """One figure for benchmarks/run_all.py: ``BENCH name=value unit # note``."""
    print(f"BENCH {name}={value:.4g} {unit}" + (f" # {note}" if note else ""), flush=True)


def wait_for(predicate: Any, what: str) -> Any:
    deadline = time.monotonic() + TIMEOUT
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise SystemExit(f"route bench: timed out waiting for {what}")
        time.sleep(0.001)


def call_at(sim: Any, path: str, match: Any) -> float | None:
    """The simulator's time of the first successful call to ``path`` whose body matches."""
    for call in sim.calls_to(path):
        if call["errcode"] == 0 and match(call.get("body") or {}):
            return float(call["time"])
    return None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rules = Path(tmp) / "routing.yaml"
        rules.write_text(RULES, encoding="utf-8")
        # moto runs in this process: make its transactions atomic and its FIFO receives honour
        # groups in flight, as AWS does (see the route tests), so that no emulator error or retry
        # lands in the figures.
        with local_stack({"KEFU_ROUTING_CONFIG": str(rules)}) as (stack, sim, endpoint):
            run(stack, sim, endpoint, args.customers)


def run(stack: Any, sim: Any, endpoint: str, customers: int) -> None:
    ddb = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    state_table = stack.resources["StateTable"]
    open_kfid = sim.add_account(name="route bench")
    for userid in ("alice", "bob"):
        sim.add_servicer(open_kfid, userid)
    sim.configure(auto_callback=False)

    # The account's first pull is a replay (stored, not routed): give it a cursor first.
    sim.customer_enter(open_kfid, welcome=False)
    sim.fire_callback(open_kfid)
    wait_for(lambda: ddb.get_item(TableName=state_table, ConsistentRead=True,
                                  Key={"pk": {"S": f"cursor#{open_kfid}"}, "sk": {"S": "cursor"}}).get("Item"),
             "the account's first pull")
    # Warm every function (a first invocation loads the handler and fetches a token).
    warm, _ = sim.customer_enter(open_kfid)
    sim.fire_callback(open_kfid)
    wait_for(lambda: sim.sent_messages(open_kfid, warm), "the warm-up welcome")
    sim.customer_says(open_kfid, warm, "warm up")
    sim.fire_callback(open_kfid)
    wait_for(lambda: call_at(sim, "kf/service_state/trans", lambda b: b.get("external_userid") == warm),
             "the warm-up transfer")

    sync_queue = stack.resources["SyncQueue"]

    def sync_idle() -> bool:
        attrs = sqs.get_queue_attributes(QueueUrl=sync_queue, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        return attrs["ApproximateNumberOfMessages"] == "0" and attrs["ApproximateNumberOfMessagesNotVisible"] == "0"

    results = {}
    for paced in (True, False):
        welcome_ms: list[float] = []
        transfer_ms: list[float] = []
        for _ in range(customers):
            if paced:
                wait_for(sync_idle, "the account's sync to finish")
            euid, code = sim.customer_enter(open_kfid)
            assert code, "a new customer gets a welcome_code"
            fired = sim.now()
            sim.fire_callback(open_kfid)
            sent = wait_for(lambda: call_at(sim, "kf/send_msg_on_event", lambda b: b.get("code") == code),
                            "a welcome")
            welcome_ms.append((sent - fired) * 1000)

            if paced:
                wait_for(sync_idle, "the account's sync to finish")
            wrote = sim.now()
            sim.customer_says(open_kfid, euid, "hello, I have a question")
            sim.fire_callback(open_kfid)
            moved = wait_for(lambda: call_at(sim, "kf/service_state/trans",
                                             lambda b: b.get("external_userid") == euid and b.get("service_state") == 3),
                             "a transfer")
            transfer_ms.append((moved - wrote) * 1000)
        results[paced] = (welcome_ms, transfer_ms)

    refused = [(c["path"], c["errcode"]) for c in sim.calls if c["path"].startswith("kf/") and c["errcode"] not in (0, None)]
    welcome_ms, transfer_ms = results[True]
    print(f"route enter_session callback -> welcome sent: {summary(welcome_ms)}")
    print(f"route new message -> transfer to a servicer: {summary(transfer_ms)}")
    welcome_b2b, transfer_b2b = results[False]
    print(f"route back-to-back, welcome: {summary(welcome_b2b)}")
    print(f"route back-to-back, transfer: {summary(transfer_b2b)}")
    print(f"route bench: {customers} customers one at a time, each step after the account's previous sync "
          f"finished; back-to-back: each step as soon as the previous one's effect showed, so it may queue "
          f"behind that sync's customer-profile fetch (one sync at a time per account). "
          f"WeCom errors seen: {refused or 'none'}")
    bench("route_welcome_p50", percentile(welcome_ms, 50), "ms", "enter_session callback to send_msg_on_event")
    bench("route_welcome_p99", percentile(welcome_ms, 99), "ms", "the welcome_code lives 20 s")
    bench("route_transfer_p50", percentile(transfer_ms, 50), "ms", "customer message to service_state/trans 3")
    bench("route_transfer_p99", percentile(transfer_ms, 99), "ms")
    bench("route_welcome_b2b_p99", percentile(welcome_b2b, 99), "ms", "behind the previous sync")
    bench("route_transfer_b2b_p99", percentile(transfer_b2b, 99), "ms", "behind the previous sync")


if __name__ == "__main__":
    main()
