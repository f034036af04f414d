"""kefu.store.dynamo.transact: a conflict with a concurrent transaction is retried, never taken for
a failed condition; a failed condition is answered with its reasons."""

from __future__ import annotations

from typing import Any

import pytest

from kefu.store.dynamo import CONFLICT_ATTEMPTS, transact


class Cancelled(Exception):
    def __init__(self, *codes: str) -> None:
        super().__init__("cancelled")
        self.response = {"CancellationReasons": [{"Code": c} for c in codes]}


class Client:
    class exceptions:  # noqa: N801 - boto3's shape
        TransactionCanceledException = Cancelled

    def __init__(self, *answers: Cancelled | None) -> None:
        self.answers = list(answers)
        self.calls = 0

    def transact_write_items(self, TransactItems: list[dict[str, Any]]) -> None:  # noqa: N803
        self.calls += 1
        answer = self.answers.pop(0) if self.answers else None
        if answer is not None:
            raise answer


def test_a_conflict_is_retried_with_a_backoff_until_the_transaction_is_made() -> None:
    client, waits = Client(Cancelled("TransactionConflict", "None"), Cancelled("None", "TransactionConflict")), []
    assert transact(client, [{}, {}], sleep=waits.append) is None
    assert client.calls == 3 and len(waits) == 2


def test_a_failed_condition_returns_its_reasons_at_once() -> None:
    client = Client(Cancelled("None", "ConditionalCheckFailed"))
    assert transact(client, [{}, {}], sleep=lambda _s: None) == ["None", "ConditionalCheckFailed"]
    assert client.calls == 1


def test_a_conflict_that_does_not_clear_is_raised_not_taken_for_a_condition() -> None:
    client = Client(*[Cancelled("TransactionConflict")] * CONFLICT_ATTEMPTS)
    with pytest.raises(Cancelled):
        transact(client, [{}], sleep=lambda _s: None)
    assert client.calls == CONFLICT_ATTEMPTS


def test_other_cancellations_are_raised() -> None:
    with pytest.raises(Cancelled):
        transact(Client(Cancelled("ValidationError")), [{}], sleep=lambda _s: None)
