"""Runs the template's Schedule events as EventBridge would: the function is invoked with a
"Scheduled Event" at its rate, the first run one period after the stack starts.

KEFU_LOCAL_SCHEDULE_SECONDS overrides every period (the tests run the sweep every few seconds);
"off" runs none. A failed run is logged and not retried (EventBridge retries an asynchronous
invocation twice; the next run repeats a sweep's work anyway, so locally the retry is left out,
which is never kinder to the code than AWS)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from local.functions import LocalFunction, ScheduleSource

ACCOUNT = "123456789012"


def scheduled_event(rule_arn: str, region: str, at: datetime) -> dict[str, Any]:
    return {"version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event", "source": "aws.events",
            "account": ACCOUNT, "time": at.strftime("%Y-%m-%dT%H:%M:%SZ"), "region": region,
            "resources": [rule_arn], "detail": {}}


class ScheduleRunner:
    def __init__(self, source: ScheduleSource, function: LocalFunction, region: str, log: Callable[[str], None],
                 period: float | None = None) -> None:
        self.source = source
        self.function = function
        self.region = region
        self.period = period if period is not None else source.period
        self._log = log
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"schedule-{source.function}", daemon=True)
        self.runs = 0

    def start(self) -> None:
        self._log(f"kefu local stack: {self.source.function} runs every {self.period:g} s ({self.source.expression})")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        rule = f"arn:aws:events:{self.region}:{ACCOUNT}:rule/{self.source.function}-{self.source.event_name}"
        while not self._stop.wait(self.period):
            event = scheduled_event(rule, self.region, datetime.now(UTC))
            try:
                result = self.function.invoke(event)
                self.runs += 1
                self._log(f"[schedule] {self.source.function}: {result}")
            except Exception as exc:  # a failed run is the next run's to repeat
                self._log(f"[schedule] {self.source.function} failed: {type(exc).__name__}: {exc}")
