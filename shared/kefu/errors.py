"""The JSON error shape every HTTP route answers with: {"error": code, "message": what to fix}."""

from __future__ import annotations

import json
from typing import Any


class HttpError(Exception):
    """A request refused with a 4xx: the HTTP status, a short error code, and what to fix. Each
    HTTP route answers it as ``error_response(exc.status, exc.error, exc.message)``."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(f"{status} {error}: {message}")
        self.status = status
        self.error = error
        self.message = message

    def response(self) -> Any:
        return error_response(self.status, self.error, self.message)


def error_body(error: str, message: str) -> str:
    return json.dumps({"error": error, "message": message}, ensure_ascii=False)


def error_response(status: int, error: str, message: str) -> Any:
    from aws_lambda_powertools.event_handler import Response

    return Response(status_code=status, content_type="application/json", body=error_body(error, message))
