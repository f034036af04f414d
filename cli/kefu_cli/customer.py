"""`kefu customer EXTERNAL_USERID | --unionid UNIONID`: what Kefu knows of a customer.

The profile (StateTable ``customer#<external_userid>`` / ``profile``), then per kf account the
customer's entries (the MessagesTable's ``entries`` index: enter_session items with their scene
and scene_param, and for 视频号 entries the channel's nickname) and the routing session
(``rsession#<open_kfid>#<external_userid>`` / ``s``). The accounts: ``--account OPEN_KFID``, else
every account kf/account/list names. ``--unionid`` finds the customers through the StateTable's
sparse ``unionid`` index (one unionid may belong to several external_userids).
"""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

from kefu.routing.session import SEND_LIMIT, SEND_WINDOW
from kefu.store import keys
from kefu.wecom.models import ServiceState
from kefu_cli.messages import PAGE, batch_read, local_time, messages_table, query_index
from kefu_cli.output import Progress, pad, table
from kefu_cli.target import CliError, Target
from kefu_cli.wecom import list_accounts

GENDERS = {0: "unknown", 1: "male", 2: "female"}
STATES = {ServiceState.NEW: "new (not handled yet)", ServiceState.BOT: "bot (Kefu or the API)",
          ServiceState.POOL: "waiting in the pool", ServiceState.HUMAN: "with a servicer",
          ServiceState.ENDED: "ended"}
CHANNELS_SCENES = {1: "homepage", 2: "live product list", 3: "showcase", 4: "product", 5: "order"}
PROFILE_FIELDS = ("external_userid", "nickname", "avatar", "gender", "unionid", "enter_session_context", "updated_at")
SESSION_FIELDS = ("state", "servicer", "scene", "scene_param", "entered_at", "session_started", "session_id",
                  "last_servicer", "last_served_at", "rating", "window_at", "sends", "pooled_at", "assigned_at")


