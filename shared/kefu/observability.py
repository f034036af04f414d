"""Logging and metrics for the functions.

Two flavours, writing the same lines:

* ``logger(service)`` / ``metrics(service)`` / ``count(...)``: Powertools Logger and Metrics, for
  the functions that use more of them (appended keys, exception logging, dimensions). No Tracer:
  it costs ~0.3 s of import.
* ``JsonLogger`` / ``EmfCounter``: Powertools' log line and its EMF metric blob written directly
  with the standard library, for a function whose cold start must stay close to bare boto3 (the
  callback). Same keys in the same order: level, location, message, timestamp, service, the
  Lambda context keys kept (cold_start, function_request_id), the call's extra keys, xray_trace_id; metric blobs with the namespace
  from POWERTOOLS_METRICS_NAMESPACE (default Kefu) and the dimension ``service``.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from functools import cache
from typing import Any

from kefu import tenancy

NAMESPACE = "Kefu"


# Lambda context keys left out of every line: the log group already names the function, and its
# size and ARN repeat on every line (about 150 bytes) without telling an operator anything. The
# request id and cold_start stay.
CONTEXT_LEFT_OUT = ("function_name", "function_memory_size", "function_arn")


@cache
def logger(service: str) -> Any:
    from aws_lambda_powertools import Logger
    from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

    class Formatter(LambdaPowertoolsFormatter):
        def serialize(self, log: Any) -> str:
            for key in CONTEXT_LEFT_OUT:
                log.pop(key, None)
            corp = tenancy.current()  # provider mode: every line of a corp's work names it
            if corp is not None:
                log.setdefault("corp", corp)
            return super().serialize(log)

    return Logger(service=service, log_uncaught_exceptions=True, logger_formatter=Formatter())


@cache
def metrics(service: str) -> Any:
    from aws_lambda_powertools import Metrics

    return Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", NAMESPACE), service=service)


# Counts with dimensions of the invocation running on this thread, summed per name and
# dimensions and written when it ends (``log_metrics``): one EMF blob per outcome and invocation
# instead of one per count (a route batch of ten decisions wrote ten).
_invocation = threading.local()


def count(service: str, name: str, value: float = 1, **dimensions: str) -> None:
    """Count ``value``: with the service's other metrics when no dimensions are given; else in a
    blob of its own, written when the invocation ends (at once outside ``log_metrics``)."""
    if not dimensions:
        from aws_lambda_powertools.metrics import MetricUnit

        metrics(service).add_metric(name=name, unit=MetricUnit.Count, value=value)
        return
    pending = getattr(_invocation, "pending", None)
    corp = tenancy.current()  # provider mode: counted per corp, the corp a property (not a dimension)
    if pending is None:
        _write_dimensioned(service, name, dimensions, value, corp)
        return
    key = (service, name, tuple(sorted(dimensions.items())), corp)
    pending[key] = pending.get(key, 0) + value


def _write_dimensioned(service: str, name: str, dimensions: dict[str, str], value: float,
                       corp: str | None = None) -> None:
    from aws_lambda_powertools.metrics import MetricUnit, single_metric

    with single_metric(name=name, unit=MetricUnit.Count, value=value, namespace=metrics(service).namespace,
                       default_dimensions={"service": service}) as single:
        for key, dim in dimensions.items():
            single.add_dimension(name=key, value=dim)
        if corp is not None:
            single.add_metadata(key="corp", value=corp)


def log_metrics(service: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Powertools' ``log_metrics`` for the service's handler, plus the invocation's counts with
    dimensions (see ``count``), written however the handler ends."""

    def decorate(handler: Callable[..., Any]) -> Callable[..., Any]:
        inner = metrics(service).log_metrics(handler)

        @functools.wraps(handler)
        def run(*args: Any, **kwargs: Any) -> Any:
            _invocation.pending = {}
            try:
                return inner(*args, **kwargs)
            finally:
                pending, _invocation.pending = _invocation.pending, None
                for (svc, name, dims, corp), value in pending.items():
                    _write_dimensioned(svc, name, dict(dims), value, corp)

        return run

    return decorate


def wecom_error_counter(service: str) -> Any:
    """The on_error hook for a WeComClient: errors by errcode, plus a total the alarm watches."""

    def record(exc: Any) -> None:
        from aws_lambda_powertools.metrics import MetricUnit, single_metric

        count(service, "WeComErrors", errcode=exc.metric_code)
        # No dimension: one metric across functions, so one plain alarm can watch it.
        with single_metric(name="WeComErrorsTotal", unit=MetricUnit.Count, value=1, namespace=metrics(service).namespace):
            pass

    return record


# --------------------------------------------------------------------------- without Powertools

_LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "WARN": 30, "ERROR": 40, "CRITICAL": 50, "FATAL": 50}
# AWS_LAMBDA_LOG_LEVEL (the function's ApplicationLogLevel) as Powertools reads it.
_LAMBDA_LEVELS = {"TRACE": 0, "DEBUG": 10, "INFO": 20, "WARN": 30, "ERROR": 40, "FATAL": 50}


