"""The local AWS emulator: a moto server on loopback, made faithful where moto 5 is not.

Under concurrent requests (the local stack makes many) moto 5 breaks two guarantees AWS gives:
- DynamoDB: a transaction is atomic. moto snapshots the whole table before a transaction and
  restores the snapshot when one condition fails, undoing other clients' writes made meanwhile
  (a load count, a cursor); requests are serialised here, each still separate. Serialising alone
  would be kinder than DynamoDB, which cancels a transaction that overlaps another one in progress
  on the same item ("TransactionConflict"): so a transaction on an item another one wrote less
  than IN_PROGRESS ago (DynamoDB's own latency, not this machine's speed) is cancelled that way.
- SQS FIFO: no message of a group is received while an earlier one of that group is in flight.
  moto decides which groups are busy once per receive call, so a long-polling receiver takes a
  later message of a group another receiver got meanwhile; here a receive looks at the queue
  afresh each time it wakes, one receiver of a queue at a time. And when several messages of a
  group come back together (a failed batch), moto redelivers them out of order; here every
  message whose visibility ran out is released before a receive, so they come back in order.
The patches change the emulator only (never boto3 or Kefu's code) and apply to every moto server
this process runs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_applied = False
_table_lock: Any = None  # DynamoDB's request lock, once the patches are applied
# A transaction's items, and until when (monotonic time) it counts as in progress on them.
_in_flight: dict[tuple[str, str], float] = {}
_holding = False
IN_PROGRESS = 0.015  # seconds a transaction stays in progress after it ran: DynamoDB's own latency


@contextmanager
def transactions_held() -> Iterator[None]:
    """Keep every transaction that runs meanwhile in progress until the block ends (a test's way
    to send one that overlaps another, whatever the machine's speed)."""
    global _holding
    _holding = True
    try:
        yield
    finally:
        _holding = False
        _in_flight.clear()


def make_faithful() -> None:
    global _applied
    if _applied:
        return
    _applied = True
    from moto.dynamodb.responses import DynamoHandler
    from moto.sqs.models import SQSBackend

    global _table_lock
    table_lock = _table_lock = threading.RLock()
    queue_locks: dict[str, threading.Lock] = {}
    call_action, receive_message = DynamoHandler.call_action, SQSBackend.receive_message
    in_flight = _in_flight

    def atomic_call_action(self: Any) -> Any:
        if not str(self.headers.get("X-Amz-Target") or "").endswith(".TransactWriteItems"):
            with table_lock:
                return call_action(self)
        items = _transaction_items(self)
        with table_lock:
            now = time.monotonic()
            clashes = [in_flight.get(key, 0.0) > now for key in items]
            if any(clashes):
                return _conflict(clashes)
            answer = call_action(self)
            until = float("inf") if _holding else time.monotonic() + IN_PROGRESS
            if len(in_flight) > 10_000:  # forget the long-finished ones
                for key in [k for k, t in in_flight.items() if t <= now]:
                    del in_flight[key]
            for key in items:
                in_flight[key] = until
            return answer

    def fresh_receive(self: Any, queue_name: str, count: int, wait_seconds_timeout: int, *args: Any) -> Any:
        lock = queue_locks.setdefault(queue_name, threading.Lock())
        queue = self.get_queue(queue_name)
        deadline = time.monotonic() + (wait_seconds_timeout or 0)
        while True:
            with lock:
                # A message whose visibility ran out is no longer in flight. moto notices that one
                # message at a time while it walks the queue, so when several of a group time out
                # together the first is skipped (its group still looks busy with the second) and
                # the second is delivered first: release them all before the walk.
                for message in [m for m in queue.pending_messages if m.visible]:
                    queue.pending_messages.discard(message)
                got = receive_message(self, queue_name, count, 0, *args)
            left = deadline - time.monotonic()
            if got or left <= 0:
                return got
            # Woken by the next message sent to the queue: moto's own condition, patched from outside.
            with queue._messages_lock:  # noqa: SLF001 - moto exposes no public way to wait on it
                queue._messages_lock.wait(timeout=min(left, 0.05))  # noqa: SLF001

    DynamoHandler.call_action = atomic_call_action  # type: ignore[method-assign]
    SQSBackend.receive_message = fresh_receive  # type: ignore[method-assign,assignment]


def _transaction_items(handler: Any) -> list[tuple[str, str]]:
    """(table, key) of each item of a TransactWriteItems request, in order."""
    import json

    found = []
    for entry in json.loads(handler.body).get("TransactItems", []):
        ((kind, op),) = entry.items()
        table = op["TableName"]
        key = op.get("Key")
        if kind == "Put":  # the key attributes of the item, by the table's key schema
            schema = handler.dynamodb_backend.get_table(table)
            names = [n for n in (schema.hash_key_attr, schema.range_key_attr) if n]
            key = {n: op["Item"].get(n) for n in names}
        found.append((table, json.dumps(key, sort_keys=True)))
    return found


def _conflict(clashes: list[bool]) -> tuple[int, dict[str, str], str]:
    """DynamoDB's answer to a transaction that overlaps one in progress: cancelled, with
    TransactionConflict for each overlapping item."""
    from moto.dynamodb.exceptions import TransactionCanceledException

    error = TransactionCanceledException(
        [("TransactionConflict", "Transaction is ongoing for the item", None) if clash else (None, None, None)
         for clash in clashes])
    return 400, {"status": "400", "content-type": "application/x-amz-json-1.0"}, error.description


def start_moto(host: str, port: int) -> Any:
    """Start a faithful moto server on host:port; returns it (call .stop() to end it)."""
    from moto.server import ThreadedMotoServer

    make_faithful()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log line per emulator call
    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    return server
