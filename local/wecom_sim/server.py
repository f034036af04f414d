"""The HTTP server: request plumbing, the request handler, and the ``/sim/...`` admin operations."""

from __future__ import annotations

import email.policy
import inspect
import json
import secrets
import time
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qs, quote, urlsplit

from local.wecom_sim.api import ROUTES
from local.wecom_sim.core import SimulatorCore
from local.wecom_sim.state import (
    ADMIN_ACTIONS,
    ERRMSG,
    MAX_BODY,
    MAX_UPLOAD_BODY,
    UNICODE_ESCAPE_RE,
    ApiError,
    _Binary,
    _Fault,
)

Response = tuple[int, list[tuple[str, str]], bytes]


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


def _disposition(filename: str) -> str:
    """An attachment header for any file name: headers are Latin-1, so a name beyond plain ASCII
    (an uploaded 报告.pdf) goes percent-encoded in filename* (RFC 6266), with an ASCII stand-in."""
    if filename.isascii() and filename.isprintable() and '"' not in filename and "\\" not in filename:
        return f'attachment; filename="{filename}"'
    fallback = "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def _json_response(obj: Any, status: int = 200) -> Response:
    return status, [("Content-Type", "application/json; charset=UTF-8")], _json_bytes(obj)


class _RequestBody(bytes):
    """A request's raw body, carrying its Content-Type (a multipart body needs its boundary)."""

    content_type = ""


