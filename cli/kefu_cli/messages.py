"""`kefu messages EXTERNAL_USERID`: a customer's stored conversation, oldest first, readable;
`kefu messages --account OPEN_KFID`: the account's recent conversations, newest first.

The account: ``--account OPEN_KFID``; without it, the corp's kf accounts (kf/account/list) are
looked up and, when there are several, the one conversation of this customer is found with one
small query per account on the MessagesTable's ``conversation`` index (no scan). Media are shown
as presigned S3 URLs of the stored objects. Kefu's own sends (``sender: "kefu"``) show as Kefu's,
with the rule that sent them; failed, pending and recalled messages say so.

The recent conversations are read from the ``account`` index newest first, page by page, keeping
the first (newest) item of each customer until ``limit`` customers are found.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from decimal import Decimal
from typing import Any

from kefu.store.messages import MessageStore
from kefu.wecom.models import Origin
from kefu_cli.output import Progress, pad, table, width
from kefu_cli.target import CliError, Target
from kefu_cli.wecom import list_accounts

PAGE = 200
MEDIA_TYPES = ("image", "voice", "video", "file")
CHANGE_TYPES = {1: "picked up from the waiting pool", 2: "transferred", 3: "ended", 4: "reopened"}
KEFU = "kefu"  # the ``sender`` of Kefu's own sends
SHORT = 60  # columns of a message summary in the list of conversations
# Fields of Kefu's sends and of a message's fate that a row keeps as they are stored.
KEPT = ("sender", "rule", "via", "cause", "send_state", "send_error", "fail_type", "recalled_at", "recalled_by")


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


def messages_table(target: Target) -> Any:
    name = target.output("MessagesTableName")
    return target.session().resource("dynamodb", endpoint_url=target.aws_endpoint or None).Table(name)


def query_index(table: Any, index: str, key: str, value: str, limit: int, newest_first: bool,
                start: dict[str, Any] | None = None) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """One page of an index of the MessagesTable, items with plain numbers."""
    from boto3.dynamodb.conditions import Key

    from kefu import tenancy
    from kefu.store.messages import shown

    args: dict[str, Any] = {"IndexName": index, "KeyConditionExpression": Key(key).eq(value),
                            "ScanIndexForward": not newest_first, "Limit": limit}
    if tenancy.provider_mode():  # --corp: the corp's own items only (the account index is by open_kfid)
        from boto3.dynamodb.conditions import Attr

        args["FilterExpression"] = Attr("corp").eq(tenancy.require())
    if start:
        args["ExclusiveStartKey"] = start
    response = table.query(**args)
    items = [{k: _plain(v) for k, v in shown(i).items()} for i in response.get("Items", [])]
    return items, response.get("LastEvaluatedKey")


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


def recent(target: Target, open_kfid: str, limit: int) -> tuple[list[dict[str, Any]], bool]:
    """The newest item of each of the account's ``limit`` most recent conversations, newest first,
    and whether older conversations may exist."""
    table = messages_table(target)
    latest: dict[str, dict[str, Any]] = {}
    start: dict[str, Any] | None = None
    read = 0
    progress = Progress("reading the account's messages")
    while True:
        page, start = query_index(table, "account", "open_kfid", open_kfid, PAGE, True, start)
        read += len(page)
        progress.update(read)
        more = keep_newest(page, latest, limit)
        if more or not start:
            break
        if len(latest) == limit:
            more = True  # pages left unread: older conversations may be among them
            break
    progress.done()
    return _whole(target, list(latest.values())), more


def batch_read(target: Target, name: str, wanted: list[dict[str, Any]],
               projection: str | None = None) -> list[dict[str, Any]]:
    """The items of table ``name`` at these keys (BatchGetItem, 100 keys a request, unprocessed
    keys asked again), with the operator's credentials and region."""
    dynamodb = target.session().resource("dynamodb", endpoint_url=target.aws_endpoint or None)
    found: list[dict[str, Any]] = []
    for start in range(0, len(wanted), 100):
        request: dict[str, Any] = {name: {"Keys": wanted[start:start + 100]}}
        if projection:
            request[name]["ProjectionExpression"] = projection
        for attempt in range(5):
            if attempt:
                time.sleep(0.2 * attempt)
            response = dynamodb.batch_get_item(RequestItems=request)
            found += response.get("Responses", {}).get(name, [])
            request = response.get("UnprocessedKeys") or {}
            if not request:
                break
    return found


