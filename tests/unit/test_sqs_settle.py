"""Lambda's rules for which records of an SQS batch are deleted, as the local poller applies them."""

from local.sqs_poller import settle

RECORDS = [{"messageId": "a"}, {"messageId": "b"}, {"messageId": "c"}]


def ids(records: list[dict]) -> list[str]:
    return [r["messageId"] for r in records]


def test_without_report_failures_success_deletes_all() -> None:
    assert ids(settle({"batchItemFailures": [{"itemIdentifier": "a"}]}, RECORDS, False)) == ["a", "b", "c"]


def test_named_failures_stay() -> None:
    assert ids(settle({"batchItemFailures": [{"itemIdentifier": "b"}]}, RECORDS, True)) == ["a", "c"]


def test_empty_failure_list_or_none_deletes_all() -> None:
    assert ids(settle({"batchItemFailures": []}, RECORDS, True)) == ["a", "b", "c"]
    assert ids(settle(None, RECORDS, True)) == ["a", "b", "c"]


def test_unknown_identifier_fails_the_batch() -> None:
    assert settle({"batchItemFailures": [{"itemIdentifier": "zzz"}]}, RECORDS, True) == []
    assert settle({"batchItemFailures": [{"oops": 1}]}, RECORDS, True) == []
    assert settle("nonsense", RECORDS, True) == []
