"""Logger and Metrics set-up shared by the functions (Powertools; no Tracer: it costs ~0.3 s of import)."""

from __future__ import annotations

import os
from functools import cache
from typing import Any

NAMESPACE = "Kefu"


@cache
def logger(service: str) -> Any:
    from aws_lambda_powertools import Logger

    return Logger(service=service, log_uncaught_exceptions=True)


@cache
def metrics(service: str) -> Any:
    from aws_lambda_powertools import Metrics

    return Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", NAMESPACE), service=service)


def count(service: str, name: str, value: float = 1, **dimensions: str) -> None:
    """Emit one count right away (a separate EMF blob when dimensions are given)."""
    from aws_lambda_powertools.metrics import MetricUnit, single_metric

    m = metrics(service)
    if dimensions:
        with single_metric(name=name, unit=MetricUnit.Count, value=value, namespace=m.namespace,
                           default_dimensions={"service": service}) as single:
            for key, dim in dimensions.items():
                single.add_dimension(name=key, value=dim)
    else:
        m.add_metric(name=name, unit=MetricUnit.Count, value=value)


def wecom_error_counter(service: str) -> Any:
    """The on_error hook for a WeComClient: errors by errcode, plus a total the alarm watches."""

    def record(exc: Any) -> None:
        from aws_lambda_powertools.metrics import MetricUnit, single_metric

        count(service, "WeComErrors", errcode=exc.metric_code)
        # No dimension: one metric across functions, so one plain alarm can watch it.
        with single_metric(name="WeComErrorsTotal", unit=MetricUnit.Count, value=1, namespace=metrics(service).namespace):
            pass

    return record