def plain(value: Any) -> Any:
    """DynamoDB's Decimals as ints or floats, all the way down."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def _dynamodb(target: Target) -> Any:
    return target.session().resource("dynamodb", endpoint_url=target.aws_endpoint or None)


def _state_table(target: Target) -> Any:
    return _dynamodb(target).Table(target.output("StateTableName"))


def _get(table: Any, key: dict[str, str]) -> dict[str, Any] | None:
    item = table.get_item(Key=key).get("Item")
    return plain(item) if item else None


def nicknames(target: Target, external_userids: list[str]) -> dict[str, str]:
    """The stored nicknames of these customers (BatchGetItem on their profiles; none when the stack
    has no StateTableName output)."""
    name = target.outputs.get("StateTableName")
    if not external_userids or not name:
        return {}
    wanted = [keys.customer(e) for e in dict.fromkeys(external_userids)]
    return {str(item["pk"]).split("#", 1)[1]: str(item["nickname"])
            for item in batch_read(target, name, wanted, "pk, nickname") if item.get("nickname")}


def by_unionid(target: Target, unionid: str) -> list[str]:
    """The external_userids whose profile carries this unionid (the StateTable's ``unionid`` index)."""
    from boto3.dynamodb.conditions import Key

    table = _state_table(target)
    found: list[str] = []
    args: dict[str, Any] = {"IndexName": "unionid", "KeyConditionExpression": Key("unionid").eq(keys.indexed(unionid))}
    while True:
        response = table.query(**args)
        for item in response.get("Items", []):
            pk = str(item.get("pk") or "")
            if item.get("sk") == "profile" and pk.startswith("customer#"):
                found.append(pk.split("#", 1)[1])
        if not response.get("LastEvaluatedKey"):
            break
        args["ExclusiveStartKey"] = response["LastEvaluatedKey"]
    return sorted(set(found))


def entries(target: Target, open_kfid: str, external_userid: str, limit: int) -> tuple[list[dict[str, Any]], bool]:
    """The customer's latest ``limit`` session entries with this account, oldest first, and whether
    older ones exist."""
    table = messages_table(target)
    conv = keys.conversation(open_kfid, external_userid)
    items: list[dict[str, Any]] = []
    start: dict[str, Any] | None = None
    while len(items) < limit:
        page, start = query_index(table, "entries", "entry_of", conv, min(PAGE, limit - len(items)), True, start)
        items.extend(page)
        if not start:
            break
    more = bool(start) and bool(query_index(table, "entries", "entry_of", conv, 1, True, start)[0])
    items.reverse()
    return items, more


def entry_row(item: dict[str, Any]) -> dict[str, Any]:
    """An entry: when, its scene and scene_param and, from 视频号, the channel it came through."""
    try:
        raw = json.loads(item.get("raw") or "{}")
    except ValueError:
        raw = {}
    event = raw.get("event") if isinstance(raw, dict) else None
    event = event if isinstance(event, dict) else {}
    channels = event.get("wechat_channels")
    channels = channels if isinstance(channels, dict) else {}
    scene = item.get("scene", event.get("scene"))
    scene_param = item.get("scene_param", event.get("scene_param"))
    row: dict[str, Any] = {"msgid": item.get("msgid"), "send_time": item.get("send_time"),
                           "time": local_time(item.get("send_time")), "scene": scene or "",
                           "scene_param": scene_param or ""}
    if channels:
        row["wechat_channels"] = {k: channels[k] for k in ("nickname", "shop_nickname", "scene") if k in channels}
    return row


def channels_text(row: dict[str, Any]) -> str:
    channels = row.get("wechat_channels") or {}
    if not channels:
        return ""
    names = [f"{k} {channels[k]}" for k in ("nickname", "shop_nickname") if channels.get(k)]
    scene = channels.get("scene")
    where = CHANNELS_SCENES.get(scene, "") if isinstance(scene, int) else ""
    return "视频号 " + ", ".join(names or ["?"]) + (f" ({where})" if where else "")


def state_name(state: Any) -> str:
    try:
        return STATES[ServiceState(int(state))]
    except (TypeError, ValueError, KeyError):
        return "unknown" if state in (None, "") else f"state {state}"


def session_view(item: dict[str, Any] | None, now: float | None = None) -> dict[str, Any] | None:
    """The routing session as shown: its stored fields, the state's name and the send window."""
    if not item:
        return None
    view = {k: item[k] for k in SESSION_FIELDS if item.get(k) not in (None, "")}
    view["state_name"] = state_name(item.get("state"))
    window_at = item.get("window_at")
    if isinstance(window_at, int):
        closes = window_at + SEND_WINDOW
        view["window_closes_at"] = closes
        view["window_open"] = (time.time() if now is None else now) < closes
    return view


def _send_text(view: dict[str, Any]) -> str:
    if "window_closes_at" not in view:
        return "no customer message yet (no send window)"
    sends = int(view.get("sends") or 0)
    if view.get("window_open"):
        return f"{sends}/{SEND_LIMIT} used in the window, open until {local_time(view['window_closes_at'])}"
    return f"{sends}/{SEND_LIMIT} used; the window closed {local_time(view['window_closes_at'])}"


def look_up(target: Target, external_userids: list[str], accounts: list[str], limit: int) -> list[dict[str, Any]]:
    """Each customer's profile and, per account, their entries and routing session."""
    state = _state_table(target)
    progress = Progress("reading the customer's accounts", len(external_userids) * len(accounts))
    found = []
    for euid in external_userids:
        profile = _get(state, keys.customer(euid))
        per_account = []
        for open_kfid in accounts:
            items, more = entries(target, open_kfid, euid, limit)
            session = session_view(_get(state, keys.session(open_kfid, euid)))
            progress.update()
            if items or session:
                per_account.append({"open_kfid": open_kfid, "entries": [entry_row(i) for i in items],
                                    "more_entries": more, "session": session})
        found.append({"external_userid": euid,
                      "profile": {k: profile[k] for k in PROFILE_FIELDS if k in profile} if profile else None,
                      "accounts": per_account})
    progress.done()
    return found


def run(target: Target, external_userid: str | None, unionid: str | None, account: str | None,
        limit: int) -> dict[str, Any]:
    """What the command shows, as JSON; a CliError when nothing is stored."""
    if unionid:
        euids = by_unionid(target, unionid)
        if not euids:
            raise CliError(f"no customer profile carries unionid {unionid} (WeCom gives a profile a unionid only "
                           "when the corp has bound a WeChat developer account)")
    else:
        euids = [str(external_userid)]
    accounts = [account] if account else [str(a["open_kfid"]) for a in list_accounts(target)]
    customers = look_up(target, euids, accounts, limit)
    if not any(c["profile"] or c["accounts"] for c in customers):
        where = f"account {account}" if account else f"any of the {len(accounts)} kf account(s)"
        raise CliError(f"nothing stored of {', '.join(euids)}: no profile, and no entries or routing session "
                       f"with {where}")
    return {"unionid": unionid, "accounts": accounts, "customers": customers}


def _lines(pairs: list[tuple[str, Any]], indent: str) -> list[str]:
    shown = [(k, v) for k, v in pairs if v not in (None, "")]
    if not shown:
        return []
    label = max(len(k) for k, _ in shown)
    return [f"{indent}{pad(k, label)}  {v}" for k, v in shown]


def render(data: dict[str, Any]) -> str:
    out: list[str] = []
    customers = data["customers"]
    if data.get("unionid"):
        out.append(f"unionid {data['unionid']}: {len(customers)} customer(s)")
    for customer in customers:
        if out:
            out.append("")
        out.append(f"Customer {customer['external_userid']}")
        profile = customer["profile"]
        if profile:
            gender = profile.get("gender")
            out += _lines([("nickname", profile.get("nickname")),
                           ("gender", GENDERS.get(gender, str(gender)) if gender is not None else None),
                           ("unionid", profile.get("unionid")),
                           ("updated", local_time(profile["updated_at"]) if profile.get("updated_at") else None)], "  ")
        else:
            out.append("  (no stored profile)")
        shown = {a["open_kfid"] for a in customer["accounts"]}
        for account in customer["accounts"]:
            out += _account(account)
        others = [a for a in data["accounts"] if a not in shown]
        if others:
            if shown:
                out.append("")
            out.append(f"  no entries or routing session with {len(others)} other account(s): {', '.join(others)}")
    return "\n".join(out)


def _account(account: dict[str, Any]) -> list[str]:
    out = ["", f"  Account {account['open_kfid']}"]
    rows = account["entries"]
    if rows:
        note = " (older entries exist: raise --limit)" if account.get("more_entries") else ""
        out.append(f"    entries: {len(rows)}{note}")
        body = table(["time", "scene", "scene_param", "from"],
                     [[r["time"], r["scene"] or "-", r["scene_param"] or "-", channels_text(r) or "-"] for r in rows])
        out += ["      " + line for line in body.splitlines()]
    else:
        out.append("    entries: none stored")
    view = account.get("session")
    if not view:
        out.append("    session: none stored")
        return out
    last = view.get("last_servicer")
    if last and view.get("last_served_at"):
        last = f"{last} (at {local_time(view['last_served_at'])})"
    out.append(f"    session: {view['state_name']}" + (f" ({view['state']})" if "state" in view else ""))
    out += _lines([("servicer", view.get("servicer")), ("scene", view.get("scene")),
                   ("scene_param", view.get("scene_param")),
                   ("started", local_time(view["session_started"]) if view.get("session_started") else None),
                   ("last servicer", last), ("rating", view.get("rating")), ("sends", _send_text(view))], "      ")
    return out
