"""The kf endpoints Kefu calls, as small typed functions over WeComClient."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from kefu.wecom.client import WeComClient
from kefu.wecom.errors import NO_CONTACT_PERMISSION, WeComError


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


def send_msg(client: WeComApi, open_kfid: str, external_userid: str, msgid: str, message: dict[str, Any]) -> None:
    """send_msg of ``message`` ({"msgtype": ..., <msgtype>: {...}}) under Kefu's msgid, repeated
    with that same msgid while WeCom answers that it did not run the call; a msgid used before is
    refused with errors.USED_MSGID."""
    client.write("kf/send_msg", {"touser": external_userid, "open_kfid": open_kfid, "msgid": msgid, **message},
                 retry_not_executed=True)


def send_text(client: WeComApi, open_kfid: str, external_userid: str, msgid: str, content: str) -> None:
    send_msg(client, open_kfid, external_userid, msgid, {"msgtype": "text", "text": {"content": content}})


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


# -- media and 升级服务 (route function, CLI) --------------------------------------------------------

class Uploader(Protocol):
    def upload(self, path: str, params: dict[str, str], filename: str, data: bytes,
               content_type: str) -> dict[str, Any]: ...


def media_upload(client: Uploader, kind: str, filename: str, data: bytes, content_type: str) -> tuple[str, int]:
    """media/upload of one file (kind: image, voice, video or file); returns the media_id and its
    creation time (WeCom sends it as a string). The id lives 3 days."""
    data_out = client.upload("media/upload", {"type": kind}, filename, data, content_type)
    media_id = data_out.get("media_id")
    if not isinstance(media_id, str) or not media_id:
        raise WeComError("media/upload", None, "answer carries no media_id")
    try:
        created = int(str(data_out.get("created_at") or 0))
    except ValueError:
        created = 0
    return media_id, created


@dataclass(frozen=True)
class UpgradeConfig:
    """The upgrade targets the enterprise set up in the admin console (get_upgrade_service_config)."""

    userids: tuple[str, ...] = ()
    department_ids: tuple[int, ...] = ()
    chat_ids: tuple[str, ...] = ()


def upgrade_config(client: WeComApi) -> UpgradeConfig:
    data = client.read("kf/customer/get_upgrade_service_config")
    members = data.get("member_range") or {}
    groups = data.get("groupchat_range") or {}
    return UpgradeConfig(
        userids=tuple(str(u) for u in members.get("userid_list") or []),
        department_ids=tuple(int(d) for d in members.get("department_id_list") or [] if str(d).isdigit()),
        chat_ids=tuple(str(c) for c in groups.get("chat_id_list") or []),
    )


UPGRADE_MEMBER, UPGRADE_GROUP = 1, 2


def upgrade_service(client: WeComApi, open_kfid: str, external_userid: str, kind: int, target: str,
                    wording: str | None = None) -> None:
    """Offer the customer a member (kind 1, ``target`` a userid) or a customer group (kind 2,
    ``target`` a chat_id) to add: the 升级服务 card in the conversation."""
    field, id_key = ("member", "userid") if kind == UPGRADE_MEMBER else ("groupchat", "chat_id")
    offer: dict[str, Any] = {id_key: target}
    if wording:
        offer["wording"] = wording
    client.write("kf/customer/upgrade_service", {"open_kfid": open_kfid, "external_userid": external_userid,
                                                 "type": kind, field: offer})


def cancel_upgrade_service(client: WeComApi, open_kfid: str, external_userid: str) -> None:
    client.write("kf/customer/cancel_upgrade_service", {"open_kfid": open_kfid, "external_userid": external_userid})


# -- the servicer sidebar (sidebar function) ------------------------------------------------------

def oauth_userid(client: WeComApi, code: str) -> str | None:
    """The member a WeCom OAuth2 code names (auth/getuserinfo); None when the code names a
    non-member (WeCom answers an openid instead)."""
    data = client.read("auth/getuserinfo", params={"code": code})
    userid = data.get("userid") or data.get("UserId")
    return str(userid) if userid else None


def jsapi_ticket(client: WeComApi, agent: bool = False) -> tuple[str, int]:
    """The JS-SDK ticket for wx.config (the corp's) or wx.agentConfig (the app's), and its life."""
    data = client.read("ticket/get", params={"type": "agent_config"}) if agent else client.read("get_jsapi_ticket")
    return str(data["ticket"]), int(data.get("expires_in", 7200))


# -- accounts and servicers as code (`kefu accounts`), department servicers, statistics ------------

SERVICER_BATCH = 100  # kf/servicer/add and del take up to 100 userids and 100 departments per call


def account_add(client: WeComApi, name: str, media_id: str) -> str:
    """A new kf account (the calling app manages it); returns its open_kfid."""
    data = client.write("kf/account/add", {"name": name, "media_id": media_id})
    open_kfid = data.get("open_kfid")
    if not isinstance(open_kfid, str) or not open_kfid:
        raise WeComError("kf/account/add", None, "answer carries no open_kfid")
    return open_kfid


def account_update(client: WeComApi, open_kfid: str, name: str | None = None, media_id: str | None = None) -> None:
    body: dict[str, Any] = {"open_kfid": open_kfid}
    if name is not None:
        body["name"] = name
    if media_id is not None:
        body["media_id"] = media_id
    client.write("kf/account/update", body)


def account_del(client: WeComApi, open_kfid: str) -> None:
    client.write("kf/account/del", {"open_kfid": open_kfid})


@dataclass(frozen=True)
class Servicers:
    """An account's servicers as kf/servicer/list gives them: users (userid -> receiving) and
    departments (whose members serve)."""

    users: dict[str, bool]
    departments: tuple[int, ...]


def servicers(client: WeComApi, open_kfid: str) -> Servicers:
    data = client.read("kf/servicer/list", params={"open_kfid": open_kfid})
    users: dict[str, bool] = {}
    departments: list[int] = []
    for entry in data.get("servicer_list") or []:
        if not isinstance(entry, dict):
            continue
        if entry.get("userid"):
            users[str(entry["userid"])] = str(entry.get("status", 1)) == "0"
        elif str(entry.get("department_id", "")).isdigit():
            departments.append(int(entry["department_id"]))
    return Servicers(users, tuple(departments))


def servicer_change(client: WeComApi, action: str, open_kfid: str, userids: list[str],
                    department_ids: list[int]) -> list[dict[str, Any]]:
    """kf/servicer/add or del (``action``) in WeCom's batches; the per-item results
    ({userid | department_id, errcode, errmsg}) of every batch. A batch's items succeed or fail
    one by one: the top-level answer can be a success while some items failed."""
    if action not in ("add", "del"):
        raise ValueError("action is add or del")
    results: list[dict[str, Any]] = []
    for start in range(0, max(len(userids), len(department_ids)), SERVICER_BATCH):
        body: dict[str, Any] = {"open_kfid": open_kfid}
        users, departments = userids[start : start + SERVICER_BATCH], department_ids[start : start + SERVICER_BATCH]
        if users:
            body["userid_list"] = users
        if departments:
            body["department_id_list"] = departments
        data = client.write(f"kf/servicer/{action}", body)
        results.extend(r for r in data.get("result_list") or [] if isinstance(r, dict))
    return results


def department_members(client: WeComApi, department_id: int, children: bool = False) -> list[str]:
    """The userids of a department's own members (user/simplelist; whether WeCom lets the members
    of its sub-departments serve too is not documented, so they are not routed to); a WeCom error
    60011 means the app may not read that department (its visible range). ``children``: with the
    members of its sub-departments too."""
    data = client.read("user/simplelist", params={"department_id": str(department_id),
                                                  "fetch_child": "1" if children else "0"})
    return [str(u["userid"]) for u in data.get("userlist") or [] if isinstance(u, dict) and u.get("userid")]


def corp_statistic(client: WeComApi, start_time: int, end_time: int, open_kfid: str | None = None) -> list[dict[str, Any]]:
    """kf/get_corp_statistic: one {stat_time, statistic} per day (statistic absent for a day not
    computed or without data); days are midnight timestamps, from yesterday back 180 days."""
    body: dict[str, Any] = {"start_time": start_time, "end_time": end_time}
    if open_kfid:
        body["open_kfid"] = open_kfid
    return list(client.read("kf/get_corp_statistic", body).get("statistic_list") or [])


def servicer_statistic(client: WeComApi, open_kfid: str, start_time: int, end_time: int,
                       servicer_userid: str | None = None) -> list[dict[str, Any]]:
    body: dict[str, Any] = {"open_kfid": open_kfid, "start_time": start_time, "end_time": end_time}
    if servicer_userid:
        body["servicer_userid"] = servicer_userid
    return list(client.read("kf/get_servicer_statistic", body).get("statistic_list") or [])


def corp_qualification(client: WeComApi) -> dict[str, Any]:
    """kf/get_corp_qualification: what the corp may do (e.g. wechat_channels_binding)."""
    return dict(client.read("kf/get_corp_qualification"))


def duty_roster(client: WeComApi, open_kfid: str, previous: dict[str, bool] | None = None) -> dict[str, bool]:
    """Who serves the account, userid -> receiving: its users as kf/servicer/list gives them, and
    the members of its servicing departments (user/simplelist). The list gives no status for a
    department's members: they count as receiving until a servicer_status_change says otherwise
    (``previous``, the stored roster, keeps what such an event said). A department the app may not
    read (60011, outside its visible range) adds nobody; `kefu preflight` says so."""
    listed = servicers(client, open_kfid)
    roster = dict(listed.users)
    for department in listed.departments:
        try:
            members = department_members(client, department)
        except WeComError as exc:
            if exc.errcode == NO_CONTACT_PERMISSION:
                continue
            raise
        for userid in members:
            roster.setdefault(userid, (previous or {}).get(userid, True))
    return roster
