"""The local AWS emulator: a moto server on loopback, made faithful where moto 5 is not.

Under concurrent requests (the local stack makes many) moto 5 breaks two guarantees AWS gives:
- DynamoDB: a transaction is atomic. moto snapshots the whole table before a transaction and
  restores the snapshot when one condition fails, undoing other clients' writes made meanwhile
  (a load count, a cursor); requests are serialised here, each still separate.
- SQS FIFO: no message of a group is received while an earlier one of that group is in flight.
  moto decides which groups are busy once per receive call, so a long-polling receiver takes a
  later message of a group another receiver got meanwhile; here a receive looks at the queue
  afresh each time it wakes, one receiver of a queue at a time.
The patches change the emulator only (never boto3 or Kefu's code) and apply to every moto server
this process runs.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

_applied = False


def make_faithful() -> None:
    global _applied
    if _applied:
        return
    _applied = True
    from moto.dynamodb.responses import DynamoHandler
    from moto.sqs.models import SQSBackend

    table_lock = threading.RLock()
    queue_locks: dict[str, threading.Lock] = {}
    call_action, receive_message = DynamoHandler.call_action, SQSBackend.receive_message

    def atomic_call_action(self: Any) -> Any:
        with table_lock:
            return call_action(self)

    def fresh_receive(self: Any, queue_name: str, count: int, wait_seconds_timeout: int, *args: Any) -> Any:
        lock = queue_locks.setdefault(queue_name, threading.Lock())
        queue = self.get_queue(queue_name)
        deadline = time.monotonic() + (wait_seconds_timeout or 0)
        while True:
            with lock:
                got = receive_message(self, queue_name, count, 0, *args)
            left = deadline - time.monotonic()
            if got or left <= 0:
                return got
            # Woken by the next message sent to the queue: moto's own condition, patched from outside.
            with queue._messages_lock:  # noqa: SLF001 - moto exposes no public way to wait on it
                queue._messages_lock.wait(timeout=min(left, 0.05))  # noqa: SLF001

    DynamoHandler.call_action = atomic_call_action  # type: ignore[method-assign]
    SQSBackend.receive_message = fresh_receive  # type: ignore[method-assign,assignment]


def start_moto(host: str, port: int) -> Any:
    """Start a faithful moto server on host:port; returns it (call .stop() to end it)."""
    from moto.server import ThreadedMotoServer

    make_faithful()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log line per emulator call
    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    return server
