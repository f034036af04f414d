"""Lambda's SQS event source, locally: receive batches, invoke, delete what succeeded.

As deployed: a batch is at most BatchSize records; with ReportBatchItemFailures only the records
the handler names stay on the queue; a raised exception or a malformed answer fails the whole
batch; failed records come back after the visibility timeout, and the queue's redrive policy
moves them to the DLQ after maxReceiveCount receives (the emulator enforces that on receive).
"""

from __future__ import annotations

import hashlib
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from local.functions import LocalFunction, QueueSource

RECEIVE_WAIT_SECONDS = 1


def to_record(message: dict[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    attributes = dict(message.get("Attributes") or {})
    body = message.get("Body", "")
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": body,
        "attributes": attributes,
        "messageAttributes": {
            name: {
                "stringValue": attr.get("StringValue"),
                "binaryValue": attr.get("BinaryValue"),
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": attr.get("DataType"),
            }
            for name, attr in (message.get("MessageAttributes") or {}).items()
        },
        "md5OfBody": message.get("MD5OfBody") or hashlib.md5(body.encode(), usedforsecurity=False).hexdigest(),  # SQS's checksum
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


def settle(result: Any, records: list[dict[str, Any]], report_failures: bool) -> list[dict[str, Any]]:
    """Return the records to delete for a handler's answer (Lambda's rules)."""
    if not report_failures or result is None:
        return records
    if not isinstance(result, dict):
        return []
    failures = result.get("batchItemFailures")
    if failures is None:
        return records
    ids = {r["messageId"] for r in records}
    try:
        failed = {f["itemIdentifier"] for f in failures}
    except (TypeError, KeyError):
        return []
    if not failed <= ids:  # an unknown or empty identifier fails the whole batch
        return []
    return [r for r in records if r["messageId"] not in failed]


class QueuePoller:
    def __init__(self, source: QueueSource, queue_url: str, function: LocalFunction, session: Any, region: str,
                 log: Callable[[str], None], workers: int = 1, visibility_timeout: int | None = None) -> None:
        self.source = source
        self.queue_url = queue_url
        self._function = function
        self._sqs = session.client("sqs")
        self._region = region
        self._log = log
        self._visibility = visibility_timeout
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, name=f"poller-{source.function}-{i}", daemon=True) for i in range(workers)
        ]
        self.invocations = 0
        self._groups_free = threading.Condition()
        self._groups_in_flight: set[str | None] = set()

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=RECEIVE_WAIT_SECONDS + 5)

    def _receive(self) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        deadline = time.monotonic() + self.source.batching_window
        while len(messages) < self.source.batch_size and not self._stop.is_set():
            args: dict[str, Any] = {
                "QueueUrl": self.queue_url,
                "MaxNumberOfMessages": min(10, self.source.batch_size - len(messages)),
                "WaitTimeSeconds": 0 if messages else RECEIVE_WAIT_SECONDS,
                "MessageSystemAttributeNames": ["All"],
                "MessageAttributeNames": ["All"],
            }
            if self._visibility is not None:
                args["VisibilityTimeout"] = self._visibility
            got = self._sqs.receive_message(**args).get("Messages", [])
            messages.extend(got)
            if not got or (len(messages) < self.source.batch_size and time.monotonic() >= deadline):
                break
        return messages

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                messages = self._receive()
            except Exception as exc:  # the emulator going away at shutdown, mostly
                if not self._stop.is_set():
                    print(f"[sqs] receive failed on {self.source.function}: {exc}", file=sys.stderr)
                    time.sleep(0.5)
                continue
            if messages:
                invoking, done = threading.Event(), threading.Event()
                if self._visibility is not None:
                    threading.Thread(target=self._keep_hidden, args=(messages, invoking, done), daemon=True).start()
                try:
                    self._claim_groups(messages)
                    try:
                        self._deliver(messages, invoking)
                    finally:
                        self._release_groups(messages)
                finally:
                    done.set()

    def _claim_groups(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """FIFO: one batch per message group at a time. The emulator's long poll can hand a
        group's next messages to a second poller while the first still works on that group (real
        SQS never does); the second then waits for the group instead of running out of order.
        (Handing them back would raise their receive count towards the dead-letter queue.)"""
        groups = {m.get("Attributes", {}).get("MessageGroupId") for m in messages} - {None}
        with self._groups_free:
            while groups & self._groups_in_flight and not self._stop.is_set():
                self._groups_free.wait(timeout=0.5)
            self._groups_in_flight |= groups
        return messages

    def _release_groups(self, messages: list[dict[str, Any]]) -> None:
        with self._groups_free:
            self._groups_in_flight -= {m.get("Attributes", {}).get("MessageGroupId") for m in messages}
            self._groups_free.notify_all()

    def _keep_hidden(self, messages: list[dict[str, Any]], invoking: threading.Event, done: threading.Event) -> None:
        """Keep received records hidden while they wait for their group and while their
        invocation runs (up to the function's Timeout).

        Deployed, the queue's visibility timeout (90 s) exceeds the function's Timeout (15 s), so
        no record comes back while its invocation still runs. A shortened local visibility
        (KEFU_LOCAL_VISIBILITY_TIMEOUT, to bring a killed stack's records back in seconds) would
        break that on a slow machine; so the visibility is renewed until the invocation ends or
        its Timeout passes, after which, as when Lambda times a function out, the records return
        when the visibility runs out."""
        visibility = self._visibility or 0
        period = max(0.2, visibility / 3)
        deadline: float | None = None
        while not done.wait(period):
            if invoking.is_set():
                deadline = deadline or time.monotonic() + self._function.timeout
                if time.monotonic() >= deadline:
                    return
            entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": visibility}
                       for i, m in enumerate(messages)]
            try:
                for start in range(0, len(entries), 10):
                    self._sqs.change_message_visibility_batch(QueueUrl=self.queue_url, Entries=entries[start:start + 10])
            except Exception as exc:  # the emulator going away at shutdown
                print(f"[sqs] visibility renewal failed on {self.source.function}: {exc}", file=sys.stderr)
                return

    def _deliver(self, messages: list[dict[str, Any]], invoking: threading.Event) -> None:
        records = [to_record(m, self.source.queue_arn, self._region) for m in messages]
        started = time.perf_counter()
        invoking.set()
        try:
            result = self._function.invoke({"Records": records})
            done = settle(result, records, self.source.report_failures)
            outcome = "ok" if len(done) == len(records) else f"{len(records) - len(done)} failed"
        except Exception as exc:
            print(f"[sqs] {self.source.function} raised {type(exc).__name__}: {exc}", file=sys.stderr)
            done, outcome = [], f"raised {type(exc).__name__}"
        self.invocations += 1
        for start in range(0, len(done), 10):
            chunk = done[start : start + 10]
            self._sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": r["receiptHandle"]} for i, r in enumerate(chunk)],
            )
        ms = (time.perf_counter() - started) * 1000
        self._log(f"[sqs] {len(records)} record(s) -> {self.source.function}: {outcome} ({ms:.0f} ms)")
