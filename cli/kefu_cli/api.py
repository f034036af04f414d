"""Requests to the stack's IAM-protected HTTP API routes (/stats, /conversations...): deployed, they
are signed with SigV4 (service execute-api) using the caller's AWS credentials; the local stack
serves them without auth, so there the request goes plain."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from kefu_cli.target import CliError, Target


def sigv4_headers(credentials: Any, region: str, method: str, url: str, body: bytes = b"",
                  headers: Mapping[str, str] | None = None) -> dict[str, str]:
    """``headers`` plus the Authorization and X-Amz-* headers of a SigV4-signed request to API
    Gateway; the body and the given headers are signed, so send exactly these."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    request = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    SigV4Auth(credentials, "execute-api", region).add_auth(request)
    return {k: v for k, v in request.headers.items()}


CORP_KEY_ENV = "KEFU_CORP_KEY"  # provider mode: the corp's API key for /stats and the conversation API


def request_headers(target: Target, method: str, url: str, what: str, body: bytes = b"",
                    headers: Mapping[str, str] | None = None) -> dict[str, str]:
    """The headers to send: signed when the target is deployed, ``headers`` as given when local.
    ``what`` names the request in the error when there are no credentials (e.g. "GET /stats")."""
    corp_key = os.environ.get(CORP_KEY_ENV)  # provider mode: which corp's data (kefu.corp_auth)
    if corp_key:
        headers = {**(headers or {}), "X-Kefu-Corp-Key": corp_key}
    if target.local:
        return dict(headers or {})
    credentials = target.session().get_credentials()
    if credentials is None:
        raise CliError(f"no AWS credentials to sign {what} with (it needs IAM authorization)")
    return sigv4_headers(credentials.get_frozen_credentials(), target.region, method, url, body, headers)


def error_detail(response: Any) -> str:
    """What an error answer says: its JSON message or error, else the start of its text."""
    try:
        body = response.json()
        return str(body.get("message") or body.get("error") or body.get("Message") or response.text)
    except (ValueError, AttributeError):
        return str(response.text[:200])