def _threshold() -> int:
    """The lowest level logged, decided as Powertools does: the Lambda log level when set, then
    POWERTOOLS_LOG_LEVEL (or the older LOG_LEVEL), else INFO."""
    lambda_level = os.environ.get("AWS_LAMBDA_LOG_LEVEL")
    if lambda_level in _LAMBDA_LEVELS:
        return _LAMBDA_LEVELS[lambda_level]
    wanted = (os.environ.get("POWERTOOLS_LOG_LEVEL") or os.environ.get("LOG_LEVEL") or "INFO").upper()
    return _LEVELS.get(wanted, 20)


class JsonLogger:
    """One JSON object per line on stdout, shaped as Powertools Logger writes it with
    ``inject_lambda_context``. ``start(context)`` at the top of each invocation sets the Lambda
    keys (and ``cold_start``, true for the first invocation of this logger)."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.level = _threshold()
        self._context: dict[str, Any] = {}
        self._cold = os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") != "provisioned-concurrency"

    def start(self, context: Any) -> None:
        self._context = {"cold_start": self._cold, "function_request_id": context.aws_request_id}  # see CONTEXT_LEFT_OUT
        self._cold = False

    def debug(self, message: str, extra: dict[str, Any] | None = None) -> None:
        if self.level <= 10:
            self._write("DEBUG", message, extra)

    def info(self, message: str, extra: dict[str, Any] | None = None) -> None:
        if self.level <= 20:
            self._write("INFO", message, extra)

    def warning(self, message: str, extra: dict[str, Any] | None = None) -> None:
        if self.level <= 30:
            self._write("WARNING", message, extra)

    def error(self, message: str, extra: dict[str, Any] | None = None) -> None:
        if self.level <= 40:
            self._write("ERROR", message, extra)

    def _write(self, level: str, message: str, extra: dict[str, Any] | None) -> None:
        caller = sys._getframe(2)  # noqa: SLF001 - the caller of info(), warning(), ... (as logging finds it)
        now = time.time()
        local = time.localtime(now)
        stamp = f"{time.strftime('%Y-%m-%d %H:%M:%S', local)},{int(now * 1000) % 1000:03d}{time.strftime('%z', local)}"
        record: dict[str, Any] = {"level": level, "location": f"{caller.f_code.co_name}:{caller.f_lineno}",
                                  "message": message, "timestamp": stamp, "service": self.service, **self._context}
        if extra:
            record.update(extra)
        corp = tenancy.current()  # provider mode: every line of a corp's work names it
        if corp is not None:
            record.setdefault("corp", corp)
        trace = os.environ.get("_X_AMZN_TRACE_ID")
        if trace:
            record["xray_trace_id"] = trace.split(";")[0].replace("Root=", "")
        line = json.dumps({k: v for k, v in record.items() if v is not None}, default=str, separators=(",", ":"),
                          ensure_ascii=False)
        sys.stdout.write(line + "\n")


def _flag(name: str) -> bool:
    return os.environ.get(name, "false").strip().lower() in ("1", "y", "yes", "t", "true", "on")


class EmfCounter:
    """Counts for one invocation, written by ``flush()`` as one CloudWatch EMF blob on stdout,
    as Powertools Metrics' ``log_metrics`` does: unit Count, the dimension ``service``. Nothing is
    written when nothing was counted, or when POWERTOOLS_METRICS_DISABLED (or POWERTOOLS_DEV
    without it) says metrics are off."""

    MAX_METRICS = 100  # EMF's limit per blob

    def __init__(self, service: str, namespace: str | None = None) -> None:
        self.service = service
        self.namespace = namespace or os.environ.get("POWERTOOLS_METRICS_NAMESPACE", NAMESPACE)
        self._values: dict[str, list[float]] = {}

    def add(self, name: str, value: float = 1) -> None:
        if name not in self._values and len(self._values) >= self.MAX_METRICS:
            self.flush()
        self._values.setdefault(name, []).append(float(value))

    def flush(self) -> None:
        values, self._values = self._values, {}
        if not values or _disabled():
            return
        blob: dict[str, Any] = {
            "_aws": {"Timestamp": int(time.time() * 1000), "CloudWatchMetrics": [{
                "Namespace": self.namespace, "Dimensions": [["service"]],
                "Metrics": [{"Name": name, "Unit": "Count"} for name in values]}]},
            "service": self.service,
        }
        blob.update(values)
        sys.stdout.write(json.dumps(blob, separators=(",", ":")) + "\n")


def _disabled() -> bool:
    if "POWERTOOLS_METRICS_DISABLED" in os.environ:
        return _flag("POWERTOOLS_METRICS_DISABLED")
    return _flag("POWERTOOLS_DEV")
