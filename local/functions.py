"""The template's functions, loaded in this process and invoked with Lambda-shaped events."""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local.template import Template

FUNCTION_TYPE = "AWS::Serverless::Function"


@dataclass
class HttpRoute:
    method: str
    path: str
    function: str


@dataclass
class QueueSource:
    function: str
    event_name: str
    queue_arn: str
    batch_size: int
    report_failures: bool
    batching_window: int


@dataclass
class ScheduleSource:
    function: str
    event_name: str
    expression: str  # as in the template: rate(10 minutes)

    @property
    def period(self) -> float:
        """Seconds between runs, from a rate() expression (cron is not served locally)."""
        match = _RATE.fullmatch(self.expression.strip())
        if not match:
            raise RuntimeError(f"{self.function}.{self.event_name}: the local stack runs rate() schedules only, "
                               f"not {self.expression!r}")
        return int(match.group(1)) * _RATE_UNITS[match.group(2).rstrip("s")]


_RATE = re.compile(r"rate\((\d+) (minutes?|hours?|days?)\)")
_RATE_UNITS = {"minute": 60, "hour": 3600, "day": 86400}


@dataclass
class LocalContext:
    """The attributes of Lambda's context object that handlers and Powertools read."""

    function_name: str
    memory_limit_in_mb: int
    timeout: float
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    started: float = field(default_factory=time.monotonic)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{os.environ.get('AWS_DEFAULT_REGION', 'us-east-1')}:123456789012:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return "local"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout - (time.monotonic() - self.started)) * 1000))


@dataclass
class LocalFunction:
    """A function and its warm execution environments.

    Lambda runs one event at a time per execution environment and starts another environment for
    a concurrent event; module globals (a batch processor, per-invocation state) belong to one
    environment. Locally an environment is one load of the handler module: an invocation takes an
    idle one, or loads a new one (a cold start) when all are busy.
    """

    logical_id: str
    code_dir: Path
    handler_name: str
    environment: dict[str, str]
    timeout: float
    memory: int
    _idle: list[Any] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _loads: int = 0

    def _load_handler(self) -> Any:
        module_file, _, attr = self.handler_name.rpartition(".")
        path = self.code_dir / f"{module_file.replace('.', '/')}.py"
        with self._lock:
            self._loads += 1
            name = f"kefu_local_fn_{self.logical_id}_{self._loads}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise RuntimeError(f"{self.logical_id}: cannot load handler file {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return getattr(module, attr)

    def load(self) -> None:
        """Start one environment now, so configuration errors show when the stack starts."""
        handler = self._load_handler()
        with self._lock:
            self._idle.append(handler)

    @property
    def environments(self) -> int:
        return self._loads

    def invoke(self, event: dict[str, Any]) -> Any:
        with self._lock:
            handler = self._idle.pop() if self._idle else None
        if handler is None:
            handler = self._load_handler()
        try:
            return handler(event, LocalContext(self.logical_id, self.memory, self.timeout))
        finally:
            with self._lock:
                self._idle.append(handler)


def load_functions(template: Template, root: Path) -> tuple[dict[str, LocalFunction], list[HttpRoute], list[QueueSource]]:
    functions: dict[str, LocalFunction] = {}
    routes: list[HttpRoute] = []
    sources: list[QueueSource] = []
    for logical_id in template.resources(FUNCTION_TYPE):
        props = template.resolve(template.function_properties(logical_id))
        env = {k: str(v) for k, v in (props.get("Environment", {}).get("Variables") or {}).items()}
        functions[logical_id] = LocalFunction(
            logical_id=logical_id,
            code_dir=root / props["CodeUri"],
            handler_name=props["Handler"],
            environment=env,
            timeout=float(props.get("Timeout", 3)),
            memory=int(props.get("MemorySize", 128)),
        )
        for event_name, event in (props.get("Events") or {}).items():
            kind, ev = event.get("Type"), event.get("Properties") or {}
            if kind == "HttpApi":
                routes.append(HttpRoute(ev.get("Method", "ANY").upper(), ev.get("Path", "$default"), logical_id))
            elif kind == "SQS":
                sources.append(QueueSource(
                    function=logical_id,
                    event_name=event_name,
                    queue_arn=ev["Queue"],
                    batch_size=int(ev.get("BatchSize", 10)),
                    report_failures="ReportBatchItemFailures" in (ev.get("FunctionResponseTypes") or []),
                    batching_window=int(ev.get("MaximumBatchingWindowInSeconds", 0)),
                ))
            elif kind != "Schedule":  # schedules: load_schedules
                raise RuntimeError(f"{logical_id}.{event_name}: the local stack does not serve {kind} events")
    return functions, routes, sources


def load_schedules(template: Template) -> list[ScheduleSource]:
    """Every Schedule event of the template's functions."""
    schedules = []
    for logical_id in template.resources(FUNCTION_TYPE):
        props = template.resolve(template.function_properties(logical_id))
        for event_name, event in (props.get("Events") or {}).items():
            if event.get("Type") == "Schedule":
                source = ScheduleSource(logical_id, event_name, str((event.get("Properties") or {})["Schedule"]))
                source.period  # noqa: B018 - an expression the local stack cannot run fails at start
                schedules.append(source)
    return schedules


def apply_environment(functions: dict[str, LocalFunction]) -> None:
    """All functions share this process: their variables must agree where they overlap."""
    merged: dict[str, tuple[str, str]] = {}
    for fn in functions.values():
        for key, value in fn.environment.items():
            if key in merged and merged[key][1] != value:
                raise RuntimeError(
                    f"environment variable {key} differs between {merged[key][0]} and {fn.logical_id}; "
                    "the local stack runs all functions in one process"
                )
            merged[key] = (fn.logical_id, value)
    for key, (_, value) in merged.items():
        os.environ[key] = value
