"""`kefu dlq [--redrive]`: the dead letters of the sync and route queues, and moving them back.

Showing receives messages with a short visibility timeout and releases them at once (the DLQs
have no redrive of their own, so a receive costs nothing). Redriving takes one message at a
time: send it to the source FIFO queue with the same MessageGroupId (order within a group is
kept) and a deduplication id derived from its DLQ message id, then delete it from the DLQ. A
message is deleted only after its send succeeded; on any failure the redrive stops and the rest
stays in the DLQ, visible again.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from kefu_cli.output import Progress, table
from kefu_cli.target import Target

QUEUES = {
    "sync": ("SyncDeadLetterQueueUrl", "SyncQueueUrl"),
    "route": ("RouteDeadLetterQueueUrl", "RouteQueueUrl"),
}
PEEK_VISIBILITY = 30
REDRIVE_VISIBILITY = 120


@dataclass
class DeadLetter:
    message_id: str
    group: str
    sent: str
    first_receive: str
    receive_count: int
    summary: str


def _time(millis: Any) -> str:
    try:
        return datetime.fromtimestamp(int(millis) / 1000).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError, OverflowError, OSError):
        return "-"


def summarize(body: str) -> str:
    """A short description of a sync job or a route batch (anything else: its first characters)."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("items"), list):
        kinds: Counter[str] = Counter()
        for entry in data["items"]:
            item = entry.get("item") if isinstance(entry, dict) else None
            if not isinstance(item, dict):
                kinds["?"] += 1
                continue
            kind = str(item.get("msgtype") or "?")
            event = item.get("event")
            if kind == "event" and isinstance(event, dict):
                kind = f"event/{event.get('event_type') or '?'}"
            kinds[kind] += 1
        who = data.get("external_userid") or "account events"
        parts = ", ".join(f"{k} x{n}" if n > 1 else k for k, n in kinds.items())
        return f"route {len(data['items'])} item(s) of {who}: {parts}"
    if isinstance(data, dict) and "open_kfid" in data and "create_time" in data:
        token = "with" if data.get("token") else "without"
        return f"sync {data['open_kfid']}, callback of {_time(int(data.get('create_time') or 0) * 1000)} ({token} token)"
    text = " ".join(body.split())
    return text[:77] + "..." if len(text) > 80 else text


def _dead_letter(message: dict[str, Any]) -> DeadLetter:
    attributes = message.get("Attributes") or {}
    return DeadLetter(
        message_id=str(message.get("MessageId")),
        group=str(attributes.get("MessageGroupId", "-")),
        sent=_time(attributes.get("SentTimestamp")),
        first_receive=_time(attributes.get("ApproximateFirstReceiveTimestamp")),
        receive_count=int(attributes.get("ApproximateReceiveCount") or 0),
        summary=summarize(str(message.get("Body", ""))),
    )


def _receive(sqs: Any, url: str, count: int, visibility: int) -> list[dict[str, Any]]:
    response = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=count, VisibilityTimeout=visibility,
                                   WaitTimeSeconds=1, MessageSystemAttributeNames=["All"],
                                   MessageAttributeNames=["All"])
    return list(response.get("Messages") or [])


def _release(sqs: Any, url: str, messages: list[dict[str, Any]]) -> None:
    """Make received messages visible again now."""
    for start in range(0, len(messages), 10):
        chunk = messages[start : start + 10]
        sqs.change_message_visibility_batch(QueueUrl=url, Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0} for i, m in enumerate(chunk)])


def depth(sqs: Any, url: str) -> tuple[int, int]:
    """(messages waiting, messages in flight) of a queue."""
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(attributes.get("ApproximateNumberOfMessages", 0)), int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0))


def peek(sqs: Any, url: str, limit: int) -> list[DeadLetter]:
    """Up to ``limit`` dead letters, left in the queue. (FIFO hands out one batch per message group
    at a time, so a group's later messages may not show until the first ones are gone.)"""
    received: list[dict[str, Any]] = []
    try:
        while len(received) < limit:
            batch = _receive(sqs, url, min(10, limit - len(received)), PEEK_VISIBILITY)
            if not batch:
                break
            received.extend(batch)
    finally:
        if received:
            _release(sqs, url, received)
    return [_dead_letter(m) for m in received]