def _whole(target: Target, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The items in full: the account index holds only who and when of each message."""
    wanted = [{"msgid": str(item["msgid"])} for item in items]
    found = {str(raw["msgid"]): {k: _plain(v) for k, v in raw.items()}
             for raw in batch_read(target, target.output("MessagesTableName"), wanted)}
    return [found.get(str(item["msgid"]), item) for item in items]


def keep_newest(page: list[dict[str, Any]], latest: dict[str, dict[str, Any]], limit: int) -> bool:
    """Add to ``latest`` the first item (newest first) of each customer not in it yet, up to ``limit``
    customers; True when the page holds a customer beyond them. Items of no customer (a servicer's
    status change) are passed over."""
    for item in page:
        euid = item.get("external_userid")
        if not euid or str(euid) in latest:
            continue
        if len(latest) >= limit:
            return True
        latest[str(euid)] = item
    return False


def conversation_rows(items: list[dict[str, Any]], nicknames: dict[str, str]) -> list[dict[str, Any]]:
    """One row per conversation: the customer, their nickname and their conversation's newest item."""
    return [{"external_userid": i.get("external_userid"), "nickname": nicknames.get(str(i.get("external_userid"))),
             "send_time": i.get("send_time"), "time": local_time(i.get("send_time")), "who": who(i),
             "msgid": i.get("msgid"), "msgtype": i.get("msgtype"), "text": summary(i), "marks": marks(i),
             **{k: i.get(k) for k in KEPT}}
            for i in items]


def shorten(text: str, columns: int = SHORT) -> str:
    """``text`` on one line, cut to ``columns`` terminal columns (with an ellipsis when cut)."""
    line = " ".join(text.split())
    if width(line) <= columns:
        return line
    kept = ""
    for char in line:
        if width(kept + char) > columns - 1:
            break
        kept += char
    return kept + "…"


def render_conversations(open_kfid: str, lines: list[dict[str, Any]], more: bool) -> str:
    zone = datetime.now().astimezone().strftime("%Z %z")
    head = f"Recent conversations of {open_kfid}: {len(lines)}, newest first, times in {zone}"
    if more:
        head += f" (older conversations may exist: raise --limit above {len(lines)})"
    if not lines:
        return head + "\n(no stored messages)"
    body = table(["customer", "nickname", "last activity", "last", "message"],
                 [[line["external_userid"], line["nickname"], line["time"], line["who"],
                   _with_marks(shorten(line["text"]), line["marks"])]
                  for line in lines])
    return head + "\n" + body


def who(item: dict[str, Any]) -> str:
    if item.get("sender") == KEFU:
        return f"Kefu ({item['rule']})" if item.get("rule") else "Kefu"
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
        if item.get("sender") == KEFU or item.get("media_key"):  # Kefu's upload; a stored object, no URL asked
            return f"[{msgtype}]"
        if item.get("media_state"):
            return f"[{msgtype}] (media not stored: {item.get('media_error') or item['media_state']})"
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
        "ca_link": ("link_url",),
    }
    if msgtype == "msgmenu":
        return _menu(body)
    if msgtype == "upgrade_service":
        return _upgrade(body)
    if msgtype in fields:
        parts = [f"{k} {_quote(body[k]) if isinstance(body[k], str) else body[k]}"
                 for k in fields[msgtype] if body.get(k) not in (None, "")]
        if msgtype == "merged_msg":
            parts.append(f"{len(body.get('item') or [])} message(s)")
        return f"[{msgtype}] " + ", ".join(parts)
    return f"[{msgtype}]"


