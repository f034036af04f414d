"""`kefu messages EXTERNAL_USERID`: a customer's stored conversation, oldest first, readable.

The account: ``--account OPEN_KFID``; without it, the corp's kf accounts (kf/account/list) are
looked up and, when there are several, the one conversation of this customer is found with one
small query per account on the MessagesTable's ``conversation`` index (no scan). Media are shown
as presigned S3 URLs of the stored objects.
"""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Any

from kefu.store.messages import MessageStore
from kefu.wecom.models import Origin
from kefu_cli.output import Progress, pad
from kefu_cli.target import CliError, Target
from kefu_cli.wecom import list_accounts

PAGE = 200
MEDIA_TYPES = ("image", "voice", "video", "file")
CHANGE_TYPES = {1: "picked up from the waiting pool", 2: "transferred", 3: "ended", 4: "reopened"}


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def _store(target: Target) -> MessageStore:
    """The deployment's MessageStore, read with the operator's credentials and region."""
    name = target.output("MessagesTableName")
    table = target.session().resource("dynamodb", endpoint_url=target.aws_endpoint or None).Table(name)
    return MessageStore(name, table)


def find_account(target: Target, external_userid: str) -> str:
    accounts = [str(a["open_kfid"]) for a in list_accounts(target)]
    if not accounts:
        raise CliError("the corp has no kf account")
    if len(accounts) == 1:
        return accounts[0]
    store = _store(target)
    progress = Progress("looking for the customer in each account", len(accounts))
    found = []
    for open_kfid in accounts:
        if store.conversation(open_kfid, external_userid, limit=1)[0]:
            found.append(open_kfid)
        progress.update()
    progress.done()
    if len(found) == 1:
        return found[0]
    if not found:
        raise CliError(f"no stored messages of {external_userid} in any of the {len(accounts)} kf accounts")
    raise CliError(f"{external_userid} wrote to {len(found)} accounts ({', '.join(found)}); give --account OPEN_KFID")


def fetch(target: Target, open_kfid: str, external_userid: str, limit: int) -> tuple[list[dict[str, Any]], bool]:
    """The latest ``limit`` items of the conversation, oldest first, and whether older ones exist."""
    store = _store(target)
    items: list[dict[str, Any]] = []
    start = None
    progress = Progress("reading messages")
    while len(items) < limit:
        page, start = store.conversation(open_kfid, external_userid, min(PAGE, limit - len(items)), True, start)
        items.extend({k: _plain(v) for k, v in i.items()} for i in page)
        progress.update(len(items))
        if not start:
            break
    progress.done()
    more = bool(start) and bool(store.conversation(open_kfid, external_userid, 1, True, start)[0])
    items.reverse()
    return items, more


def who(item: dict[str, Any]) -> str:
    origin = item.get("origin")
    if origin == Origin.CUSTOMER:
        return "customer"
    if origin == Origin.SERVICER:
        servicer = item.get("servicer_userid") or _raw(item).get("servicer_userid")
        return f"servicer {servicer}" if servicer else "servicer"
    if origin == Origin.SYSTEM or item.get("msgtype") == "event":
        return "event"
    return "?"


def _raw(item: dict[str, Any]) -> dict[str, Any]:
    try:
        raw = json.loads(item.get("raw") or "{}")
    except ValueError:
        return {}
    return raw if isinstance(raw, dict) else {}


def _quote(text: Any) -> str:
    return json.dumps(str(text), ensure_ascii=False)


