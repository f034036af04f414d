"""Text output: aligned tables (CJK-aware), checklist marks, and a progress line on stderr."""

from __future__ import annotations

import sys
import time
import unicodedata
from collections.abc import Sequence
from typing import Any, TextIO

MARKS = {"ok": "✓", "fail": "✗", "warn": "!", "skip": "-"}


def width(text: str) -> int:
    """Columns a string takes in a terminal: wide (CJK) characters take two, combining marks none."""
    total = 0
    for char in text:
        if unicodedata.combining(char):
            continue
        total += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return total


def pad(text: str, columns: int, right: bool = False) -> str:
    fill = " " * max(0, columns - width(text))
    return fill + text if right else text + fill


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], right: Sequence[int] = ()) -> str:
    """Rows under headers, columns separated by two spaces; columns in ``right`` right-aligned."""
    texts = [[cell(v) for v in row] for row in rows]
    widths = [width(h) for h in headers]
    for row in texts:
        for i, text in enumerate(row):
            widths[i] = max(widths[i], width(text))
    aligned = set(right)

    def line(values: Sequence[str]) -> str:
        return "  ".join(pad(v, widths[i], i in aligned) for i, v in enumerate(values)).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(row) for row in texts)])


class Progress:
    """``label: n/total`` on stderr: rewritten in place on a terminal; elsewhere a line every few
    seconds once the work has taken that long (and the final count after it)."""

    def __init__(self, label: str, total: int | None = None, stream: TextIO | None = None,
                 every: float = 2.0) -> None:
        self.label = label
        self.total = total
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every = every
        self.count = 0
        self._last = time.monotonic()  # off a terminal, quick work prints nothing
        self._shown = False

    def _text(self) -> str:
        total = f"/{self.total}" if self.total is not None else ""
        return f"{self.label}: {self.count}{total}"

    def update(self, count: int | None = None, step: int = 1) -> None:
        self.count = self.count + step if count is None else count
        now = time.monotonic()
        if self.tty:
            self.stream.write("\r" + self._text() + "\x1b[K")
            self.stream.flush()
            self._shown = True
        elif now - self._last >= self.every:
            self.stream.write(self._text() + "\n")
            self.stream.flush()
            self._last = now
            self._shown = True

    def done(self, note: str = "") -> None:
        text = self._text() + (f" {note}" if note else "")
        if self.tty:
            self.stream.write("\r" + text + "\x1b[K\n")
        elif self._shown or note:
            self.stream.write(text + "\n")
        self.stream.flush()
