"""The template's HttpApi routes on a local port, as API Gateway HTTP API payload v2.0 events."""

from __future__ import annotations

import base64
import json
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from local.functions import HttpRoute, LocalFunction

MAX_BODY = 10 * 1024 * 1024  # API Gateway's payload limit
TEXT_TYPES = ("text/", "application/json", "application/xml", "application/x-www-form-urlencoded",
              "application/javascript", "image/svg+xml")


def _route_regex(path: str) -> re.Pattern[str]:
    pattern = re.sub(r"\{(\w+)\+\}", r"(?P<\1>.+)", path)
    pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern)
    return re.compile(f"^{pattern}$")


class Router:
    def __init__(self, routes: list[HttpRoute]) -> None:
        self._routes = [(r, _route_regex(r.path)) for r in routes if r.path != "$default"]
        self._default = next((r for r in routes if r.path == "$default"), None)

    def match(self, method: str, path: str) -> tuple[HttpRoute, dict[str, str]] | None:
        for route, regex in self._routes:
            found = regex.match(path)
            if found and route.method in (method, "ANY"):
                return route, found.groupdict()
        return (self._default, {}) if self._default else None

    def allows_path(self, path: str) -> bool:
        return any(regex.match(path) for _, regex in self._routes)


def build_event(method: str, target: str, headers: dict[str, str], body: bytes, route: HttpRoute,
                path_params: dict[str, str], source_ip: str, api_id: str = "local") -> dict[str, Any]:
    parts = urlsplit(target)
    query: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        query[key] = f"{query[key]},{value}" if key in query else value
    lowered = {k.lower(): v for k, v in headers.items()}
    content_type = lowered.get("content-type", "")
    is_text = not body or content_type.startswith(TEXT_TYPES)
    if is_text:
        try:
            body_text = body.decode("utf-8")
        except UnicodeDecodeError:
            is_text = False
    route_key = "$default" if route.path == "$default" else f"{route.method} {route.path}"
    now = time.time()
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": parts.path,
        "rawQueryString": parts.query,
        "headers": lowered,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": api_id,
            "domainName": lowered.get("host", "127.0.0.1"),
            "domainPrefix": "127",
            "http": {"method": method, "path": parts.path, "protocol": "HTTP/1.1", "sourceIp": source_ip,
                     "userAgent": lowered.get("user-agent", "")},
            "requestId": str(uuid.uuid4()),
            "routeKey": route_key,
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": not is_text,
    }
    if "cookie" in lowered:
        event["cookies"] = [c.strip() for c in lowered["cookie"].split(";")]
    if query:
        event["queryStringParameters"] = query
    if path_params:
        event["pathParameters"] = path_params
    if body:
        event["body"] = body_text if is_text else base64.b64encode(body).decode("ascii")
    return event


def shape_response(result: Any) -> tuple[int, dict[str, str], bytes]:
    """Turn a handler's return value into status, headers, body the way HTTP API v2 does."""
    if not isinstance(result, dict) or "statusCode" not in result:
        return 200, {"content-type": "application/json"}, json.dumps(result).encode()
    headers = {k.lower(): str(v) for k, v in (result.get("headers") or {}).items()}
    for key, values in (result.get("multiValueHeaders") or {}).items():
        headers[key.lower()] = ", ".join(str(v) for v in values)
    body = result.get("body") or ""
    raw = base64.b64decode(body) if result.get("isBase64Encoded") else str(body).encode("utf-8")
    return int(result["statusCode"]), headers, raw


class HttpApiServer:
    def __init__(self, host: str, port: int, routes: list[HttpRoute], functions: dict[str, LocalFunction],
                 log: Callable[[str], None]) -> None:
        router = Router(routes)
        stack_log = log

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in separate writes: no 40 ms stall

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
                pass

            def _serve(self) -> None:
                started = time.perf_counter()
                path = urlsplit(self.path).path
                length = int(self.headers.get("content-length") or 0)
                if length > MAX_BODY:
                    self._reply(413, {"content-type": "application/json"}, b'{"message":"Request Entity Too Large"}')
                    return
                body = self.rfile.read(length) if length else b""
                found = router.match(self.command, path)
                if found is None:
                    status = 405 if router.allows_path(path) else 404
                    self._reply(status, {"content-type": "application/json"}, b'{"message":"Not Found"}')
                    return
                route, params = found
                event = build_event(self.command, self.path, dict(self.headers.items()), body, route, params,
                                    self.client_address[0])
                try:
                    status, headers, raw = shape_response(functions[route.function].invoke(event))
                except Exception as exc:  # a crashed handler is API Gateway's 500
                    print(f"[api] {route.function} raised {type(exc).__name__}: {exc}", file=sys.stderr)
                    status, headers, raw = 500, {"content-type": "application/json"}, b'{"message":"Internal Server Error"}'
                self._reply(status, headers, raw)
                ms = (time.perf_counter() - started) * 1000
                stack_log(f"[api] {self.command} {path} -> {route.function} {status} ({ms:.0f} ms)")

            def _reply(self, status: int, headers: dict[str, str], raw: bytes) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    if key not in ("content-length", "connection"):
                        self.send_header(key, value)
                self.send_header("content-length", str(len(raw)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(raw)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _serve

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="http-api", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
