"""boto3 clients and tables, created lazily and once per container.

boto3 honours AWS_ENDPOINT_URL by itself, so the same code reaches the local emulator and AWS.
"""

from __future__ import annotations

from functools import cache
from typing import Any


@cache
def _config() -> Any:
    from botocore.config import Config

    return Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 3, "mode": "standard"})


@cache
def client(service: str) -> Any:
    import boto3

    return boto3.client(service, config=_config())


@cache
def table(name: str) -> Any:
    return dynamodb().Table(name)


@cache
def dynamodb() -> Any:
    """The DynamoDB service resource (for batch reads across keys)."""
    import boto3

    return boto3.resource("dynamodb", config=_config())
