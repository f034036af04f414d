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


# -- sessions and sending (route function) ----------------------------------------------------

def servicer_list(client: WeComClient, open_kfid: str) -> dict[str, bool]:
    """userid -> receiving (servicer/list encodes receiving as status 0); departments skipped."""
    data = client.read("kf/servicer/list", params={"open_kfid": open_kfid})
    return {
        str(s["userid"]): str(s.get("status", 1)) == "0"
        for s in data.get("servicer_list") or [] if isinstance(s, dict) and s.get("userid")
    }


def service_state_get(client: WeComClient, open_kfid: str, external_userid: str) -> tuple[int, str | None]:
    data = client.read("kf/service_state/get", {"open_kfid": open_kfid, "external_userid": external_userid})
    return int(data.get("service_state", 0)), (str(data["servicer_userid"]) if data.get("servicer_userid") else None)


def service_state_trans(client: WeComClient, open_kfid: str, external_userid: str, state: int,
                        servicer_userid: str | None = None) -> str | None:
    """Move a session; returns the msg_code WeCom gives on entering 2, 3 or 4 (else None)."""
    body: dict[str, Any] = {"open_kfid": open_kfid, "external_userid": external_userid, "service_state": state}
    if servicer_userid:
        body["servicer_userid"] = servicer_userid
    data = client.write("kf/service_state/trans", body)
    return str(data["msg_code"]) if data.get("msg_code") else None


def send_text(client: WeComClient, open_kfid: str, external_userid: str, msgid: str, content: str) -> None:
    client.write("kf/send_msg", {"touser": external_userid, "open_kfid": open_kfid, "msgid": msgid,
                                 "msgtype": "text", "text": {"content": content}})


def send_on_event(client: WeComClient, code: str, msgid: str, message: dict[str, Any]) -> None:
    """send_msg_on_event; ``message`` is {"msgtype": "text", "text": {...}} or a msgmenu."""
    client.write("kf/send_msg_on_event", {"code": code, "msgid": msgid, **message})
