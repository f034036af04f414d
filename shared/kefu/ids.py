"""The shape of the ids Kefu accepts from callers and configuration, in one place: WeCom's scene
and open_kfid rules, and the aliases the configuration gives accounts."""

from __future__ import annotations

import re

SCENE_MAX_BYTES = 32  # WeCom: a scene is at most 32 bytes of [0-9A-Za-z_-]
SCENE_PARAM_MAX_BYTES = 128  # before percent-encoding
SCENE_RE = re.compile(r"[0-9A-Za-z_-]+")
OPEN_KFID_RE = re.compile(r"wk[0-9A-Za-z_-]{6,62}")
ALIAS = r"[0-9A-Za-z_-]{1,64}"  # an account alias or an open_kfid in settings and queries
ALIAS_RE = re.compile(ALIAS)


def is_scene(value: str) -> bool:
    return 0 < len(value) <= SCENE_MAX_BYTES and SCENE_RE.fullmatch(value) is not None


def is_open_kfid(value: str) -> bool:
    return OPEN_KFID_RE.fullmatch(value) is not None


def is_alias(value: str) -> bool:
    return ALIAS_RE.fullmatch(value) is not None


def byte_len(value: str) -> int | None:
    """UTF-8 length, or None for text that cannot be sent anywhere (a lone surrogate)."""
    try:
        return len(value.encode("utf-8"))
    except UnicodeEncodeError:
        return None


# An entry from 视频号 carries no link scene: Kefu names its scene after the channel (or its shop).
CHANNELS_SCENE_PREFIX = "channels:"

EXTERNAL_USERID_RE = re.compile(r"wm[0-9A-Za-z_-]{6,62}")
IDEMPOTENCY_KEY_RE = re.compile(r"[\x21-\x7e]{1,128}")  # printable ASCII, no spaces


def is_external_userid(value: str) -> bool:
    return EXTERNAL_USERID_RE.fullmatch(value) is not None
