"""The JSON error shape every HTTP route answers with: {"error": code, "message": what to fix}."""

from __future__ import annotations

import json
from typing import Any


def error_body(error: str, message: str) -> str:
    return json.dumps({"error": error, "message": message}, ensure_ascii=False)


def error_response(status: int, error: str, message: str) -> Any:
    from aws_lambda_powertools.event_handler import Response

    return Response(status_code=status, content_type="application/json", body=error_body(error, message))