def summary(item: dict[str, Any], media_url: str | None = None) -> str:
    """One line saying what the item is: the text, a media link, or the event and its details."""
    raw = _raw(item)
    msgtype = str(item.get("msgtype") or raw.get("msgtype") or "unknown")
    found = raw.get(msgtype)
    body: dict[str, Any] = found if isinstance(found, dict) else {}
    if msgtype == "text":
        text = str(body.get("content", ""))
        return f"{text}  (menu click {body['menu_id']})" if body.get("menu_id") else text
    if msgtype in MEDIA_TYPES:
        if media_url:
            return f"[{msgtype}] {media_url}"
        return f"[{msgtype}] (media not stored yet)" if body.get("media_id") else f"[{msgtype}]"
    if msgtype == "event":
        event = raw.get("event")
        return _event(event if isinstance(event, dict) else {})
    fields: dict[str, tuple[str, ...]] = {
        "location": ("name", "address", "latitude", "longitude"),
        "link": ("title", "url"),
        "business_card": ("userid",),
        "miniprogram": ("title", "appid", "pagepath"),
        "channels_shop_product": ("title", "sales_price", "shop_nickname"),
        "channels_shop_order": ("order_id", "product_titles", "price_wording", "state"),
        "merged_msg": ("title",),
        "channels": ("nickname", "title"),
    }
    if msgtype == "msgmenu":
        entries = [e.get(e.get("type", ""), {}) for e in body.get("list") or [] if isinstance(e, dict)]
        labels = [str(e.get("content") or e.get("title") or "") for e in entries if isinstance(e, dict)]
        return f"[menu] {body.get('head_content') or ''} {' | '.join(labels)}".rstrip()
    if msgtype in fields:
        parts = [f"{k} {_quote(body[k]) if isinstance(body[k], str) else body[k]}"
                 for k in fields[msgtype] if body.get(k) not in (None, "")]
        if msgtype == "merged_msg":
            parts.append(f"{len(body.get('item') or [])} message(s)")
        return f"[{msgtype}] " + ", ".join(parts)
    return f"[{msgtype}]"


def _event(event: dict[str, Any]) -> str:
    kind = str(event.get("event_type") or "event")
    details: list[str] = []
    if kind == "enter_session":
        details.append(f"scene {_quote(event.get('scene') or '')}")
        if event.get("scene_param"):
            details.append(f"scene_param {_quote(event['scene_param'])}")
        channels = event.get("wechat_channels")
        if isinstance(channels, dict) and (channels.get("nickname") or channels.get("shop_nickname")):
            details.append(f"from channels {_quote(channels.get('nickname') or channels.get('shop_nickname'))}")
    elif kind == "session_status_change":
        change = event.get("change_type")
        details.append(CHANGE_TYPES.get(change, f"change_type {change}") if isinstance(change, int) else str(change))
        if event.get("old_servicer_userid"):
            details.append(f"from {event['old_servicer_userid']}")
        if event.get("new_servicer_userid"):
            details.append(f"to {event['new_servicer_userid']}")
    elif kind == "servicer_status_change":
        status = {1: "receiving", 2: "stopped"}.get(int(event.get("status") or 0), f"status {event.get('status')}")
        details.append(f"{event.get('servicer_userid', '')} {status}".strip())
    elif kind == "msg_send_fail":
        details.append(f"message {event.get('fail_msgid', '')} not delivered (fail_type {event.get('fail_type')})")
    elif kind in ("user_recall_msg", "servicer_recall_msg"):
        details.append(f"recalled {event.get('recall_msgid', '')}")
    elif kind == "reject_customer_msg_switch_change":
        details.append(f"{event.get('servicer_userid', '')} reject_switch {event.get('reject_switch')}".strip())
    return kind + (": " + ", ".join(d for d in details if d) if any(details) else "")


def local_time(send_time: Any) -> str:
    try:
        return datetime.fromtimestamp(int(send_time)).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError, OverflowError, OSError):
        return "????-??-?? ??:??:??"


def media_urls(target: Target, items: list[dict[str, Any]], expires: int) -> dict[str, str]:
    keyed = [i for i in items if i.get("media_key")]
    if not keyed:
        return {}
    s3 = target.client("s3")
    bucket = target.output("MediaBucketName")
    return {str(i["msgid"]): s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": i["media_key"]},
                                                         ExpiresIn=expires) for i in keyed}


def rows(items: list[dict[str, Any]], urls: dict[str, str]) -> list[dict[str, Any]]:
    return [{"msgid": i.get("msgid"), "send_time": i.get("send_time"), "time": local_time(i.get("send_time")),
             "who": who(i), "origin": i.get("origin"), "msgtype": i.get("msgtype"),
             "text": summary(i, urls.get(str(i.get("msgid")))), "media_url": urls.get(str(i.get("msgid")))}
            for i in items]


def render(open_kfid: str, external_userid: str, lines: list[dict[str, Any]], more: bool) -> str:
    zone = datetime.now().astimezone().strftime("%Z %z")
    head = f"Conversation of {external_userid} with {open_kfid}: {len(lines)} item(s), times in {zone}"
    if more:
        head += f" (older items exist: raise --limit above {len(lines)})"
    if not lines:
        return head + "\n(no stored messages)"
    who_width = max(len(line["who"]) for line in lines)
    return "\n".join([head, *(f"{line['time']}  {pad(line['who'], who_width)}  {line['text']}" for line in lines)])
