"""The management endpoints: kf accounts, servicers, the contact list, statistics and the corp's
qualification (routes in ``api.ROUTES``)."""

from __future__ import annotations

import hashlib
from typing import Any

from local.wecom_sim.api import ApiEndpoints, _int_field, _sized_str
from local.wecom_sim.state import (
    ACCOUNT_NAME_MAX,
    AVATAR_MEDIA_ID_MAX,
    BOT,
    HUMAN,
    MAX_ACCOUNTS,
    MAX_SERVICERS_PER_ACCOUNT,
    MEDIA_TTL,
    POOL,
    SERVICER_BATCH_MAX,
    SERVICERS_OVER_LIMIT,
    STAT_DAYS_BACK,
    STAT_MAX_SPAN_DAYS,
    STAT_READY_AFTER,
    STAT_TZ_OFFSET,
    UNVERIFIED_MAX_ACCOUNTS,
    ApiError,
    _Account,
    _random_id,
    _Servicer,
)

DAY = 86400


def stat_day(timestamp: float) -> int:
    """The midnight (China time) that starts the day ``timestamp`` falls in."""
    return int(timestamp - (timestamp + STAT_TZ_OFFSET) % DAY)


def avatar_url(media_id: str) -> str:
    """The avatar URL account/list gives for an avatar set from ``media_id`` (the same each time)."""
    return f"https://wework.qpic.cn/wwhead/{hashlib.sha256(media_id.encode()).hexdigest()[:24]}/0"


def _account_name(value: Any) -> str:
    """A kf account name: 1..16 characters. Not documented, taken as the stricter way: a name of
    blanks only, or with control characters (a newline), is refused like an empty one (95006)."""
    if not isinstance(value, str) or not value.strip():
        raise ApiError(95006, "invalid kf account name: 1 to 16 characters")
    if len(value) > ACCOUNT_NAME_MAX:
        raise ApiError(95006, f"invalid kf account name: {len(value)} characters, at most {ACCOUNT_NAME_MAX}")
    if any(not ch.isprintable() for ch in value):
        raise ApiError(95006, "invalid kf account name: control characters")
    return value


def _id_list(body: dict[str, Any], key: str, kind: type) -> list[Any]:
    """userid_list / department_id_list of a servicer change: absent or a list of up to 100."""
    value = body.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, kind) and not isinstance(v, bool) for v in value):
        raise ApiError(40058, f"invalid parameter {key}")
    if len(value) > SERVICER_BATCH_MAX:
        raise ApiError(40058, f"invalid parameter {key}: {len(value)} items, at most {SERVICER_BATCH_MAX} per call")
    return value