@dataclass
class Redrive:
    moved: int = 0
    error: str | None = None


def redrive(sqs: Any, dlq_url: str, source_url: str, progress: Progress, most: int) -> Redrive:
    """Move up to ``most`` dead letters back (the count at the start: a message that fails again
    and returns meanwhile waits for the next redrive instead of cycling)."""
    result = Redrive()
    while result.moved < most:
        batch = _receive(sqs, dlq_url, min(10, most - result.moved), REDRIVE_VISIBILITY)
        if not batch:
            return result
        for index, message in enumerate(batch):
            attributes = message.get("Attributes") or {}
            send: dict[str, Any] = {"QueueUrl": source_url, "MessageBody": message["Body"],
                                    "MessageDeduplicationId": f"redrive-{message['MessageId']}"}
            if attributes.get("MessageGroupId"):
                send["MessageGroupId"] = attributes["MessageGroupId"]
            if message.get("MessageAttributes"):
                send["MessageAttributes"] = message["MessageAttributes"]
            try:
                sqs.send_message(**send)
            except Exception as exc:  # keep it and everything after it in the DLQ
                _release_quietly(sqs, dlq_url, batch[index:])
                result.error = f"could not send {message['MessageId']} back ({type(exc).__name__}: {exc}); it stays in the DLQ"
                return result
            try:
                sqs.delete_message(QueueUrl=dlq_url, ReceiptHandle=message["ReceiptHandle"])
            except Exception as exc:
                _release_quietly(sqs, dlq_url, batch[index + 1 :])
                result.moved += 1
                result.error = (f"{message['MessageId']} was sent back but not deleted from the DLQ "
                                f"({type(exc).__name__}: {exc}); it shows again there (a repeat within 5 minutes "
                                "is dropped by the queue's deduplication, and the functions skip work already done)")
                return result
            result.moved += 1
            progress.update(result.moved)
    return result


def _release_quietly(sqs: Any, url: str, messages: list[dict[str, Any]]) -> None:
    try:
        _release(sqs, url, messages)
    except Exception:  # they become visible when their visibility timeout ends
        pass  # nosec B110 - best effort; nothing is lost either way


def run(target: Target, names: list[str], do_redrive: bool, limit: int) -> tuple[list[dict[str, Any]], bool]:
    """One report per queue (as JSON-able dicts) and whether everything went well."""
    sqs = target.client("sqs")
    reports: list[dict[str, Any]] = []
    ok = True
    for name in names:
        dlq_output, source_output = QUEUES[name]
        dlq_url = target.output(dlq_output)
        waiting, in_flight = depth(sqs, dlq_url)
        report: dict[str, Any] = {"queue": name, "url": dlq_url, "count": waiting, "in_flight": in_flight}
        if do_redrive:
            source_url = target.output(source_output)
            progress = Progress(f"redriving {name} dead letters", waiting + in_flight)
            result = redrive(sqs, dlq_url, source_url, progress, waiting + in_flight)
            progress.done()
            report.update({"source": source_url, "moved": result.moved, "error": result.error})
            ok = ok and result.error is None
        else:
            report["messages"] = [asdict(d) for d in peek(sqs, dlq_url, limit)] if waiting else []
        reports.append(report)
    return reports, ok


def render(reports: list[dict[str, Any]]) -> str:
    lines: list[str] = []
    for report in reports:
        name, count = report["queue"], report["count"]
        in_flight = f" (+{report['in_flight']} in flight)" if report.get("in_flight") else ""
        if "moved" in report:
            line = f"{name}: moved {report['moved']} dead letter(s) back to {report['source'].rsplit('/', 1)[-1]}"
            lines.append(line + (f"\n  ✗ {report['error']}" if report.get("error") else ""))
            continue
        lines.append(f"{name}: {count} dead letter(s){in_flight} in {report['url'].rsplit('/', 1)[-1]}")
        messages = report.get("messages") or []
        if messages:
            rows = [(m["group"], m["first_receive"], m["receive_count"], m["summary"]) for m in messages]
            lines.append("\n".join("  " + line for line in
                                   table(["group", "first received", "receives", "summary"], rows, right=[2]).splitlines()))
            if len(messages) < count:
                lines.append(f"  ({count - len(messages)} more not shown; --limit)")
    return "\n".join(lines)
