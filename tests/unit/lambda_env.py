"""Loading a function's handler module in process, as Lambda would, with a fake context: the
handler tests swap the module's adapters (its engine, store, queue call) for in-memory ones."""

from __future__ import annotations

import importlib.util
import itertools
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
_loads = itertools.count()
BASE_ENV = {"WECOM_CORP_ID": "wwcorp", "KEFU_STATE_TABLE": "kefu-state", "POWERTOOLS_METRICS_NAMESPACE": "Kefu"}


@dataclass
class LambdaContext:
    function_name: str = "Function"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:Function"
    aws_request_id: str = "req-1"

    def get_remaining_time_in_millis(self) -> int:
        return 15000


def load_function(name: str, monkeypatch: Any, **env: str) -> ModuleType:
    """functions/<name>/app.py as a fresh module (a cold start), with its settings in the environment."""
    for key, value in {**BASE_ENV, **env}.items():
        monkeypatch.setenv(key, value)
    spec = importlib.util.spec_from_file_location(f"{name}_app_{next(_loads)}", ROOT / "functions" / name / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def http_event(method: str, path: str, query: dict[str, str] | None = None, body: str | None = None,
               headers: dict[str, str] | None = None) -> dict[str, Any]:
    """An API Gateway HTTP API (payload 2.0) event."""
    return {
        "version": "2.0", "routeKey": f"{method} {path}", "rawPath": path,
        "rawQueryString": "&".join(f"{k}={v}" for k, v in (query or {}).items()),
        "queryStringParameters": query or None, "headers": {"host": "kefu.example", **(headers or {})},
        "requestContext": {"http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "198.51.100.7",
                                    "userAgent": "test"}, "requestId": "r1", "routeKey": f"{method} {path}",
                           "stage": "$default", "accountId": "123456789012", "apiId": "api", "domainName": "kefu.example",
                           "timeEpoch": 0},
        "body": body, "isBase64Encoded": False,
    }
