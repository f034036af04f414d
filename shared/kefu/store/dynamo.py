"""Small DynamoDB helpers shared by the stores: batched reads and conditional-failure checks."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from kefu import aws

BATCH_GET = 100


def chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def batch_get(table_name: str, keys: Iterable[dict[str, Any]], projection: str | None = None) -> list[dict[str, Any]]:
    """Read many items by key (100 per request), retrying unprocessed keys."""
    found: list[dict[str, Any]] = []
    unique = list({tuple(sorted(k.items())): k for k in keys}.values())
    for chunk in chunks(unique, BATCH_GET):
        request: dict[str, Any] = {"Keys": chunk, "ConsistentRead": True}
        if projection:
            request["ProjectionExpression"] = projection
        pending = {table_name: request}
        for attempt in range(8):
            response = aws.dynamodb().batch_get_item(RequestItems=pending)
            found.extend(response.get("Responses", {}).get(table_name, []))
            pending = response.get("UnprocessedKeys") or {}
            if not pending:
                break
            time.sleep(0.05 * 2**attempt)
        else:
            raise RuntimeError(f"{table_name}: unprocessed keys after retries")
    return found


def put_all(table_name: str, items: Iterable[dict[str, Any]]) -> int:
    """Write many items in batches of 25 (the writer retries unprocessed items)."""
    count = 0
    with aws.table(table_name).batch_writer() as writer:
        for item in items:
            writer.put_item(Item=item)
            count += 1
    return count


def is_conditional_failure(exc: Exception) -> bool:
    response = getattr(exc, "response", None) or {}
    return response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


def conditionally(write: Callable[[], Any]) -> bool:
    """Make a conditional write: True when it was made, False when its condition did not hold
    (any other failure is raised)."""
    try:
        write()
        return True
    except Exception as exc:
        if is_conditional_failure(exc):
            return False
        raise


CONFLICT_ATTEMPTS = 12
CONFLICT_BACKOFF = 0.025  # seconds; doubled per attempt up to CONFLICT_BACKOFF_MAX, with full jitter
CONFLICT_BACKOFF_MAX = 1.0
_jitter = random.SystemRandom()


def transact(client: Any, items: list[dict[str, Any]], sleep: Callable[[float], None] = time.sleep) -> list[str] | None:
    """Make a write transaction. Returns None when it was made, or the cancellation reason codes
    (one per item, "None" where that item was fine) when a condition failed.

    DynamoDB cancels a transaction that overlaps another one in progress on the same items
    ("TransactionConflict"). That says nothing about the conditions, so it is never taken for a
    failed condition: the transaction is tried again after a jittered backoff (concurrent writers
    would otherwise collide again in step), and raised if it keeps conflicting."""
    for attempt in range(CONFLICT_ATTEMPTS):
        try:
            client.transact_write_items(TransactItems=items)
            return None
        except client.exceptions.TransactionCanceledException as exc:
            reasons = [str(r.get("Code") or "None") for r in exc.response.get("CancellationReasons", [])]
            if "ConditionalCheckFailed" in reasons:
                return reasons
            if "TransactionConflict" not in reasons or attempt == CONFLICT_ATTEMPTS - 1:
                raise
        sleep(_jitter.uniform(0, min(CONFLICT_BACKOFF_MAX, CONFLICT_BACKOFF * 2**attempt)))
    raise AssertionError("unreachable")  # pragma: no cover


class TableStore:
    """A store over one DynamoDB table: the boto3 Table it is given when built, or (deployed) the
    container's shared one for ``table_name``, created on first use."""

    def __init__(self, table_name: str, table: Any = None) -> None:
        self._name = table_name
        self._given = table

    @property
    def _table(self) -> Any:
        return self._given if self._given is not None else aws.table(self._name)
