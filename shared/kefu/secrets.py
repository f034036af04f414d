"""The WeCom secrets, read from SSM Parameter Store (SecureString) and cached per container.

One GetParameters call (decrypted) through the shared boto3 client of kefu.aws, so the first read
costs the SSM client only, not a second boto3 session with its own copy of botocore's data."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from kefu.config import ConfigError

CORP_SECRET = "corp-secret"  # nosec B105 - parameter names, not values
CALLBACK_TOKEN = "callback-token"  # nosec B105
ENCODING_AES_KEY = "encoding-aes-key"
SUITE_SECRET = "suite-secret"  # nosec B105 - provider mode: the suite's secret (kefu.provider)
NAMES = (CORP_SECRET, CALLBACK_TOKEN, ENCODING_AES_KEY)
CALLBACK_NAMES = (CALLBACK_TOKEN, ENCODING_AES_KEY)  # all the callback function reads
CACHE_SECONDS = 300

_AES_KEY = re.compile(r"[A-Za-z0-9]{43}")


@dataclass(frozen=True)
class WeComSecrets:
    corp_secret: str = field(repr=False)
    callback_token: str = field(repr=False)
    encoding_aes_key: str = field(repr=False)

    def __post_init__(self) -> None:
        if not self.callback_token or not self.corp_secret:
            raise ConfigError("WeCom secrets: corp-secret and callback-token must not be empty")
        if not _AES_KEY.fullmatch(self.encoding_aes_key):
            raise ConfigError("WeCom secrets: encoding-aes-key must be 43 characters [A-Za-z0-9]")


@dataclass(frozen=True)
class CallbackSecrets:
    """What verifying and decrypting callbacks takes: the Token and the EncodingAESKey."""

    callback_token: str = field(repr=False)
    encoding_aes_key: str = field(repr=False)

    def __post_init__(self) -> None:
        if not self.callback_token:
            raise ConfigError("WeCom secrets: callback-token must not be empty")
        if not _AES_KEY.fullmatch(self.encoding_aes_key):
            raise ConfigError("WeCom secrets: encoding-aes-key must be 43 characters [A-Za-z0-9]")


def parameter_names(prefix: str) -> dict[str, str]:
    return {name: f"{prefix}/{name}" for name in NAMES}


T = TypeVar("T")
_cache: dict[tuple[str, str], tuple[float, Any]] = {}  # (kind, prefix) -> (monotonic expiry, secrets)


def _cached(kind: str, prefix: str, read: Callable[[], T]) -> T:
    """``read()``'s result, kept for CACHE_SECONDS per (kind, prefix); the same object meanwhile."""
    now = time.monotonic()
    hit = _cache.get((kind, prefix))
    if hit is not None and now < hit[0]:
        value: T = hit[1]
        return value
    value = read()
    _cache[(kind, prefix)] = (now + CACHE_SECONDS, value)
    return value


def _read(prefix: str, wanted: tuple[str, ...]) -> dict[str, str]:
    """The SecureStrings ``wanted`` under ``prefix``, by short name. Only these parameters are
    read: each function's IAM policy names the ones it may read, so asking for another fails
    deployed."""
    from kefu import aws

    paths = {name: f"{prefix}/{name}" for name in wanted}
    try:
        response = aws.client("ssm").get_parameters(Names=list(paths.values()), WithDecryption=True)
    except Exception as exc:  # botocore's ClientError, a credentials or connection error
        raise ConfigError(f"cannot read WeCom secrets under {prefix}: {type(exc).__name__}: {exc}") from None
    found = {p.get("Name"): p.get("Value") for p in response.get("Parameters") or []}
    missing = [path for path in paths.values() if not isinstance(found.get(path), str)]
    if missing:
        raise ConfigError(f"cannot read WeCom secrets under {prefix}: not found: {', '.join(missing)}")
    return {name: str(found[path]) for name, path in paths.items()}


def load_secrets(prefix: str) -> WeComSecrets:
    """Read the three SecureStrings under ``prefix`` (the functions that call WeCom)."""
    return _cached("all", prefix, lambda: _wecom_secrets(_read(prefix, NAMES)))


def _wecom_secrets(values: dict[str, str]) -> WeComSecrets:
    return WeComSecrets(
        corp_secret=values[CORP_SECRET],
        callback_token=values[CALLBACK_TOKEN],
        encoding_aes_key=values[ENCODING_AES_KEY],
    )


def load_callback_secrets(prefix: str) -> CallbackSecrets:
    """Read only the callback token and the EncodingAESKey (the callback function never calls
    WeCom, so it neither needs nor may read the corp secret)."""
    return _cached("callback", prefix, lambda: _callback_secrets(_read(prefix, CALLBACK_NAMES)))


def _callback_secrets(values: dict[str, str]) -> CallbackSecrets:
    return CallbackSecrets(callback_token=values[CALLBACK_TOKEN], encoding_aes_key=values[ENCODING_AES_KEY])


@dataclass(frozen=True)
class SuiteSecrets:
    """Provider mode: the suite's secret (its callback Token and EncodingAESKey are read as
    CallbackSecrets, under the same names as a single corp's)."""

    suite_secret: str = field(repr=False)

    def __post_init__(self) -> None:
        if not self.suite_secret:
            raise ConfigError("WeCom secrets: suite-secret must not be empty")


def load_suite_secrets(prefix: str) -> SuiteSecrets:
    return _cached("suite", prefix, lambda: SuiteSecrets(_read(prefix, (SUITE_SECRET,))[SUITE_SECRET]))
