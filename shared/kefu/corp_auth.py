"""Provider mode: which corp a caller of the enterprise-facing APIs (the conversation API, /stats)
speaks for. Each corp is given its own API keys (``kefu corps key``); a request carries one in
the ``X-Kefu-Corp-Key`` header, besides the route's IAM signature, and everything it reads or
does is that corp's (kefu.tenancy) - there is no parameter that names another corp. A missing
key is 401, a key that is unknown, revoked or of a cancelled corp 403; either way nothing runs."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from kefu import tenancy
from kefu.errors import HttpError, error_body

HEADER = "x-kefu-corp-key"
KEY_MAX = 128


def not_served() -> HttpError:
    """The refusal for a corp cancelled after its key was checked (the same as for a bad key)."""
    return HttpError(403, "invalid_corp_key", "X-Kefu-Corp-Key is not a key of any enterprise served here")


def caller_corp(headers: Mapping[str, str] | None, state_table: str) -> str:
    from kefu.store.tenants import TenantStore

    api_key = {str(k).lower(): v for k, v in (headers or {}).items()}.get(HEADER) or ""
    if not api_key:
        raise HttpError(401, "missing_corp_key", "provider mode: send the enterprise's API key in X-Kefu-Corp-Key")
    if len(api_key) > KEY_MAX or not api_key.isascii() or not api_key.isprintable():
        raise not_served()
    tenants = TenantStore(state_table)
    corp = tenants.corp_of_key(api_key)
    tenant = tenants.get(corp) if corp else None
    if tenant is None or not tenant.active:
        raise not_served()
    return tenant.corp_id


def resolve_as_caller(event: dict[str, Any], state_table: str, resolve: Callable[[], Any]) -> Any:
    """Run ``resolve`` (the route's resolver) as the corp the caller's key names, or answer the
    refusal as an HTTP API (payload 2.0) response."""
    try:
        corp = caller_corp(event.get("headers"), state_table)
    except HttpError as exc:
        return {"statusCode": exc.status, "headers": {"Content-Type": "application/json", "Cache-Control": "no-store"},
                "body": error_body(exc.error, exc.message), "isBase64Encoded": False}
    with tenancy.serving(corp):
        return resolve()