class ManagementEndpoints(ApiEndpoints):
    """kf/account/add, update, del; kf/servicer/add, del; user/simplelist; the statistics; and
    kf/get_corp_qualification. Each runs with the lock held."""

    # ------------------------------------------------------------------ accounts

    def _api_account_add(self, _query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        if not any(a.manage_privilege for a in self._accounts.values()):
            # The reference: a self-built app must already manage one account before it may add
            # one. No errcode is published for it; the simulator answers 48002 (api forbidden).
            raise ApiError(48002, "api forbidden: the app manages no kf account yet")
        name = _account_name(body.get("name"))
        media_id = self._avatar_media(body)
        if len(self._accounts) >= MAX_ACCOUNTS:
            raise ApiError(95005, f"kf account count out of limit: {MAX_ACCOUNTS} per corp")
        if not self._verified and len(self._accounts) >= UNVERIFIED_MAX_ACCOUNTS:
            raise ApiError(95027, f"unverified corp: at most {UNVERIFIED_MAX_ACCOUNTS} kf accounts")
        open_kfid = _random_id("wk", 30)
        while open_kfid in self._accounts or open_kfid in self._deleted_accounts:
            open_kfid = _random_id("wk", 30)
        # An account the API created is managed by the app that created it.
        self._accounts[open_kfid] = _Account(open_kfid, name, avatar_url(media_id), True, avatar_media_id=media_id)
        return {"open_kfid": open_kfid}

    def _api_account_update(self, _query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        account = self._api_account(body.get("open_kfid"))
        name = _account_name(body["name"]) if body.get("name") is not None else None
        media_id = self._avatar_media(body) if body.get("media_id") is not None else None
        if name is None and media_id is None:
            # Not documented: an update that changes nothing is refused (40058), not a silent no-op.
            raise ApiError(40058, "invalid parameter: give name or media_id")
        if name is not None:
            account.name = name
        if media_id is not None:
            account.avatar, account.avatar_media_id = avatar_url(media_id), media_id
        return {}

    def _api_account_del(self, _query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        account = self._api_account(body.get("open_kfid"))
        open_sessions = [s for s in self._sessions.values()
                         if s.open_kfid == account.open_kfid and s.state in (BOT, POOL, HUMAN)]
        if open_sessions:
            # Not documented: the simulator refuses to delete an account while one of its sessions
            # is with the bot, in the pool or with a servicer (95013, whose meaning is only
            # believed to be about ended sessions); a session new (0) or ended (4) does not block.
            raise ApiError(95013, f"kf account has {len(open_sessions)} session(s) not ended (state 1, 2 or 3)")
        del self._accounts[account.open_kfid]
        self._deleted_accounts.add(account.open_kfid)
        for key in [k for k in self._sessions if k[0] == account.open_kfid]:
            del self._sessions[key]
        return {}

    def _avatar_media(self, body: dict[str, Any]) -> str:
        """An avatar's media_id: an image the corp uploaded (media/upload or add_media), not
        expired; else 40007."""
        media_id = _sized_str(body, "account", "media_id", None)
        media = self._media.get(media_id) if len(media_id.encode()) <= AVATAR_MEDIA_ID_MAX else None
        if media is None or media.origin == "customer":
            raise ApiError(40007, "invalid media_id: unknown to the corp")
        if self.now() - media.created > MEDIA_TTL:
            raise ApiError(40007, "invalid media_id: expired (3 days)")
        if media.kind != "image":
            raise ApiError(40007, f"invalid media_id: a media of type {media.kind}, an avatar is an image")
        return media_id

    # ------------------------------------------------------------------ servicers

    def _api_servicer_add(self, _query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        return self._servicer_change(body, adding=True)

    def _api_servicer_del(self, _query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        return self._servicer_change(body, adding=False)

    def _servicer_change(self, body: dict[str, Any], *, adding: bool) -> dict[str, Any]:
        """Each item succeeds or fails on its own: the call answers errcode 0 with one result per
        item. A userid unknown to the corp answers 60111, a department 60123, either outside the
        app's visible range 60011; an item already as asked (a servicer added again, or one
        removed who was not one) answers errcode 0, errmsg "ignored"; an item that would take the
        account over its servicer cap answers 95020 (unpublished, the simulator's pick)."""
        account = self._api_account(body.get("open_kfid"))
        userids = _id_list(body, "userid_list", str)
        department_ids = _id_list(body, "department_id_list", int)
        if not userids and not department_ids:
            raise ApiError(40058, "invalid parameter: userid_list or department_id_list must hold an item")
        results: list[dict[str, Any]] = []
        for userid in userids:
            results.append({"userid": userid, **self._change_user(account, userid, adding)})
        for department_id in department_ids:
            results.append({"department_id": department_id, **self._change_department(account, department_id, adding)})
        return {"result_list": results}

    def _change_user(self, account: _Account, userid: str, adding: bool) -> dict[str, Any]:
        if not userid or not self._is_member(userid):
            return self._item_error(60111, f"userid not found: {userid}")
        if not self._member_visible(userid):
            return self._item_error(60011, f"userid {userid} is outside the app's visible range")
        if adding == (userid in account.servicers):
            return {"errcode": 0, "errmsg": "ignored"}
        if adding:
            if len(self._serving_users(account) | {userid}) > MAX_SERVICERS_PER_ACCOUNT:
                return self._over_cap()
            self._members.setdefault(userid, set())
            held = account.department_servicers.pop(userid) if userid in account.department_servicers else None
            account.servicers[userid] = held or _Servicer(userid)  # keeps a department member's status
        else:
            del account.servicers[userid]
        return {"errcode": 0, "errmsg": "success"}

    def _change_department(self, account: _Account, department_id: int, adding: bool) -> dict[str, Any]:
        if department_id not in self._departments:
            return self._item_error(60123, f"invalid party id {department_id}")
        if not self._department_visible(department_id):
            return self._item_error(60011, f"department {department_id} is outside the app's visible range")
        if adding == (department_id in account.departments):
            return {"errcode": 0, "errmsg": "ignored"}
        if adding:
            account.departments.append(department_id)
            if len(self._serving_users(account)) > MAX_SERVICERS_PER_ACCOUNT:
                account.departments.remove(department_id)
                return self._over_cap()
        else:
            account.departments.remove(department_id)
            for userid in list(account.department_servicers):
                if not self._member_departments(userid).intersection(account.departments):
                    del account.department_servicers[userid]
        return {"errcode": 0, "errmsg": "success"}

    @staticmethod
    def _item_error(errcode: int, detail: str) -> dict[str, Any]:
        return {"errcode": errcode, "errmsg": detail}

    def _over_cap(self) -> dict[str, Any]:
        return self._item_error(SERVICERS_OVER_LIMIT, f"servicer count out of limit: at most "
                                                      f"{MAX_SERVICERS_PER_ACCOUNT} per kf account")

    # ------------------------------------------------------------------ contact list

    def _api_user_simplelist(self, query: dict[str, str], _body: dict[str, Any]) -> dict[str, Any]:
        raw_id, fetch_child = query.get("department_id", ""), query.get("fetch_child", "0")
        if not raw_id.isdigit() or fetch_child not in ("", "0", "1"):
            raise ApiError(40058, "invalid parameter department_id or fetch_child (0 or 1)")
        department_id = int(raw_id)
        if department_id not in self._departments:
            raise ApiError(60123, f"invalid party id {department_id}")
        if not self._department_visible(department_id):
            raise ApiError(60011, f"no privilege to access department {department_id}")
        reach = self._subtree(department_id) if fetch_child == "1" else {department_id}
        # The simulator keeps no member names: a member's name is their userid.
        return {
            "userlist": [
                {"userid": userid, "name": userid, "department": sorted(self._member_departments(userid))}
                for userid in self._known_members() if self._member_departments(userid) & reach
            ]
        }

    # ------------------------------------------------------------------ statistics

    def _api_corp_statistic(self, _query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        open_kfid = body.get("open_kfid") or None
        if open_kfid is not None:
            self._api_account(open_kfid)
        days = self._stat_days(body)
        return {"statistic_list": [self._stat_entry(("corp", day, open_kfid, None), day) for day in days]}

    def _api_servicer_statistic(self, _query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        # One SDK takes open_kfid as optional here; the reference lists it as required, and the
        # simulator requires it.
        account = self._api_account(body.get("open_kfid"))
        servicer_userid = body.get("servicer_userid") or None
        if servicer_userid is not None and (not isinstance(servicer_userid, str) or not self._is_member(servicer_userid)):
            raise ApiError(60111, f"userid not found: servicer_userid {servicer_userid}")
        days = self._stat_days(body)
        return {"statistic_list": [self._stat_entry(("servicer", day, account.open_kfid, servicer_userid), day)
                                   for day in days]}

    def _stat_days(self, body: dict[str, Any]) -> list[int]:
        """The days a statistics query asks for: both times cut to their midnight (China time),
        from yesterday back 180 days, end not before start, at most 31 days; else 40058."""
        start, end = _int_field(body, "start_time", -1), _int_field(body, "end_time", -1)
        if start < 0 or end < 0:
            raise ApiError(40058, "missing parameter start_time or end_time")
        start, end = stat_day(start), stat_day(end)
        today = stat_day(self.now())
        earliest, latest = today - STAT_DAYS_BACK * DAY, today - DAY
        if not earliest <= start <= latest or not earliest <= end <= latest:
            raise ApiError(40058, "invalid parameter start_time/end_time: from yesterday back 180 days "
                                  "(today's figures come the next day)")
        if end < start:
            raise ApiError(40058, "invalid parameter: end_time before start_time")
        if (end - start) // DAY + 1 > STAT_MAX_SPAN_DAYS:
            raise ApiError(40058, f"invalid parameter: at most {STAT_MAX_SPAN_DAYS} days per query")
        return list(range(start, end + DAY, DAY))

    def _stat_entry(self, key: tuple[str, int, str | None, str | None], day: int) -> dict[str, Any]:
        entry: dict[str, Any] = {"stat_time": day}
        figures = self._statistics.get(key)
        # A day's figures show from 06:00 the next day: until then the day reads as not computed.
        if figures is not None and self.now() >= day + DAY + STAT_READY_AFTER:
            entry["statistic"] = dict(figures)
        return entry

    # ------------------------------------------------------------------ qualification

    def _api_corp_qualification(self, _query: dict[str, str], _body: dict[str, Any]) -> dict[str, Any]:
        # The reference documents only this field; the customer caps that go with verification
        # and binding (100 / 10,000 / none) are enforced on sends (95003), not reported.
        return {"wechat_channels_binding": self._channels_bound}