class _Serves(Protocol):
    """What the server hands each request to: a corp's simulator, or the provider's (provider.py)."""

    def _handle_http(self, method: str, raw_path: str, body: bytes) -> Response: ...


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    simulator: _Serves


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self._serve("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._serve("POST")

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        upload = urlsplit(self.path).path.rstrip("/") == "/cgi-bin/media/upload"
        if length > (MAX_UPLOAD_BODY if upload else MAX_BODY):
            # Not read: an upload this large is over every type's limit (45001).
            errcode = 45001 if upload else 40058
            status, headers, payload = _json_response({"errcode": errcode, "errmsg": "body too large"}, 413)
            self.close_connection = True
        else:
            body = _RequestBody(self.rfile.read(length) if length > 0 else b"")
            body.content_type = self.headers.get("Content-Type") or ""
            status, headers, payload = self.server.simulator._handle_http(method, self.path, body)  # noqa: SLF001 - its own server
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet server
        pass


class HttpFrontEnd(SimulatorCore):
    """Answers the HTTP requests the server hands over: the kf API and the admin actions."""

    # ------------------------------------------------------------------ HTTP entry

    def _handle_http(self, method: str, raw_path: str, body: bytes) -> Response:
        parts = urlsplit(raw_path)
        query = {key: values[0] for key, values in parse_qs(parts.query, keep_blank_values=True).items()}
        path = parts.path
        if path == "/sim" or path.startswith("/sim/"):
            return self._handle_admin(method, path[len("/sim/") :].strip("/"), body)
        if path.startswith("/cgi-bin/"):
            return self._handle_api(method, path[len("/cgi-bin/") :].strip("/"), query, body)
        return _json_response({"errcode": 40058, "errmsg": f"unknown path {path}"}, 404)

    def _handle_api(self, method: str, api: str, query: dict[str, str], raw: bytes) -> Response:
        with self._lock:
            if api == "gettoken":
                self.gettoken_count += 1
            fault = self._take_fault(api)
            blocked = self.ip_blocked
        if fault is not None and fault.delay:
            time.sleep(fault.delay)
        parsed: dict[str, Any] | None = None
        errcode: int | None = None
        if blocked:
            errcode = 60020
            response = self._error_response(60020)
        elif fault is not None and fault.http_status is not None:
            text = f"<html><body><h1>{fault.http_status} simulated upstream error</h1></body></html>"
            response = (fault.http_status, [("Content-Type", "text/html")], text.encode())
        elif fault is not None and fault.errcode is not None:
            errcode = fault.errcode
            response = self._error_response(fault.errcode)
        else:
            errcode, parsed, response = self._route(method, api, query, raw)
        if parsed is None and raw:
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = None
        with self._lock:
            self.calls.append(
                {
                    "path": api,
                    "method": method,
                    "query": {k: v for k, v in query.items() if k not in ("access_token", "corpsecret")},
                    "body": parsed,
                    "errcode": errcode,
                    "http_status": response[0],
                    "time": self.now(),
                }
            )
        return response

    def _route(
        self, method: str, api: str, query: dict[str, str], raw: bytes
    ) -> tuple[int | None, dict[str, Any] | None, Response]:
        route = ROUTES.get(api)
        if route is None:
            body = self._error_body(40058, f"api {api} not found")
            return 40058, None, _json_response(body, 404)
        data: dict[str, Any] = {}
        recorded: dict[str, Any] = {}  # what calls keeps of the body (an upload's file without its bytes)
        try:
            if method != route.method:
                raise ApiError(43001 if route.method == "GET" else 43002)
            with self._lock:
                if route.needs_token:
                    self._check_access_token(query.get("access_token", ""))
            if method == "POST" and route.multipart:
                data = self._parse_multipart(raw)
                recorded = {
                    name: {"filename": part["filename"], "content_type": part["content_type"], "size": len(part["data"])}
                    for name, part in data.items()
                }
            elif method == "POST":
                data = recorded = self._parse_body(raw)
            with self._lock:
                result = getattr(self, route.handler)(query, data)
        except ApiError as exc:
            return exc.errcode, recorded or None, self._error_response(exc.errcode, exc.detail)
        if isinstance(result, _Binary):
            headers = [
                ("Content-Type", result.content_type),
                ("Content-Disposition", _disposition(result.filename)),
            ]
            return 0, recorded or None, (200, headers, result.data)
        return 0, recorded or None, _json_response({"errcode": 0, "errmsg": "ok", **result})

    def _handle_admin(self, method: str, action: str, raw: bytes) -> Response:
        if action == "state":
            if method != "GET":
                return _json_response({"ok": False, "error": "use GET /sim/state"}, 405)
            return _json_response(self.state())
        if action not in ADMIN_ACTIONS:
            return _json_response({"ok": False, "error": f"unknown action {action!r}"}, 404)
        if method != "POST":
            return _json_response({"ok": False, "error": f"use POST /sim/{action}"}, 405)
        try:
            args = json.loads(raw or b"{}")
        except ValueError:
            return _json_response({"ok": False, "error": "body is not JSON"}, 400)
        if not isinstance(args, dict):
            return _json_response({"ok": False, "error": "body must be a JSON object of arguments"}, 400)
        method_fn = getattr(self, action)
        try:
            inspect.signature(method_fn).bind(**args)
        except TypeError as exc:
            return _json_response({"ok": False, "error": f"bad arguments: {exc}"}, 400)
        try:
            result = method_fn(**args)
        except (ValueError, KeyError, TypeError) as exc:
            return _json_response({"ok": False, "error": str(exc)}, 400)
        if isinstance(result, tuple):
            result = list(result)
        return _json_response({"ok": True, "result": result})

    # ------------------------------------------------------------------ request plumbing

    def _take_fault(self, api: str) -> _Fault | None:
        queue = self._faults.get(api)
        if not queue:
            return None
        fault = queue[0]
        if fault.passes > 0:
            fault.passes -= 1
            return None
        fault.remaining -= 1
        if fault.remaining <= 0:
            queue.popleft()
        return fault

    def _error_body(self, errcode: int, detail: str | None = None) -> dict[str, Any]:
        text = detail or ERRMSG.get(errcode, "error")
        hint = f"{int(self.now())}_{secrets.token_hex(8)}"
        errmsg = (
            f"{text}, hint: [{hint}], from ip: {self.egress_ip}, "
            f"more info at https://open.work.weixin.qq.com/devtool/query?e={errcode}"
        )
        return {"errcode": errcode, "errmsg": errmsg}

    def _error_response(self, errcode: int, detail: str | None = None) -> Response:
        return _json_response(self._error_body(errcode, detail))

    def _check_access_token(self, token: str) -> None:
        if not token:
            raise ApiError(41001)
        expires_at = self._tokens.get(token)
        if expires_at is None:
            raise ApiError(40014)
        if self.now() >= expires_at:
            raise ApiError(42001)

    @staticmethod
    def _parse_multipart(raw: bytes) -> dict[str, dict[str, Any]]:
        """The parts of a multipart/form-data body by field name (the first of each name):
        {"filename", "content_type", "data"}; a body that is not well-formed multipart -> 47001."""
        content_type = getattr(raw, "content_type", "")
        if not content_type.lower().startswith("multipart/form-data"):
            raise ApiError(47001, "data format error: the body must be multipart/form-data")
        try:
            head = f"Content-Type: {content_type}\r\n\r\n".encode("latin-1")
        except UnicodeEncodeError as exc:
            raise ApiError(47001, "data format error: bad Content-Type") from exc
        message = BytesParser(policy=email.policy.HTTP).parsebytes(head + bytes(raw))
        if not message.is_multipart() or message.defects:
            raise ApiError(47001, "data format error: the body is not well-formed multipart/form-data")
        parts: dict[str, dict[str, Any]] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if not isinstance(name, str) or name in parts:
                continue
            payload = part.get_payload(decode=True)
            parts[name] = {
                "filename": part.get_filename() or "",
                "content_type": part.get_content_type(),
                "data": payload if isinstance(payload, bytes) else b"",
            }
        return parts

    @staticmethod
    def _parse_body(raw: bytes) -> dict[str, Any]:
        if UNICODE_ESCAPE_RE.search(raw):
            raise ApiError(40033)
        try:
            data = json.loads(raw.decode("utf-8")) if raw.strip() else {}
        except (UnicodeDecodeError, ValueError) as exc:
            raise ApiError(47001, "data format error: body is not UTF-8 JSON") from exc
        if not isinstance(data, dict):
            raise ApiError(47001, "data format error: body must be a JSON object")
        return data
