"""HTTP transport for the WeCom API: JSON in UTF-8, one error type, retries, token refresh.

Reads (calls that change nothing at WeCom) are retried with backoff on busy/rate-limit codes,
HTTP 5xx and timeouts. Writes (sends, transfers) are never repeated blindly: an answer that
leaves open whether WeCom acted (HTTP 5xx, a timeout) surfaces to the caller, which decides with
its own idempotency key. A write may ask to be repeated when WeCom answered that it did not run
the call (-1 busy, 45009 and 45033 rate limits): nothing happened, so the same call is retried
with backoff; sends carry their own msgid, so even then WeCom would refuse a double. A rejected
access_token is refreshed and the call retried once, for reads and writes alike, since WeCom
did not execute a call it refused for its token.

The HTTP client is urllib3, which botocore has already imported in every function: a cold start
pays nothing more for it. urllib3 itself never retries nor follows a redirect here; these
decisions are the client's alone.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode

import urllib3
from urllib3.exceptions import HTTPError, NewConnectionError
from urllib3.exceptions import TimeoutError as HTTPTimeoutError

from kefu.wecom.errors import WeComError

MAX_ATTEMPTS = 4
BACKOFF_SECONDS = 0.2
CONNECT_TIMEOUT = 2.0  # seconds to open a connection
READ_TIMEOUT = 5.0  # seconds without a byte of the answer
TIMEOUT = urllib3.Timeout(connect=CONNECT_TIMEOUT, read=READ_TIMEOUT)
POOL_SIZE = 10  # connections kept alive per host (a function may call from several threads)
# Sent with every call (a request's own headers replace the pool's, so they are merged here).
HEADERS = {"Accept-Encoding": "gzip, deflate"}
JSON_HEADERS = {**HEADERS, "Content-Type": "application/json; charset=utf-8"}


def encode_json(body: dict[str, Any]) -> bytes:
    """WeCom rejects \\uXXXX escapes (40033): send raw UTF-8."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def new_pool() -> urllib3.PoolManager:
    """A pool of kept-alive connections, for one client or shared by several."""
    return urllib3.PoolManager(maxsize=POOL_SIZE, timeout=TIMEOUT, retries=False)


