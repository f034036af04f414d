"""Sync drain through the local stack: a backlog behind one callback, pulled in WeCom-sized pages
and stored once each; first as a first-deploy replay of history (stored only), then as live
traffic (each message also handed to the route queue).

Two kinds of figure:
- the drain rate (messages stored per second): bounded here by the emulator (moto serialises
  every request, and its FIFO queue's send cost grows with the queue's length), so it says more
  about moto than about Kefu;
- the sync function's own cost per 1,000 messages, which does not depend on the emulator: its
  handler CPU time (the handler thread's, from benchmarks/metered_stack.py) and the AWS requests
  it made, by kind. The route function is paused during the live drain, so the handed-on
  messages wait in the route queue and nothing else competes with the sync.

    .venv/bin/python benchmarks/sync_bench.py [--replay 3000] [--live 300] [--customers 50]
"""

from __future__ import annotations

import argparse
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import boto3

from common import bench, local_stack, stored_count  # noqa: I001 - benchmarks/ is run as a script

METER = re.compile(r"^METER function=SyncFunction ms=(\S+) .* cpu_ms=(\S+) calls=(\S+)")
HISTORY_AGE = 3600  # the replayed backlog was written an hour before the deploy: history (rule 9)


def sync_meters(stack: Any, since: int) -> tuple[int, float, float, Counter]:
    """(invocations, handler ms, handler CPU ms, AWS calls by operation) of the SyncFunction
    from the stack's output lines after index ``since``."""
    invocations, ms, cpu, calls = 0, 0.0, 0.0, Counter()
    for line in stack.lines[since:]:
        match = METER.match(line)
        if not match:
            continue
        invocations += 1
        ms += float(match.group(1))
        cpu += float(match.group(2))
        if match.group(3) != "-":
            for part in match.group(3).split(","):
                op, n = part.rsplit(":", 1)
                calls[op] += int(n)
    return invocations, ms, cpu, calls


def drain(sim: Any, ddb: Any, table: str, open_kfid: str, customers: list[str], messages: int,
          age: int = 0) -> tuple[float, int]:
    """Queue ``messages`` (written ``age`` seconds ago) behind one callback; return (seconds
    until all are stored, pages pulled)."""
    before = stored_count(ddb, table, open_kfid)
    sim.advance(-age)
    try:
        for i in range(messages):
            sim.customer_says(open_kfid, customers[i % len(customers)], f"message {i}")
    finally:
        sim.advance(age)
    calls_before = len(sim.sync_calls)
    started = time.perf_counter()
    sim.fire_callback(open_kfid)
    while stored_count(ddb, table, open_kfid) < before + messages:
        time.sleep(0.1)  # each count is a query the emulator serves between the sync's requests
    return time.perf_counter() - started, len(sim.sync_calls) - calls_before


def report(label: str, stack: Any, since: int, messages: int, handed_on: int) -> None:
    deadline = time.monotonic() + 60  # the METER line follows the handler's return, after the hand-on
    while not sync_meters(stack, since)[0] and time.monotonic() < deadline:
        time.sleep(0.1)
    invocations, ms, cpu, calls = sync_meters(stack, since)
    per = 1000 / messages
    print(f"  {label}, the SyncFunction's own cost: {invocations} invocation(s), handler {ms:.0f} ms "
          f"({cpu:.0f} ms CPU) = {cpu * per:.0f} CPU ms per 1,000 messages")
    for op, n in sorted(calls.items()):
        print(f"    {op}: {n} ({n * per:.1f} per 1,000 messages)")
    sqs = sum(n for op, n in calls.items() if op.startswith("sqs."))
    ddb = sum(n for op, n in calls.items() if op.startswith("dynamodb."))
    bench(f"sync.{label}.cpu_ms_per_1000", round(cpu * per, 1), "ms", "handler CPU per 1,000 messages")
    bench(f"sync.{label}.dynamodb_requests_per_1000", round(ddb * per, 1), "requests",
          "DynamoDB requests per 1,000 messages stored (goal: at most 40, 1 per 25)")
    if handed_on:
        bench(f"sync.{label}.sqs_requests_per_1000_handed_on", round(sqs * 1000 / handed_on, 1), "requests",
              "SQS requests per 1,000 messages handed on (goal: at most 100, 1 per 10)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--replay", type=int, default=3000, help="messages in the first-deploy replay")
    parser.add_argument("--live", type=int, default=300, help="messages in the live burst (handed to routing)")
    parser.add_argument("--customers", type=int, default=50)
    args = parser.parse_args()
    script = Path(__file__).resolve().parent / "metered_stack.py"
    with local_stack({"KEFU_LOCAL_PAUSED": "RouteFunction", "KEFU_LOCAL_SCHEDULE_SECONDS": "off"},
                     script=script) as (stack, sim, endpoint):
        ddb = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1",
                           aws_access_key_id="testing", aws_secret_access_key="testing")
        table = stack.resources["MessagesTable"]
        open_kfid = sim.add_account(name="bench")
        sim.auto_callback = False
        sim.advance(-HISTORY_AGE)
        try:
            customers = [sim.customer_enter(open_kfid, welcome=False)[0] for _ in range(args.customers)]
        finally:
            sim.advance(HISTORY_AGE)
        # 1. First deploy: the account has no cursor, WeCom replays its backlog; stored, not routed.
        mark = len(stack.lines)
        seconds, pages = drain(sim, ddb, table, open_kfid, customers, args.replay, age=HISTORY_AGE)
        items = args.replay + args.customers  # the entries are replayed too
        rate = args.replay / seconds
        print(f"sync replay drain: {args.replay} messages (+{args.customers} entries) in {pages} page(s) "
              f"stored in {seconds:.2f}s = {rate:.0f} msg/s")
        bench("sync_replay_rate", round(rate), "msg/s", "first-deploy history: stored, not routed")
        report("replay", stack, mark, items, 0)
        # 2. Live traffic: every message is also handed to the route queue (batched sends).
        mark = len(stack.lines)
        seconds, pages = drain(sim, ddb, table, open_kfid, customers, args.live)
        rate = args.live / seconds
        print(f"sync live drain: {args.live} messages stored and handed to routing in {pages} page(s), "
              f"{seconds:.2f}s = {rate:.0f} msg/s (bounded here by the emulator)")
        bench("sync_live_rate", round(rate), "msg/s", "stored and handed to the route queue")
        report("live", stack, mark, args.live, args.live)


if __name__ == "__main__":
    main()
