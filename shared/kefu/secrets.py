"""The WeCom secrets, read from SSM Parameter Store (SecureString) and cached per container."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from kefu.config import ConfigError

CORP_SECRET = "corp-secret"  # nosec B105 - parameter names, not values
CALLBACK_TOKEN = "callback-token"  # nosec B105
ENCODING_AES_KEY = "encoding-aes-key"
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


def _read(prefix: str, wanted: tuple[str, ...]) -> dict[str, str]:
    """The SecureStrings ``wanted`` under ``prefix``, by short name (Powertools caches them for
    CACHE_SECONDS). Only these parameters are read: each function's IAM policy names the ones it
    may read, so asking for another fails deployed."""
    from aws_lambda_powertools.utilities.parameters import get_parameters_by_name

    names = {name: path for name, path in parameter_names(prefix).items() if name in wanted}
    try:
        values = get_parameters_by_name(
            parameters={path: {} for path in names.values()}, decrypt=True, max_age=CACHE_SECONDS
        )
    except Exception as exc:  # the library raises GetParameterError with the missing names
        raise ConfigError(f"cannot read WeCom secrets under {prefix}: {type(exc).__name__}: {exc}") from None
    return {name: str(values[path]) for name, path in names.items()}


def load_secrets(prefix: str) -> WeComSecrets:
    """Read the three SecureStrings under ``prefix`` (the functions that call WeCom)."""
    values = _read(prefix, NAMES)
    return WeComSecrets(
        corp_secret=values[CORP_SECRET],
        callback_token=values[CALLBACK_TOKEN],
        encoding_aes_key=values[ENCODING_AES_KEY],
    )


def load_callback_secrets(prefix: str) -> CallbackSecrets:
    """Read only the callback token and the EncodingAESKey (the callback function never calls
    WeCom, so it neither needs nor may read the corp secret)."""
    values = _read(prefix, CALLBACK_NAMES)
    return CallbackSecrets(callback_token=values[CALLBACK_TOKEN], encoding_aes_key=values[ENCODING_AES_KEY])