class WeComClient:
    def __init__(
        self,
        base_url: str,
        *,
        token_source: Callable[[], str] | None = None,
        on_token_rejected: Callable[[str], None] | None = None,
        http: urllib3.PoolManager | None = None,
        timeout: float | None = None,
        max_attempts: int = MAX_ATTEMPTS,
        backoff: float = BACKOFF_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
        on_error: Callable[[WeComError], None] | None = None,
    ) -> None:
        self._base = base_url.rstrip("/") + "/cgi-bin/"
        self._token_source = token_source
        self._on_token_rejected = on_token_rejected
        # ``http``: a pool to share with other clients (connect() shares one between the token
        # fetches and the calls). ``timeout``: seconds for each of connecting and reading, in
        # place of CONNECT_TIMEOUT and READ_TIMEOUT.
        self._http = http if http is not None else new_pool()
        self._timeout = TIMEOUT if timeout is None else urllib3.Timeout(connect=timeout, read=timeout)
        self._max_attempts = max_attempts
        self._backoff = backoff
        self._sleep = sleep
        self._on_error = on_error

    def close(self) -> None:
        """Close the pool's kept-alive connections (a later call opens new ones)."""
        self._http.clear()

    # -- public calls -------------------------------------------------------------------------

    def read(self, path: str, body: dict[str, Any] | None = None, *, params: dict[str, str] | None = None) -> dict[str, Any]:
        """A call that changes nothing at WeCom (GET, or POST of a query): retried when transient."""
        return self._call(path, body, params, retry_transient=True)

    def write(self, path: str, body: dict[str, Any], *, retry_not_executed: bool = False) -> dict[str, Any]:
        """A call that changes state at WeCom: never repeated after an unclear failure; with
        ``retry_not_executed``, repeated when WeCom answered that it did not run it."""
        return self._call(path, body, None, retry_transient=False, retry_not_executed=retry_not_executed)

    def download(self, path: str, params: dict[str, str]) -> tuple[bytes, str]:
        """A GET returning binary (media/get); WeCom answers JSON with an errcode on failure."""
        return self._with_token(path, lambda token: self._retrying(path, lambda: self._fetch_binary(path, params, token)))

    def upload(self, path: str, params: dict[str, str], filename: str, data: bytes, content_type: str) -> dict[str, Any]:
        """A multipart POST of one file under the field ``media`` (media/upload). Repeated when
        transient: a repeat only makes a second copy of the same file at WeCom, never a second
        message, and the caller keeps one media_id."""
        def once(token: str) -> dict[str, Any]:
            return self._retrying(path, lambda: self._post_file(path, {**params, "access_token": token},
                                                                filename, data, content_type))

        return self._with_token(path, once)

    def call_with(self, path: str, body: dict[str, Any] | None, params: dict[str, str], *,
                  retry_transient: bool) -> dict[str, Any]:
        """A call that carries its own credential in ``params`` (a provider's ``service/...``
        calls take ``suite_access_token``); retried when transient only if ``retry_transient``."""
        once = lambda: self._send(path, body, params)  # noqa: E731
        return self._retrying(path, once) if retry_transient else self._reporting(once)

    def gettoken(self, corp_id: str, corp_secret: str) -> tuple[str, int]:
        data = self._retrying(
            "gettoken", lambda: self._send("gettoken", None, {"corpid": corp_id, "corpsecret": corp_secret})
        )
        return str(data["access_token"]), int(data.get("expires_in", 7200))

    # -- mechanics ----------------------------------------------------------------------------

    def _call(self, path: str, body: dict[str, Any] | None, params: dict[str, str] | None, *, retry_transient: bool,
              retry_not_executed: bool = False) -> dict[str, Any]:
        def attempt(token: str) -> dict[str, Any]:
            query = {**(params or {}), "access_token": token}
            once = lambda: self._send(path, body, query)  # noqa: E731
            if retry_transient:
                return self._retrying(path, once)
            if retry_not_executed:
                return self._retrying(path, once, when=lambda exc: exc.not_executed)
            return self._reporting(once)

        return self._with_token(path, attempt)

    def _with_token(self, path: str, attempt: Callable[[str], Any]) -> Any:
        if self._token_source is None:
            raise WeComError(path, None, "no access_token source configured")
        token = self._token_source()
        try:
            return attempt(token)
        except WeComError as exc:
            if not exc.token_rejected:
                raise
            if self._on_token_rejected is not None:
                self._on_token_rejected(token)
            return attempt(self._token_source())

    def _reporting(self, once: Callable[[], Any]) -> Any:
        try:
            return once()
        except WeComError as exc:
            if self._on_error is not None:
                self._on_error(exc)
            raise

    def _retrying(self, path: str, once: Callable[[], Any],
                  when: Callable[[WeComError], bool] = lambda exc: exc.transient) -> Any:
        for attempt in range(1, self._max_attempts + 1):
            try:
                return self._reporting(once)
            except WeComError as exc:
                if not when(exc) or attempt == self._max_attempts:
                    raise
                self._sleep(self._backoff * 2 ** (attempt - 1) * (0.5 + random.random()))  # nosec B311 - jitter
        raise AssertionError("unreachable")  # pragma: no cover

    def _send(self, path: str, body: dict[str, Any] | None, params: dict[str, str] | None) -> dict[str, Any]:
        if body is None:
            return decode(path, self._request(path, "GET", params))
        return decode(path, self._request(path, "POST", params, body=encode_json(body), headers=JSON_HEADERS))

    def _post_file(self, path: str, params: dict[str, str], filename: str, data: bytes,
                   content_type: str) -> dict[str, Any]:
        return decode(path, self._request(path, "POST", params, fields={"media": (filename, data, content_type)}))

    def _fetch_binary(self, path: str, params: dict[str, str], token: str) -> tuple[bytes, str]:
        response = self._request(path, "GET", {**params, "access_token": token})
        content_type = response.headers.get("content-type", "application/octet-stream")
        if response.status != 200 or content_type.startswith(("application/json", "text/plain")):
            decode(path, response)  # raises with WeCom's errcode
            raise WeComError(path, None, "expected binary content", response.status)
        return response.data, content_type

    def _request(self, path: str, method: str, params: dict[str, str] | None, *, body: bytes | None = None,
                 headers: Mapping[str, str] = HEADERS,
                 fields: dict[str, tuple[str, bytes, str]] | None = None) -> urllib3.BaseHTTPResponse:
        """One HTTP exchange, its answer read whole; no answer at all is a WeComError without
        errcode or status (a timeout, a refused or broken connection)."""
        url = self._base + path + ("?" + urlencode(params) if params else "")
        try:
            if fields is not None:  # multipart/form-data, encoded by urllib3
                return self._http.request(method, url, fields=fields, encode_multipart=True, headers=headers,
                                          timeout=self._timeout, retries=False, redirect=False)
            return self._http.request(method, url, body=body, headers=headers, timeout=self._timeout,
                                      retries=False, redirect=False)
        except HTTPError as exc:
            if _timed_out(exc):
                raise WeComError(path, None, "timed out") from None
            raise WeComError(path, None, f"transport error: {type(exc).__name__}") from None


def _timed_out(exc: HTTPError) -> bool:
    """A connect or read timeout; or a send that stalled, which urllib3 reports as a broken
    connection around the socket's timeout. A refused connection is no timeout, though urllib3
    derives its error from the connect timeout's."""
    if isinstance(exc, NewConnectionError):
        return False
    return isinstance(exc, HTTPTimeoutError) or any(isinstance(arg, TimeoutError) for arg in exc.args)


def decode(path: str, response: urllib3.BaseHTTPResponse) -> dict[str, Any]:
    """A WeCom JSON answer, or the WeComError it carries (errcode, or the HTTP status)."""
    if response.status != 200:
        raise WeComError(path, None, f"HTTP {response.status}", response.status)
    try:
        data = json.loads(response.data)
    except ValueError:
        raise WeComError(path, None, "response is not JSON", response.status) from None
    if not isinstance(data, dict):
        raise WeComError(path, None, "response is not a JSON object", response.status)
    errcode = data.get("errcode", 0)
    if errcode not in (0, "0"):
        try:
            code = int(errcode)
        except (TypeError, ValueError):
            code = -1
        raise WeComError(path, code, str(data.get("errmsg", "")))
    return data
