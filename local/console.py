"""The local stack's console: the functions' JSON log lines, kept whole in a file, shown short.

Deployed, each function writes one JSON object per log line (Powertools Logger) and one per metric
blob (CloudWatch EMF) - right for CloudWatch Logs Insights, hard to read scrolling past. Locally
every such line goes whole to the log file the stack names at start, and the console shows a log
line condensed to one line (time, function, level, message, its own fields) and no metric blobs.
``KEFU_LOG_FORMAT=json`` shows the full JSON on the console instead (the tests read it so).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, TextIO

# Fields every Powertools log line carries: the file has them, the console leaves them out.
STANDARD = frozenset({"level", "location", "message", "timestamp", "service", "cold_start", "function_name",
                      "function_memory_size", "function_arn", "function_request_id", "xray_trace_id",
                      "sampling_rate", "exception_name", "exception"})
SHORT_VALUE = 60


def condense(record: dict[str, Any]) -> str:
    """``08:22:53 route   INFO  route decision rule=welcome outcome=sent``"""
    clock = str(record.get("timestamp", ""))[11:19]
    fields = " ".join(f"{key}={_short(value)}" for key, value in record.items() if key not in STANDARD)
    line = f"{clock} {str(record.get('service', '?')):<8} {str(record.get('level', '')):<5} {record.get('message', '')}"
    if record.get("exception_name"):
        line += f" [{record['exception_name']}]"
    return f"{line} {fields}".rstrip()


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= SHORT_VALUE else text[: SHORT_VALUE - 1] + "…"


class Console:
    """A stand-in for sys.stdout: plain lines pass through, JSON lines go to the file (and, short,
    to the console). Writes from many threads are kept whole, line by line."""

    def __init__(self, console: TextIO, log_file: Path, full_json: bool) -> None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        self._console = console
        self._file = log_file.open("a", encoding="utf-8")
        self._full_json = full_json
        self._lock = threading.Lock()
        self._pending: dict[int, str] = {}  # per thread: text written without its newline yet

    def write(self, text: str) -> int:
        ident = threading.get_ident()
        with self._lock:
            buffered = self._pending.pop(ident, "") + text
            *lines, rest = buffered.split("\n")
            if rest:
                self._pending[ident] = rest
            for line in lines:
                self._emit(line)
        return len(text)

    def _emit(self, line: str) -> None:
        if not line.startswith("{"):
            self._console.write(line + "\n")
            return
        self._file.write(line + "\n")
        if self._full_json:
            self._console.write(line + "\n")
            return
        try:
            record = json.loads(line)
        except ValueError:
            self._console.write(line + "\n")
            return
        if isinstance(record, dict) and "_aws" not in record:  # metric blobs stay in the file
            self._console.write(condense(record) + "\n")

    def flush(self) -> None:
        with self._lock:
            self._file.flush()
            self._console.flush()

    def isatty(self) -> bool:
        return self._console.isatty()

    @property
    def encoding(self) -> str:
        return "utf-8"
