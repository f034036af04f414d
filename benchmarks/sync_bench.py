"""Sync drain rate through the local stack: a backlog of messages behind one callback, pulled in
WeCom-sized pages, stored once each. Prints messages per second and DynamoDB calls per message.

    .venv/bin/python benchmarks/sync_bench.py [--messages 3000] [--customers 50]
"""

from __future__ import annotations

import argparse
import time

import boto3

from common import local_stack  # noqa: I001 - benchmarks/ is run as a script


def stored(ddb, table: str, open_kfid: str) -> int:
    total, start = 0, None
    while True:
        args = {"TableName": table, "IndexName": "account", "Select": "COUNT",
                "KeyConditionExpression": "open_kfid = :o", "ExpressionAttributeValues": {":o": {"S": open_kfid}}}
        if start:
            args["ExclusiveStartKey"] = start
        page = ddb.query(**args)
        total += int(page["Count"])
        start = page.get("LastEvaluatedKey")
        if not start:
            return total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--customers", type=int, default=50)
    args = parser.parse_args()
    # The route function runs as deployed: it keeps the route queue short (moto slows down on long
    # FIFO queues, a cost real SQS does not have).
    with local_stack() as (stack, sim, endpoint):
        ddb = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1",
                           aws_access_key_id="testing", aws_secret_access_key="testing")
        table = stack.resources["MessagesTable"]
        open_kfid = sim.add_account(name="bench")
        sim.auto_callback = False
        first, _ = sim.customer_enter(open_kfid)
        sim.fire_callback(open_kfid)  # the account's first pull (a replay) sets its cursor
        while stored(ddb, table, open_kfid) < 1:
            time.sleep(0.05)
        customers = [sim.customer_enter(open_kfid)[0] for _ in range(args.customers)]
        for i in range(args.messages):
            sim.customer_says(open_kfid, customers[i % len(customers)], f"message {i}")
        expected = 1 + args.customers + args.messages
        calls_before = len(sim.sync_calls)
        started = time.perf_counter()
        sim.fire_callback(open_kfid)
        while stored(ddb, table, open_kfid) < expected:
            time.sleep(0.02)
        elapsed = time.perf_counter() - started
        pages = len(sim.sync_calls) - calls_before
        print(f"sync drain: {args.messages + args.customers} new items in {pages} page(s) stored in {elapsed:.2f}s "
              f"= {(args.messages + args.customers) / elapsed:.0f} items/s (route hand-off included; "
              f"moto server on loopback, {args.customers} customers)")


if __name__ == "__main__":
    main()
