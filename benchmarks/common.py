"""Shared set-up for benchmarks that run through the local stack (moto server + simulator)."""

from __future__ import annotations

import contextlib
import statistics
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT / "shared", ROOT):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))


from tests.support.stack import free_port, stack_env, start_stack  # noqa: E402 - after the path set-up
from tests.support.store import stored_count  # noqa: E402,F401 - the benchmarks' one stored-count helper


def bench(name: str, value: float, unit: str, note: str = "") -> None:
    """Print one figure for benchmarks/run_all.py to collect: ``BENCH name=value unit # note``."""
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    print(f"BENCH {name}={text} {unit}" + (f" # {note}" if note else ""), flush=True)


@contextlib.contextmanager
def local_stack(extra_env: dict[str, str] | None = None, script: Path | None = None) -> Iterator[tuple[Any, Any, str]]:
    """Yield (stack process, simulator, aws endpoint) for one benchmark run.

    ``script``: run that wrapper of the local stack instead of ``python -m local.stack``."""
    from local.emulator import start_moto
    from local.wecom_sim import WeComSimulator

    port = free_port()
    moto = start_moto("127.0.0.1", port)
    endpoint = f"http://127.0.0.1:{port}"
    sim = WeComSimulator()
    sim.start()
    launch = start_stack if script is None else (lambda env: start_stack(env, [sys.executable, str(script)]))
    stack = launch(stack_env(endpoint, sim, f"kefu-b{uuid.uuid4().hex[:6]}", **(extra_env or {})))
    sim.set_callback_url(f"{stack.url}/callback")
    try:
        yield stack, sim, endpoint
    finally:
        stack.stop()
        sim.stop()
        moto.stop()


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary(values: list[float], unit: str = "ms") -> str:
    return (f"n={len(values)} p50={percentile(values, 50):.1f}{unit} p99={percentile(values, 99):.1f}{unit} "
            f"mean={statistics.fmean(values):.1f}{unit}")
