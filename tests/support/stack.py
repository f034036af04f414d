"""Running the local stack for tests: the same `python -m local.stack` that `make dev` runs,
in a child process, against a moto server and a WeCom simulator owned by the test session."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
READY_PREFIX = "kefu local stack ready: "
RESOURCES_PREFIX = "kefu local stack resources: "
START_TIMEOUT = 60
# Every stack's whole output is kept here (killed ones too), so a failing run can be read.
LOG_DIR = Path(os.environ.get("KEFU_STACK_LOG_DIR") or ROOT / "build" / "stack-logs")


@dataclass
class StackProcess:
    process: subprocess.Popen[str]
    url: str
    resources: dict[str, str]
    lines: list[str] = field(default_factory=list)
    pump: threading.Thread = field(default_factory=threading.Thread)
    started: float = field(default_factory=time.time)

    def output(self) -> str:
        return "\n".join(self.lines)

    def save(self) -> Path:
        """Write the stack's output so far to LOG_DIR; returns the file."""
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        path = LOG_DIR / f"stack-{time.strftime('%Y%m%d-%H%M%S', time.localtime(self.started))}-{self.process.pid}.log"
        path.write_text(self.output() + "\n", encoding="utf-8")
        return path

    def kill(self) -> Path:
        """End the stack with no clean shutdown (whatever ran stops between two steps); keep its output."""
        self.process.kill()
        self.process.wait()
        self.pump.join(timeout=5)  # the last lines the process wrote before it died
        return self.save()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.pump.join(timeout=5)
        self.save()
        return int(self.process.returncode)


def start_stack(env_overrides: dict[str, str], command: list[str] | None = None) -> StackProcess:
    """Run the local stack (or ``command``, a script wrapping it) and wait for its ready line."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WECOM_", "KEFU_"))}
    env.update({"PYTHONPATH": f"{ROOT / 'shared'}{os.pathsep}{ROOT}", "PYTHONUNBUFFERED": "1",
                "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "PORT": "0"})
    env.update(env_overrides)
    process = subprocess.Popen(
        command or [sys.executable, "-m", "local.stack"], cwd=ROOT, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=1,
    )
    lines: list[str] = []
    ready: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            line = line.rstrip("\n")
            lines.append(line)
            if line.startswith((READY_PREFIX, RESOURCES_PREFIX)):
                ready.put(line)
        ready.put("")  # process ended

    pumping = threading.Thread(target=pump, daemon=True)
    pumping.start()
    resources: dict[str, Any] = {}
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            line = ready.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            process.kill()
            raise RuntimeError("local stack did not become ready:\n" + "\n".join(lines)) from None
        if not line:
            raise RuntimeError("local stack exited:\n" + "\n".join(lines))
        if line.startswith(RESOURCES_PREFIX):
            resources = json.loads(line[len(RESOURCES_PREFIX):])
        else:
            return StackProcess(process, line[len(READY_PREFIX):].strip(), resources, lines, pumping)


def wait_for(predicate: Any, timeout: float = 15.0, interval: float = 0.05, message: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def max_receive_count(queue: str) -> int:
    """The maxReceiveCount template.yaml gives a queue (logical id): the tests size their kills
    and faults by the template, never by a number of their own."""
    from local.template import load_template

    return int(load_template(ROOT / "template.yaml")["Resources"][queue]["Properties"]["RedrivePolicy"]["maxReceiveCount"])


def free_port() -> int:
    """A loopback port nobody listens on (yet)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stack_env(aws_endpoint: str, simulator: Any, stack_name: str, **extra: str) -> dict[str, str]:
    """The environment a local stack needs to use this emulator and this simulator."""
    return {
        "AWS_ENDPOINT_URL": aws_endpoint, "WECOM_API_BASE": simulator.base_url,
        "WECOM_CORP_ID": simulator.corp_id, "WECOM_CORP_SECRET": simulator.corp_secret,
        "WECOM_TOKEN": simulator.token, "WECOM_ENCODING_AES_KEY": simulator.encoding_aes_key,
        "KEFU_STACK_NAME": stack_name,
        "KEFU_LOG_FORMAT": "json",  # the tests and benchmarks read the functions' JSON lines
        **extra,
    }


def start_provider_stack(aws_endpoint: str, provider: Any, state_file: Path, **params: str) -> StackProcess:
    """A local stack in provider mode (template Mode=provider) against ``provider`` (a
    local.wecom_sim.ProviderSimulator), which then posts both of its callbacks to the stack;
    ``params`` are more template parameters. No model, no schedules, the deployment's rules
    those of tests/integration/route_rules.yaml."""
    import uuid

    from local.wecom_sim import DEMO_CORP_ID

    env = {
        "AWS_ENDPOINT_URL": aws_endpoint, "WECOM_API_BASE": provider.base_url,
        "WECOM_CORP_ID": DEMO_CORP_ID, "WECOM_CORP_SECRET": "provider-own-corp-secret-unused",
        "WECOM_TOKEN": provider.token, "WECOM_ENCODING_AES_KEY": provider.encoding_aes_key,
        "WECOM_SUITE_SECRET": provider.suite_secret, "KEFU_STATE_FILE": str(state_file),
        "KEFU_STACK_NAME": f"kefu-p{uuid.uuid4().hex[:8]}", "KEFU_LOG_FORMAT": "json",
        "KEFU_LOCAL_VISIBILITY_TIMEOUT": "2", "KEFU_LOCAL_SCHEDULE_SECONDS": "off",
        "KEFU_ROUTING_CONFIG": str(ROOT / "tests" / "integration" / "route_rules.yaml"),
        "KEFU_TEMPLATE_PARAMS": json.dumps({"Mode": "provider", "SuiteId": provider.suite_id, "BedrockModelId": "",
                                            **params}),
    }
    proc = start_stack(env)
    provider.set_callback_urls(f"{proc.url}/callback", f"{proc.url}/callback")  # one URL takes both
    return proc
