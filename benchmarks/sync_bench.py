"""Sync drain rate through the local stack: a backlog behind one callback, pulled in WeCom-sized
pages and stored once each; first as a first-deploy replay (stored only), then as live traffic
(each message also handed to the route queue).

    .venv/bin/python benchmarks/sync_bench.py [--replay 3000] [--live 300] [--customers 50]
"""

from __future__ import annotations

import argparse
import time

import boto3

from common import local_stack, stored_count  # noqa: I001 - benchmarks/ is run as a script


def drain(sim, ddb, table: str, open_kfid: str, customers: list[str], messages: int) -> tuple[float, int, int]:
    """Queue ``messages`` behind one callback; return (seconds until all stored, items, pages)."""
    before = stored_count(ddb, table, open_kfid)
    for i in range(messages):
        sim.customer_says(open_kfid, customers[i % len(customers)], f"message {i}")
    calls_before = len(sim.sync_calls)
    started = time.perf_counter()
    sim.fire_callback(open_kfid)
    while stored_count(ddb, table, open_kfid) < before + messages:
        time.sleep(0.02)
    return time.perf_counter() - started, messages, len(sim.sync_calls) - calls_before


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--replay", type=int, default=3000, help="messages in the first-deploy replay")
    parser.add_argument("--live", type=int, default=300, help="messages in the live burst (handed to routing)")
    parser.add_argument("--customers", type=int, default=50)
    args = parser.parse_args()
    with local_stack() as (stack, sim, endpoint):
        ddb = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1",
                           aws_access_key_id="testing", aws_secret_access_key="testing")
        table = stack.resources["MessagesTable"]
        open_kfid = sim.add_account(name="bench")
        sim.auto_callback = False
        customers = [sim.customer_enter(open_kfid)[0] for _ in range(args.customers)]
        # 1. First deploy: the account has no cursor, WeCom replays its backlog; stored, not routed.
        seconds, items, pages = drain(sim, ddb, table, open_kfid, customers, args.replay)
        rate = items / seconds
        print(f"sync replay drain: {items} messages in {pages} page(s) stored in {seconds:.2f}s = {rate:.0f} msg/s")
        print(f"BENCH sync_replay_rate={rate:.0f} msg/s")
        # 2. Live traffic: every message is also handed to the route queue (one SQS message each).
        seconds, items, pages = drain(sim, ddb, table, open_kfid, customers, args.live)
        rate = items / seconds
        print(f"sync live drain: {items} messages stored and handed to routing in {seconds:.2f}s = {rate:.0f} msg/s "
              "(bounded here by the emulator's FIFO queue, whose send cost grows with its length)")
        print(f"BENCH sync_live_rate={rate:.0f} msg/s")


if __name__ == "__main__":
    main()
