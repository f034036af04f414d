"""The local stack (`python -m local.stack`) with Lambda's platform log lines around every invocation.

Deployed, Lambda writes START, END and REPORT lines (duration, billed duration, memory size) to
each function's log group. The local stack runs handlers in-process and writes none, so the cost
model (benchmarks/cost_bench.py) runs it through this wrapper: every invocation - an HTTP route
or a queue batch - is timed around the handler call and followed by those three lines in Lambda's
text format, plus one METER line for the cost model (not a log line: it is not counted as log
bytes). The METER line also carries the handler's own CPU time (its thread's, so neither the
emulator nor the other functions running beside it count) and the AWS calls it made, by service
and operation (counted with a botocore event hook on boto3's default session, which is where
kefu.aws makes its clients; the local stack's own pollers use a session of their own and are not
counted). Nothing else changes: same template, same functions, same pollers, same HTTP server.
"""

from __future__ import annotations

import math
import resource
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT / "shared", ROOT):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from local import stack as local_stack  # noqa: E402

_print_lock = threading.Lock()
_current = threading.local()  # the AWS calls of the invocation running on this thread


def _count_call(model: Any = None, **_: Any) -> None:
    calls = getattr(_current, "calls", None)
    if calls is not None and model is not None:
        calls[f"{model.service_model.service_name}.{model.name}"] += 1


def count_aws_calls() -> None:
    """Count every AWS call made through boto3's default session, per invocation (see above)."""
    import boto3

    boto3.setup_default_session()
    boto3.DEFAULT_SESSION.events.register("before-call", _count_call)  # type: ignore[union-attr]


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
        started, cpu_started = time.perf_counter(), time.thread_time()
        _current.calls = calls = Counter()
        outcome = "ok"
        try:
            return fn.invoke(event)
        except BaseException:
            outcome = "error"
            raise
        finally:
            ms = (time.perf_counter() - started) * 1000
            cpu_ms = (time.thread_time() - cpu_started) * 1000
            _current.calls = None
            cold = fn.environments > environments  # a new environment was loaded for this call
            records = len(event.get("Records") or []) if isinstance(event, dict) else 0
            max_used = min(fn.memory, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
            text = (f"START RequestId: {request_id} Version: $LATEST\n"
                    f"END RequestId: {request_id}\n"
                    f"REPORT RequestId: {request_id}\tDuration: {ms:.2f} ms\tBilled Duration: {math.ceil(ms)} ms\t"
                    f"Memory Size: {fn.memory} MB\tMax Memory Used: {max_used} MB\t\n"
                    f"METER function={fn.logical_id} ms={ms:.3f} memory={fn.memory} records={records} "
                    f"cold={int(cold)} outcome={outcome} cpu_ms={cpu_ms:.3f} "
                    f"calls={','.join(f'{op}:{n}' for op, n in sorted(calls.items())) or '-'}\n")
            with _print_lock:
                sys.stdout.write(text)
                sys.stdout.flush()


class MeteredStack(local_stack.LocalStack):
    def serve(self) -> None:
        self.functions = {name: MeteredFunction(fn) for name, fn in self.functions.items()}
        super().serve()


if __name__ == "__main__":
    local_stack.LocalStack = MeteredStack  # type: ignore[misc] - main() builds the stack by this name
    count_aws_calls()
    sys.exit(local_stack.main())
