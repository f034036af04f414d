"""Which enterprise (corp) the current work is for.

A deployment runs in one of two modes (the template's ``Mode``, environment ``KEFU_MODE``):

- ``single`` (the default): one corp, its own self-built app; nothing here changes any key,
  queue message or record, so a single-corp deployment is exactly what it was before.
- ``provider``: a service provider's (服务商) app serves every corp that authorized it. Each piece
  of work runs inside ``serving(corp_id)``, and every DynamoDB key, index value, queue group and
  S3 key built meanwhile is qualified with that corp (``<corp_id>/...``). Outside ``serving`` a
  key cannot be built at all (``TenancyError``), so a code path that forgot its corp fails loudly
  instead of reading or writing another corp's data.

The provider's own items (suite ticket and token, the registry of authorized corps) are not
corp data: kefu.store.keys builds them unqualified, under ``provider#``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

MODE_ENV = "KEFU_MODE"
SINGLE, PROVIDER = "single", "provider"
SEPARATOR = "/"
# WeCom corp ids are "ww" or "wx" and 16 hex digits; any id of letters, digits, '_' and '-' up to
# 64 characters is taken, and nothing that could carry the separator or a key's '#'.
CORP_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")

_corp: ContextVar[str | None] = ContextVar("kefu_corp", default=None)


class TenancyError(RuntimeError):
    """Corp data touched with no corp in scope, or a value of another corp met: always a bug."""


def provider_mode() -> bool:
    return os.environ.get(MODE_ENV, SINGLE) == PROVIDER


def valid_corp_id(corp_id: object) -> bool:
    return isinstance(corp_id, str) and CORP_ID.fullmatch(corp_id) is not None


@contextmanager
def serving(corp_id: str) -> Iterator[str]:
    """Run the block for ``corp_id``: keys built inside it are that corp's."""
    if not valid_corp_id(corp_id):
        raise ValueError(f"not a corp id: {corp_id!r}")
    token = _corp.set(corp_id)
    try:
        yield corp_id
    finally:
        _corp.reset(token)


def current() -> str | None:
    """The corp in scope (None in single mode, or outside ``serving``)."""
    return _corp.get()


def require() -> str:
    corp = _corp.get()
    if corp is None:
        raise TenancyError("provider mode: corp data touched outside tenancy.serving(corp_id)")
    return corp


def qualify(value: str) -> str:
    """``value`` as the corp in scope stores it: unchanged in single mode."""
    if not provider_mode():
        return value
    return f"{require()}{SEPARATOR}{value}"


def unqualify(value: str) -> str:
    """The inverse of ``qualify``; a value of another corp raises (it must never be read here)."""
    if not provider_mode():
        return value
    prefix = require() + SEPARATOR
    if not value.startswith(prefix):
        raise TenancyError("a stored value of another corp (or of none) was read")
    return value[len(prefix):]


def stamp() -> dict[str, str]:
    """The field that names the corp on records, queue messages, events and log lines ({} in
    single mode)."""
    return {"corp": require()} if provider_mode() else {}
