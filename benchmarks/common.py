"""Shared set-up for benchmarks that run through the local stack (moto server + simulator)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bench(name: str, value: float, unit: str, note: str = "") -> None:
    """Print one figure for benchmarks/run_all.py to collect: ``BENCH name=value unit # note``."""
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    print(f"BENCH {name}={text} {unit}" + (f" # {note}" if note else ""), flush=True)


def start_stack_script(script: Path, env_overrides: dict[str, str]) -> Any:
    """Like tests/integration/harness.start_stack, for a script wrapping the local stack (the
    metered stack of the cost model). Returns the harness's StackProcess."""
    import queue
    import subprocess
    import threading
    import time

    from tests.integration.harness import READY_PREFIX, RESOURCES_PREFIX, START_TIMEOUT, StackProcess

    env = {k: v for k, v in os.environ.items() if not k.startswith(("WECOM_", "KEFU_"))}
    env.update({"PYTHONPATH": f"{ROOT / 'shared'}{os.pathsep}{ROOT}", "PYTHONUNBUFFERED": "1",
                "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "PORT": "0"})
    env.update(env_overrides)
    process = subprocess.Popen([sys.executable, str(script)], cwd=ROOT, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=1)
    lines: list[str] = []
    ready: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            line = line.rstrip("\n")
            lines.append(line)
            if line.startswith((READY_PREFIX, RESOURCES_PREFIX)):
                ready.put(line)
        ready.put("")

    threading.Thread(target=pump, daemon=True).start()
    resources: dict[str, Any] = {}
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            line = ready.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            process.kill()
            raise RuntimeError("stack did not become ready:\n" + "\n".join(lines)) from None
        if not line:
            raise RuntimeError("stack exited:\n" + "\n".join(lines))
        if line.startswith(RESOURCES_PREFIX):
            resources = json.loads(line[len(RESOURCES_PREFIX):])
        else:
            return StackProcess(process, line[len(READY_PREFIX):].strip(), resources, lines)


@contextlib.contextmanager
def local_stack(extra_env: dict[str, str] | None = None, script: Path | None = None) -> Iterator[tuple[Any, Any, str]]:
    """Yield (stack process, simulator, aws endpoint) for one benchmark run.

    ``script``: run that wrapper of the local stack instead of ``python -m local.stack``."""
    import logging

    from moto.server import ThreadedMotoServer

    from local.wecom_sim import WeComSimulator
    from tests.integration.harness import start_stack

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    endpoint = f"http://127.0.0.1:{port}"
    sim = WeComSimulator()
    sim.start()
    launch = start_stack if script is None else (lambda env: start_stack_script(script, env))
    stack = launch({
        "AWS_ENDPOINT_URL": endpoint, "WECOM_API_BASE": sim.base_url, "WECOM_CORP_ID": sim.corp_id,
        "WECOM_CORP_SECRET": sim.corp_secret, "WECOM_TOKEN": sim.token,
        "WECOM_ENCODING_AES_KEY": sim.encoding_aes_key, "KEFU_STACK_NAME": f"kefu-b{uuid.uuid4().hex[:6]}",
        **(extra_env or {}),
    })
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
