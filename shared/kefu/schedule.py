"""Scheduled functions (the sweep, WeCom's statistics): the time a run stands for."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any


def scheduled_at(event: dict[str, Any]) -> int:
    """The scheduled time of this run, from EventBridge's event (the same on a retried
    invocation), else now."""
    when = event.get("time")
    if isinstance(when, str):
        try:
            return int(datetime.fromisoformat(when.replace("Z", "+00:00")).timestamp())
        except ValueError:
            pass
    return int(time.time())
