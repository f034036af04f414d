"""The queue consumers' batch processor: per-group failures, one ERROR line per failed record."""

from __future__ import annotations

import json
import logging

import pytest
from aws_lambda_powertools.utilities.batch import process_partial_response
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from kefu.batch import LoggedFifoProcessor, failure_fields
from kefu.wecom.errors import WeComError


class Lines:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict]] = []

    def error(self, message: str, extra: dict) -> None:
        self.lines.append(("ERROR", message, extra))

    def warning(self, message: str, extra: dict) -> None:
        self.lines.append(("WARNING", message, extra))


def record(n: int, euid: str, receives: int = 1) -> dict:
    body = {"open_kfid": "wkA", "external_userid": euid, "items": [{"msgid": f"m{n}", "item": {"text": "secret words"}}]}
    return {"messageId": f"id{n}", "receiptHandle": f"h{n}", "body": json.dumps(body),
            "attributes": {"ApproximateReceiveCount": str(receives), "MessageGroupId": f"wkA#{euid}"},
            "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs", "eventSourceARN": "arn", "awsRegion": "r"}


def run(records: list[dict], fail: set[str]) -> tuple[set[str], Lines]:
    lines = Lines()

    def handler(record) -> None:  # noqa: ANN001 - Powertools SQSRecord
        msgid = json.loads(record.body)["items"][0]["msgid"]
        if msgid in fail:
            raise WeComError("kf/send_msg", 45009, "api freq out of limit")

    response = process_partial_response(event={"Records": records}, record_handler=handler,
                                        processor=LoggedFifoProcessor(lines), context=None)
    return {f["itemIdentifier"] for f in response["batchItemFailures"]}, lines


def test_only_the_failing_customers_group_waits() -> None:
    failed, _ = run([record(1, "a"), record(2, "b"), record(3, "a"), record(4, "c")], fail={"m1"})
    assert failed == {"id1", "id3"}  # b and c go on; a's later record keeps its order behind m1


def test_every_failed_record_is_one_error_line_with_what_explains_it() -> None:
    _, lines = run([record(1, "a", receives=3), record(2, "a"), record(3, "b")], fail={"m1"})
    errors = [extra for level, message, extra in lines.lines if level == "ERROR"]
    assert len(errors) == 2
    first, second = errors
    assert first["exception_type"] == "WeComError" and first["errcode"] == 45009
    assert first["open_kfid"] == "wkA" and first["external_userid"] == "a" and first["receive_count"] == 3
    assert first["msgids"] == ["m1"]
    assert second["exception_type"] == "SQSFifoMessageGroupCircuitBreakerError" and second["msgids"] == ["m2"]
    assert "secret words" not in repr(lines.lines)


def test_a_record_received_again_says_so() -> None:
    _, lines = run([record(1, "a", receives=2)], fail=set())
    assert lines.lines == [("WARNING", "record received again",
                            {"receive_count": 2, "group": "wkA#a", "open_kfid": "wkA", "external_userid": "a",
                             "msgids": ["m1"]})]


def test_a_body_that_is_not_json_still_gets_its_line() -> None:
    fields = failure_fields("not json", {"ApproximateReceiveCount": "5"}, (ValueError, ValueError("bad"), None))
    assert fields == {"exception_type": "ValueError", "error": "bad", "receive_count": 5}


def test_the_processor_logs_through_a_real_logger(caplog) -> None:
    logger = logging.getLogger("kefu-test-batch")

    def boom(record) -> None:  # noqa: ANN001
        raise RuntimeError("boom")

    with caplog.at_level(logging.WARNING, logger="kefu-test-batch"), pytest.raises(BatchProcessingError):
        process_partial_response(event={"Records": [record(1, "a")]}, processor=LoggedFifoProcessor(logger),
                                 record_handler=boom, context=None)
    assert [r.levelname for r in caplog.records if r.name == "kefu-test-batch"] == ["ERROR"]
