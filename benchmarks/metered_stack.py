"""The local stack (`python -m local.stack`) with Lambda's platform log lines around every invocation.

Deployed, Lambda writes START, END and REPORT lines (duration, billed duration, memory size) to
each function's log group. The local stack runs handlers in-process and writes none, so the cost
model (benchmarks/cost_bench.py) runs it through this wrapper: every invocation - an HTTP route
or a queue batch - is timed around the handler call and followed by those three lines in Lambda's
text format, plus one METER line for the cost model (not a log line: it is not counted as log
bytes). Nothing else changes: same template, same functions, same pollers, same HTTP server.
"""

from __future__ import annotations

import math
import resource
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT / "shared", ROOT):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from local import stack as local_stack  # noqa: E402

_print_lock = threading.Lock()


class MeteredFunction:
    """Wraps a local.functions.LocalFunction; everything but invoke() is passed through."""

    def __init__(self, function: Any) -> None:
        self._function = function

    def __getattr__(self, name: str) -> Any:
        return getattr(self._function, name)

    def invoke(self, event: dict[str, Any]) -> Any:
        fn = self._function
        request_id = str(uuid.uuid4())
        environments = fn.environments
        started = time.perf_counter()
        outcome = "ok"
        try:
            return fn.invoke(event)
        except BaseException:
            outcome = "error"
            raise
        finally:
            ms = (time.perf_counter() - started) * 1000
            cold = fn.environments > environments  # a new environment was loaded for this call
            records = len(event.get("Records") or []) if isinstance(event, dict) else 0
            max_used = min(fn.memory, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
            text = (f"START RequestId: {request_id} Version: $LATEST\n"
                    f"END RequestId: {request_id}\n"
                    f"REPORT RequestId: {request_id}\tDuration: {ms:.2f} ms\tBilled Duration: {math.ceil(ms)} ms\t"
                    f"Memory Size: {fn.memory} MB\tMax Memory Used: {max_used} MB\t\n"
                    f"METER function={fn.logical_id} ms={ms:.3f} memory={fn.memory} records={records} "
                    f"cold={int(cold)} outcome={outcome}\n")
            with _print_lock:
                sys.stdout.write(text)
                sys.stdout.flush()


class MeteredStack(local_stack.LocalStack):
    def serve(self) -> None:
        self.functions = {name: MeteredFunction(fn) for name, fn in self.functions.items()}
        super().serve()


if __name__ == "__main__":
    local_stack.LocalStack = MeteredStack  # type: ignore[misc] - main() builds the stack by this name
    sys.exit(local_stack.main())
