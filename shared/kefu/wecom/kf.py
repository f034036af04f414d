"""The kf endpoints Kefu calls, as small typed functions over WeComClient."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kefu.wecom.client import WeComClient

SYNC_LIMIT = 1000
BATCHGET_LIMIT = 100


@dataclass(frozen=True)
class SyncPage:
    next_cursor: str
    has_more: bool
    msg_list: list[Any]


def sync_msg(client: WeComClient, open_kfid: str, cursor: str | None, token: str | None,
             limit: int = SYNC_LIMIT) -> SyncPage:
    body: dict[str, Any] = {"open_kfid": open_kfid, "limit": limit}
    if cursor:
        body["cursor"] = cursor
    if token:
        body["token"] = token
    data = client.read("kf/sync_msg", body)
    msg_list = data.get("msg_list")
    return SyncPage(
        next_cursor=str(data.get("next_cursor") or ""),
        has_more=str(data.get("has_more", 0)) == "1",
        msg_list=msg_list if isinstance(msg_list, list) else [],
    )


def customer_batchget(client: WeComClient, external_userids: list[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """Profiles of up to 100 customers, with the context of their last entry."""
    if not 1 <= len(external_userids) <= BATCHGET_LIMIT:
        raise ValueError("customer_batchget takes 1..100 external_userids")
    data = client.read("kf/customer/batchget", {"external_userid_list": external_userids,
                                               "need_enter_session_context": 1})
    return list(data.get("customer_list") or []), [str(x) for x in data.get("invalid_external_userid") or []]


def media_get(client: WeComClient, media_id: str) -> tuple[bytes, str]:
    return client.download("media/get", {"media_id": media_id})
