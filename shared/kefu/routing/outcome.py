"""What the route function decided for an item: one log line and one metric each."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Outcome(StrEnum):
    """The metric dimension of a decision (its detail goes in ``Decision.detail``)."""

    SENT = "sent"
    FAILED = "failed"  # WeCom refused a send that cannot be repeated (a used or expired code)
    NOT_SENT = "not sent"  # Kefu held it back: no send left in the window, or the wrong state
    SKIPPED = "skipped"
    IGNORED = "ignored"
    ASSIGNED = "assigned"
    POOL = "pool"
    HUMAN = "human"
    ENDED = "ended"
    RATED = "rated"
    ON_DUTY = "on duty"
    OFF_DUTY = "off duty"
    REPORTED = "reported"
    EXTERNAL = "external"  # left to the enterprise's own system (handler: external)


@dataclass(frozen=True)
class Decision:
    open_kfid: str
    external_userid: str | None
    scene: str | None
    rule: str
    outcome: Outcome
    servicer: str | None = None
    detail: str | None = None

    def fields(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Outcome) else v) for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class SendResult:
    outcome: Outcome
    detail: str | None = None

    def __str__(self) -> str:
        return f"{self.outcome} ({self.detail})" if self.detail else str(self.outcome)


SENT = SendResult(Outcome.SENT)
