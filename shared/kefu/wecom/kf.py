"""The kf endpoints Kefu calls, as small typed functions over WeComClient."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from kefu.wecom.client import WeComClient
from kefu.wecom.errors import WeComError


class WeComApi(Protocol):
    """The calls these functions make: WeComClient is the deployed one, tests pass in-memory ones."""

    def read(self, path: str, body: dict[str, Any] | None = None, *,
             params: dict[str, str] | None = None) -> dict[str, Any]: ...

    def write(self, path: str, body: dict[str, Any], *, retry_not_executed: bool = False) -> dict[str, Any]: ...


SYNC_LIMIT = 1000
BATCHGET_LIMIT = 100


@dataclass(frozen=True)
class SyncPage:
    next_cursor: str
    has_more: bool
    msg_list: list[Any]


def sync_msg(client: WeComApi, open_kfid: str, cursor: str | None, token: str | None,
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


def customer_batchget(client: WeComApi, external_userids: list[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """Profiles of up to 100 customers, with the context of their last entry."""
    if not 1 <= len(external_userids) <= BATCHGET_LIMIT:
        raise ValueError("customer_batchget takes 1..100 external_userids")
    data = client.read("kf/customer/batchget", {"external_userid_list": external_userids,
                                               "need_enter_session_context": 1})
    return list(data.get("customer_list") or []), [str(x) for x in data.get("invalid_external_userid") or []]


def media_get(client: WeComClient, media_id: str) -> tuple[bytes, str]:
    return client.download("media/get", {"media_id": media_id})


# -- sessions and sending (route function) ----------------------------------------------------

def servicer_list(client: WeComApi, open_kfid: str) -> dict[str, bool]:
    """userid -> receiving (servicer/list encodes receiving as status 0); departments skipped."""
    data = client.read("kf/servicer/list", params={"open_kfid": open_kfid})
    return {
        str(s["userid"]): str(s.get("status", 1)) == "0"
        for s in data.get("servicer_list") or [] if isinstance(s, dict) and s.get("userid")
    }


def service_state_get(client: WeComApi, open_kfid: str, external_userid: str) -> tuple[int, str | None]:
    data = client.read("kf/service_state/get", {"open_kfid": open_kfid, "external_userid": external_userid})
    return int(data.get("service_state", 0)), (str(data["servicer_userid"]) if data.get("servicer_userid") else None)


def service_state_trans(client: WeComApi, open_kfid: str, external_userid: str, state: int,
                        servicer_userid: str | None = None) -> str | None:
    """Move a session; returns the msg_code WeCom gives on entering 2, 3 or 4 (else None)."""
    body: dict[str, Any] = {"open_kfid": open_kfid, "external_userid": external_userid, "service_state": state}
    if servicer_userid:
        body["servicer_userid"] = servicer_userid
    data = client.write("kf/service_state/trans", body, retry_not_executed=True)
    return str(data["msg_code"]) if data.get("msg_code") else None


def send_text(client: WeComApi, open_kfid: str, external_userid: str, msgid: str, content: str) -> None:
    """send_msg of a text under Kefu's msgid, repeated with that same msgid while WeCom answers
    that it did not run the call; a msgid used before is refused with errors.USED_MSGID."""
    client.write("kf/send_msg", {"touser": external_userid, "open_kfid": open_kfid, "msgid": msgid,
                                 "msgtype": "text", "text": {"content": content}}, retry_not_executed=True)


def send_on_event(client: WeComApi, code: str, msgid: str, message: dict[str, Any]) -> None:
    """send_msg_on_event; ``message`` is {"msgtype": "text", "text": {...}} or a msgmenu."""
    client.write("kf/send_msg_on_event", {"code": code, "msgid": msgid, **message}, retry_not_executed=True)


# -- contact links (links function) -------------------------------------------------------------

ACCOUNT_LIST_LIMIT = 100


def add_contact_way(client: WeComApi, open_kfid: str, scene: str) -> str:
    """A contact URL for the account, tagged with ``scene`` (WeCom's links do not expire).

    Sent as a write: a timeout or busy answer is not repeated here, it reaches the caller (the
    links function answers 503 and the frontend asks again). A repeat would be harmless - another
    link to the same account and scene, never stored - but retrying inside a synchronous request
    piles onto WeCom exactly when it reports being overloaded or rate-limited.
    """
    data = client.write("kf/add_contact_way", {"open_kfid": open_kfid, "scene": scene})
    url = data.get("url")
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise WeComError("kf/add_contact_way", None, "answer carries no url")
    return url


def account_list(client: WeComApi) -> list[dict[str, Any]]:
    """Every kf account of the corp ({open_kfid, name, avatar, manage_privilege}), all pages."""
    accounts: list[dict[str, Any]] = []
    offset = 0
    while True:
        data = client.read("kf/account/list", {"offset": offset, "limit": ACCOUNT_LIST_LIMIT})
        page = data.get("account_list") or []
        accounts.extend(a for a in page if isinstance(a, dict) and a.get("open_kfid"))
        offset += len(page)
        if len(page) < ACCOUNT_LIST_LIMIT:
            return accounts
