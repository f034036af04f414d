"""The FIFO batch processor the queue consumers share: Powertools' SqsFifoPartialProcessor that
skips only the failing record's own message group, and logs one ERROR line for every record it
reports as failed.

Only the failed record's group waits for its retry (FIFO order within that group is kept); the
records of other groups in the same batch (other customers, other accounts) go on at once and
spend none of their receives on someone else's failure.

A record that reaches a dead-letter queue has failed maxReceiveCount times; each of those
failures is a line with the exception type, WeCom's errcode when there is one, the account, the
customer and the receive count, so a DLQ arrival is always explained by the logs.
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.utilities.batch import ExceptionInfo, SqsFifoPartialProcessor

from kefu.wecom.errors import WeComError


def record_fields(body: str, attributes: dict[str, Any]) -> dict[str, Any]:
    """What a log line says about a queue record: account, customer, msgids, receive count
    (never message text)."""
    fields: dict[str, Any] = {
        "receive_count": int(attributes.get("ApproximateReceiveCount") or 0),
        "group": attributes.get("MessageGroupId"),
    }
    try:
        job = json.loads(body)
    except ValueError:
        job = None
    if isinstance(job, dict):
        fields["open_kfid"] = job.get("open_kfid")
        fields["external_userid"] = job.get("external_userid")
        items = job.get("items")
        if isinstance(items, list):
            fields["msgids"] = [entry.get("msgid") for entry in items if isinstance(entry, dict)]
    return {key: value for key, value in fields.items() if value is not None}


def failure_fields(body: str, attributes: dict[str, Any], exception: ExceptionInfo) -> dict[str, Any]:
    """A failed record's log fields: the exception type, WeCom's errcode, and the record's."""
    error = exception[1]
    fields: dict[str, Any] = {
        "exception_type": exception[0].__name__ if exception[0] else "unknown",
        "error": str(error)[:300] if error is not None else None,
    }
    if isinstance(error, WeComError):
        fields.update(errcode=error.errcode, http_status=error.http_status)
    return {key: value for key, value in fields.items() if value is not None} | record_fields(body, attributes)


class LoggedFifoProcessor(SqsFifoPartialProcessor):
    """SqsFifoPartialProcessor per group, whose every failed record is one ERROR log line."""

    def __init__(self, logger: Any) -> None:
        super().__init__(skip_group_on_error=True)
        self._log = logger

    def _process_record(self, record: dict[str, Any]) -> Any:
        attributes = record.get("attributes") or {}
        if int(attributes.get("ApproximateReceiveCount") or 1) > 1:
            # An earlier receive failed, timed out or died with its process: say so, so that
            # every receive a record spends towards the dead-letter queue shows in the logs.
            self._log.warning("record received again", extra=record_fields(str(record.get("body") or ""), attributes))
        return super()._process_record(record)

    def failure_handler(self, record: Any, exception: ExceptionInfo) -> Any:
        fields = failure_fields(record.body, dict(record.raw_event.get("attributes") or {}), exception)
        self._log.error("record failed", extra=fields)
        return super().failure_handler(record, exception)