def _menu(body: dict[str, Any]) -> str:
    """A menu: its head, its items (a link's URL, a mini program's appid) and its tail."""
    labels = []
    for entry in body.get("list") or []:
        if not isinstance(entry, dict):
            continue
        kind = str(entry.get("type") or "")
        found = entry.get(kind)
        line: dict[str, Any] = found if isinstance(found, dict) else {}
        label = str(line.get("content") or line.get("title") or "")
        if kind == "view" and line.get("url"):
            label += f" <{line['url']}>"
        elif kind == "miniprogram" and line.get("appid"):
            label += f" <miniprogram {line['appid']}>"
        labels.append(label)
    parts = [str(body.get("head_content") or ""), " | ".join(labels), str(body.get("tail_content") or "")]
    return "[menu] " + " / ".join(p for p in parts if p)


def _upgrade(body: dict[str, Any]) -> str:
    """An upgrade_service offer: to a servicer (member) or a group chat, with its wording."""
    kind = body.get("type")
    member, group = body.get("member"), body.get("groupchat")
    if isinstance(member, dict) or kind == 1:
        details = member if isinstance(member, dict) else {}
        offer = f"offers servicer {details.get('userid') or '?'}"
    elif isinstance(group, dict) or kind == 2:
        details = group if isinstance(group, dict) else {}
        offer = f"offers group chat {details.get('chat_id') or '?'}"
    else:
        details, offer = {}, f"type {kind}"
    wording = f": {_quote(details['wording'])}" if details.get("wording") else ""
    return f"[upgrade_service] {offer}{wording}"


def ai_of(item: dict[str, Any]) -> dict[str, Any] | None:
    """An AI answer's marks (kefu.answerer.Answer.marks): its model and the knowledge entries used."""
    ai = item.get("ai")
    if not isinstance(ai, dict):
        return None
    return {key: ([str(s) for s in value] if isinstance(value, list) else _plain(value)) for key, value in ai.items()}


def marks(item: dict[str, Any]) -> list[str]:
    """What became of a message: an AI answer (with its sources), a send that failed (and why) or
    is pending, a recall."""
    found = []
    ai = ai_of(item)
    if ai is not None:
        model = ai.get("model")
        source = "an entry as written" if model == "knowledge" else f"model {model}"
        found.append(f"[AI answer, {source}; sources: {', '.join(ai.get('sources') or []) or 'none'}]")
    state = item.get("send_state")
    fail_type = item.get("fail_type")
    if state == "failed" or fail_type is not None:
        why = [str(item["send_error"])] if item.get("send_error") else []
        if fail_type is not None and not (isinstance(fail_type, int) and fail_type < 0):  # -1: WeCom named none
            why.append(f"fail_type {fail_type}")
        found.append("[send failed" + (f": {', '.join(why)}]" if why else "]"))
    elif state == "pending":
        found.append("[send pending]")
    if item.get("recalled_at") is not None or item.get("recalled_by"):
        by = item.get("recalled_by")
        found.append(f"[recalled by {by}]" if by else "[recalled]")
    return found


def _with_marks(text: str, found: list[str]) -> str:
    return "  ".join([text, *found]) if found else text


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
             "text": summary(i, urls.get(str(i.get("msgid")))), "media_url": urls.get(str(i.get("msgid"))),
             "marks": marks(i), "ai": ai_of(i), **{k: i.get(k) for k in KEPT}}
            for i in items]


def render(open_kfid: str, external_userid: str, lines: list[dict[str, Any]], more: bool) -> str:
    zone = datetime.now().astimezone().strftime("%Z %z")
    head = f"Conversation of {external_userid} with {open_kfid}: {len(lines)} item(s), times in {zone}"
    if more:
        head += f" (older items exist: raise --limit above {len(lines)})"
    if not lines:
        return head + "\n(no stored messages)"
    who_width = max(width(line["who"]) for line in lines)
    return "\n".join([head, *(f"{line['time']}  {pad(line['who'], who_width)}  "
                              f"{_with_marks(line['text'], line.get('marks') or [])}" for line in lines)])
