"""WeCom's own statistics beside Kefu's: a scheduled read of kf/get_corp_statistic and
kf/get_servicer_statistic, stored per day, and where WeCom's figures and Kefu's disagree.

WeCom computes a day's figures the next day (T+1; its docs advise reading after 06:00 China
time), for days from yesterday back 180 days, at most 31 days per call; a day not yet computed, or
with nothing to count, comes without ``statistic``. Days are WeCom's calendar days in China time
(Asia/Shanghai): ``stat_time`` is that day's midnight.

Each run reads, per kf account the app manages, the days of the last ``WINDOW_DAYS`` (ending
yesterday) that are not settled yet, so a day WeCom computed late is read on a later run. Per
account and such days: one kf/get_corp_statistic (the account's figures), one
kf/get_servicer_statistic without a servicer (the account's servicers together) and one per
servicer (its current servicers, and any servicer Kefu counted on those days); one corp-wide
kf/get_corp_statistic per run tells how far WeCom has computed. The figures are stored as WeCom
gave them, in the StateTable beside Kefu's counters (kefu.stats):

- ``wecom#<day>`` / ``<open_kfid>#-`` - the account: ``statistic`` (get_corp_statistic) and
  ``servicer_statistic`` (get_servicer_statistic, all servicers), either absent when WeCom gave
  none; ``no_data`` when WeCom gave the account nothing for a day it has computed (a later day
  of the account, or of the corp, has figures), i.e. nothing happened there that day
- ``wecom#<day>`` / ``<open_kfid>#<userid>`` - a servicer: ``statistic`` (get_servicer_statistic)

A day is settled once its account item holds ``statistic`` or ``no_data``; settled days are
never written again. A re-read of an unsettled day overwrites the same items (idempotent),
servicers first and the account item last, so a run that fails half-way leaves the day unsettled
and the next run reads it again.

The comparison (``disagreements``) sets WeCom's figure of a day and account beside the Kefu figure
that counts the same thing, and reports a difference larger than the definitions explain (see
COMPARISONS and ``tolerance``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from kefu.store import keys

KIND = "wecom"  # the figures_pk kind: wecom#<day>
ACCOUNT = "-"  # the sk suffix of an account's item (no servicer)
WECOM_ZONE = "Asia/Shanghai"  # WeCom's statistics days
WINDOW_DAYS = 7  # days read back from yesterday: WeCom may compute a day late
MAX_SPAN_DAYS = 31  # WeCom's limit per call
TOLERANCE_ABSOLUTE = 2
TOLERANCE_RELATIVE = 0.10

CORP_FIELDS = ("session_cnt", "customer_cnt", "customer_msg_cnt", "upgrade_service_customer_cnt",
               "ai_session_reply_cnt", "ai_transfer_rate", "ai_knowledge_hit_rate", "msg_rejected_customer_cnt")
SERVICER_FIELDS = ("session_cnt", "customer_cnt", "customer_msg_cnt", "reply_rate", "first_reply_average_sec",
                   "satisfaction_investgate_cnt", "satisfaction_participation_rate", "satisfied_rate",
                   "middling_rate", "dissatisfied_rate", "upgrade_service_customer_cnt",
                   "upgrade_service_member_invite_cnt", "upgrade_service_member_customer_cnt",
                   "upgrade_service_groupchat_invite_cnt", "upgrade_service_groupchat_customer_cnt",
                   "msg_rejected_customer_cnt")


# -- days ----------------------------------------------------------------------------------------

def day_start(day: str) -> int:
    """The epoch of ``day``'s midnight in China time (WeCom's start_time / end_time / stat_time)."""
    return int(datetime.combine(date.fromisoformat(day), datetime.min.time(), ZoneInfo(WECOM_ZONE)).timestamp())


def stat_day(stat_time: Any) -> str | None:
    """The day of a ``stat_time`` (None when it is not a timestamp)."""
    try:
        return datetime.fromtimestamp(int(stat_time), ZoneInfo(WECOM_ZONE)).strftime("%Y-%m-%d")
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def window(today: str, days: int = WINDOW_DAYS) -> list[str]:
    """The ``days`` days before ``today``, oldest first (WeCom answers up to yesterday)."""
    last = date.fromisoformat(today)
    return [(last - timedelta(days=n)).isoformat() for n in range(days, 0, -1)]


def zone_is_wecoms(timezone: str, day: str) -> bool:
    """Whether ``day`` in ``timezone`` is WeCom's day (the same UTC offset as China time), so a
    Kefu day and a WeCom day of the same date cover the same hours."""
    noon = datetime.combine(date.fromisoformat(day), datetime.min.time().replace(hour=12))
    return noon.replace(tzinfo=ZoneInfo(timezone)).utcoffset() == noon.replace(tzinfo=ZoneInfo(WECOM_ZONE)).utcoffset()


# -- storage shaping -------------------------------------------------------------------------------

def _to_dynamo(value: Any) -> Any:
    """A WeCom figure as DynamoDB takes it (boto3 refuses floats: Decimal, exactly as written)."""
    if isinstance(value, bool) or value is None or isinstance(value, str | int):
        return value
    if isinstance(value, float):
        return Decimal(repr(value)) if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        return {str(k): _to_dynamo(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_dynamo(v) for v in value]
    return str(value)


def from_dynamo(value: Any) -> Any:
    """A stored figure back as JSON takes it (Decimal -> int or float)."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, Mapping):
        return {str(k): from_dynamo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_dynamo(v) for v in value]
    return value


def by_day(statistic_list: Iterable[Any]) -> dict[str, dict[str, Any]]:
    """A statistic_list as day -> statistic, leaving out the days WeCom gave no statistic for."""
    found: dict[str, dict[str, Any]] = {}
    for entry in statistic_list:
        if not isinstance(entry, Mapping):
            continue
        day, statistic = stat_day(entry.get("stat_time")), entry.get("statistic")
        if day is not None and isinstance(statistic, Mapping):
            found[day] = dict(statistic)
    return found


def account_item(day: str, open_kfid: str, statistic: Mapping[str, Any] | None,
                 servicer_statistic: Mapping[str, Any] | None, read_at: int, no_data: bool = False) -> dict[str, Any]:
    item: dict[str, Any] = {"pk": keys.figures_pk(KIND, day), "sk": f"{open_kfid}#{ACCOUNT}", "day": day,
                            "open_kfid": open_kfid, "servicer": ACCOUNT, "read_at": read_at}
    if no_data and statistic is None:
        item["no_data"] = True
    if statistic is not None:
        item["statistic"] = _to_dynamo(statistic)
    if servicer_statistic is not None:
        item["servicer_statistic"] = _to_dynamo(servicer_statistic)
    return item


def servicer_item(day: str, open_kfid: str, userid: str, statistic: Mapping[str, Any], read_at: int) -> dict[str, Any]:
    return {"pk": keys.figures_pk(KIND, day), "sk": f"{open_kfid}#{userid}", "day": day, "open_kfid": open_kfid,
            "servicer": userid, "statistic": _to_dynamo(statistic), "read_at": read_at}


def settled(item: Mapping[str, Any] | None) -> bool:
    """A day is read for good once WeCom has given the account's figures for it, or has computed
    the day and given the account nothing."""
    return item is not None and (isinstance(item.get("statistic"), Mapping) or bool(item.get("no_data")))


def row(item: Mapping[str, Any]) -> dict[str, Any]:
    """A stored item as /stats answers it: ``servicer`` None for the account's own row."""
    servicer = str(item.get("servicer") or ACCOUNT)
    out: dict[str, Any] = {"day": item["day"], "open_kfid": item["open_kfid"],
                           "servicer": None if servicer == ACCOUNT else servicer,
                           "read_at": from_dynamo(item.get("read_at")),
                           "statistic": from_dynamo(item["statistic"]) if isinstance(item.get("statistic"), Mapping)
                           else None}
    if servicer == ACCOUNT:
        total = item.get("servicer_statistic")
        out["servicer_statistic"] = from_dynamo(total) if isinstance(total, Mapping) else None
        out["no_data"] = bool(item.get("no_data"))
    return out


# -- the scheduled read ----------------------------------------------------------------------------

class ReadPorts(Protocol):
    """What a run needs: WeCom's calls and the StateTable's items."""

    def accounts(self) -> list[str]: ...
    def servicers(self, open_kfid: str) -> list[str]: ...
    def corp_statistic(self, open_kfid: str | None, start: int, end: int) -> list[dict[str, Any]]: ...
    def servicer_statistic(self, open_kfid: str, start: int, end: int,
                           userid: str | None) -> list[dict[str, Any]]: ...
    def settled_days(self, open_kfid: str, days: list[str]) -> set[str]: ...
    def kefu_servicers(self, open_kfid: str, days: list[str]) -> set[str]: ...
    def put(self, items: list[dict[str, Any]]) -> None: ...


@dataclass
class ReadReport:
    accounts: int = 0
    computed_through: str | None = None  # the last day WeCom has computed (the corp has figures)
    read: dict[str, list[str]] = field(default_factory=dict)  # open_kfid -> days settled by this run
    pending: dict[str, list[str]] = field(default_factory=dict)  # open_kfid -> days WeCom has not given yet
    calls: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # open_kfid -> the error

    def fields(self) -> dict[str, Any]:
        return {"accounts": self.accounts, "computed_through": self.computed_through,
                "days_read": sum(len(d) for d in self.read.values()),
                "days_pending": sum(len(d) for d in self.pending.values()), "wecom_calls": self.calls,
                "failed_accounts": sorted(self.failed)}


def read_account(ports: ReadPorts, open_kfid: str, missing: list[str], computed_through: str | None, read_at: int,
                 report: ReadReport) -> None:
    """Read and store WeCom's figures of ``open_kfid`` for the ``missing`` days (oldest first;
    one call per kind and servicer covers them all, and only they are written)."""
    start, end = day_start(missing[0]), day_start(missing[-1])
    report.calls += 2
    corp = by_day(ports.corp_statistic(open_kfid, start, end))
    total = by_day(ports.servicer_statistic(open_kfid, start, end, None))
    userids = sorted(set(ports.servicers(open_kfid)) | ports.kefu_servicers(open_kfid, missing))
    per_servicer: dict[str, dict[str, dict[str, Any]]] = {}
    for userid in userids:
        report.calls += 1
        per_servicer[userid] = by_day(ports.servicer_statistic(open_kfid, start, end, userid))
    # WeCom computes days in order: a day before one with figures (the account's or the corp's) is computed
    computed = max([d for d in (computed_through, *corp) if d is not None], default=None)
    servicer_items = [servicer_item(day, open_kfid, userid, statistic, read_at)
                      for userid, found in per_servicer.items() for day, statistic in found.items() if day in missing]
    account_items = [account_item(day, open_kfid, corp.get(day), total.get(day), read_at,
                                  no_data=computed is not None and day <= computed)
                     for day in missing if day in corp or day in total or (computed is not None and day <= computed)]
    ports.put(servicer_items)
    ports.put(account_items)  # last: the account's item settles the day
    done = [i["day"] for i in account_items if settled(i)]
    if done:
        report.read[open_kfid] = done
    waiting = [day for day in missing if day not in done]
    if waiting:
        report.pending[open_kfid] = waiting


def run(ports: ReadPorts, today: str, read_at: int, days: int = WINDOW_DAYS,
        log: Callable[..., None] | None = None) -> ReadReport:
    """One scheduled read: per account, the unsettled days of the ``days`` before ``today``
    (WeCom's day, China time). An account that fails is reported and the others are read."""
    report = ReadReport()
    span = window(today, min(days, MAX_SPAN_DAYS))
    try:
        report.calls += 1
        corp = by_day(ports.corp_statistic(None, day_start(span[0]), day_start(span[-1])))
        report.computed_through = max(corp, default=None)
    except Exception as exc:  # the accounts' own answers still tell
        if log is not None:
            log("WeCom's corp statistics not read", error=f"{type(exc).__name__}: {exc}")
    for open_kfid in ports.accounts():
        report.accounts += 1
        try:
            done = ports.settled_days(open_kfid, span)
            missing = [day for day in span if day not in done]
            if missing:
                read_account(ports, open_kfid, missing, report.computed_through, read_at, report)
        except Exception as exc:  # one account's failure leaves the others to read
            report.failed[open_kfid] = f"{type(exc).__name__}: {exc}"
            if log is not None:
                log("WeCom statistics not read", open_kfid=open_kfid, error=report.failed[open_kfid])
    return report


# -- the comparison --------------------------------------------------------------------------------

def tolerance(*figures: float) -> int:
    """The difference the definitions explain between two counts of the same day: sessions that
    span midnight, a session counted by one side on the day it began and by the other on the day
    it was assigned, a handful of sessions handled in WeCom's own app - at least
    TOLERANCE_ABSOLUTE, or TOLERANCE_RELATIVE of the larger figure."""
    return max(TOLERANCE_ABSOLUTE, math.ceil(TOLERANCE_RELATIVE * max((abs(f) for f in figures), default=0)))


@dataclass(frozen=True)
class Comparison:
    name: str
    wecom_field: str  # where WeCom's figure is, as /stats answers it
    kefu_field: str
    explains: str  # what the definitions let differ


COMPARISONS = {
    "sessions": Comparison(
        "sessions", "statistic.session_cnt", "customers_wrote, sessions_assigned",
        "WeCom's 咨询会话数 counts sessions in which the customer wrote and that were assigned to a servicer "
        "or to the 智能助手 (the API replying counts as the 智能助手); Kefu's customers_wrote counts every "
        "session it saw the customer write in, sessions_assigned those it gave a servicer. WeCom's figure "
        "lies between the two: above customers_wrote, Kefu did not see sessions WeCom had; below "
        "sessions_assigned, Kefu counted assignments WeCom did not."),
    "human_sessions": Comparison(
        "human_sessions", "servicer_statistic.session_cnt", "sessions_assigned",
        "WeCom's 接入人工会话数 (all servicers of the account) counts sessions in which the customer wrote "
        "and that reached a servicer, once per session (a transfer makes no new session); Kefu's "
        "sessions_assigned counts sessions Kefu assigned or saw assigned, once per session."),
    "customers": Comparison(
        "customers", "statistic.customer_cnt", "customers_wrote",
        "WeCom's 咨询客户数 counts each customer who wrote once a day; Kefu's customers_wrote counts each "
        "session a customer wrote in, so it is never smaller unless Kefu missed customers."),
    "servicer_sessions": Comparison(
        "servicer_sessions", "statistic.session_cnt", "sessions_assigned",
        "WeCom's 接入人工会话数 of one servicer counts that servicer's sessions in which the customer wrote; "
        "Kefu's sessions_assigned of the servicer counts the sessions assigned to them (a transferred "
        "session counts for each servicer who held it)."),
}


def _count(figures: Mapping[str, Any] | None, name: str) -> int | None:
    value = (figures or {}).get(name)
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None
    return int(value)


def _disagreement(kind: str, day: str, open_kfid: str, servicer: str | None, wecom: int, kefu: dict[str, int],
                  message: str) -> dict[str, Any]:
    comparison = COMPARISONS[kind]
    return {"day": day, "open_kfid": open_kfid, "servicer": servicer, "figure": kind,
            "wecom_field": comparison.wecom_field, "kefu_field": comparison.kefu_field,
            "wecom": wecom, "kefu": kefu, "tolerance": tolerance(wecom, *kefu.values()), "message": message}


def disagreements(wecom_rows: Sequence[Mapping[str, Any]], funnel_rows: Sequence[Mapping[str, Any]],
                  servicer_rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Where WeCom's figures (``row()``s) and Kefu's (kefu.stats funnel and servicer rows, every
    scene) of the same day and account differ beyond ``tolerance``. Only days WeCom has an
    account row for are compared (a ``no_data`` row: WeCom counted 0); a servicer WeCom or Kefu
    has no row for counts 0 there, on days WeCom gave servicer figures."""
    kefu_accounts: dict[tuple[str, str], dict[str, int]] = {}
    for r in funnel_rows:
        totals = kefu_accounts.setdefault((str(r["day"]), str(r["open_kfid"])),
                                          {"customers_wrote": 0, "sessions_assigned": 0})
        for name in totals:
            totals[name] += int(r.get(name) or 0)
    kefu_servicers: dict[tuple[str, str], dict[str, int]] = {}
    for r in servicer_rows:
        kefu_servicers.setdefault((str(r["day"]), str(r["open_kfid"])), {})[str(r["servicer"])] = \
            int(r.get("sessions_assigned") or 0)
    wecom_servicers: dict[tuple[str, str], dict[str, int]] = {}
    for r in wecom_rows:
        if r.get("servicer") is not None:
            count = _count(r.get("statistic"), "session_cnt")
            wecom_servicers.setdefault((str(r["day"]), str(r["open_kfid"])), {})[str(r["servicer"])] = count or 0

    found: list[dict[str, Any]] = []
    for r in wecom_rows:
        if r.get("servicer") is not None:
            continue
        day, account = str(r["day"]), str(r["open_kfid"])
        kefu = kefu_accounts.get((day, account), {"customers_wrote": 0, "sessions_assigned": 0})
        wrote, assigned = kefu["customers_wrote"], kefu["sessions_assigned"]
        nothing = bool(r.get("no_data"))  # WeCom computed the day and counted nothing for the account
        sessions = 0 if nothing else _count(r.get("statistic"), "session_cnt")
        if sessions is not None:
            if sessions - wrote > tolerance(sessions, wrote):
                found.append(_disagreement(
                    "sessions", day, account, None, sessions, {"customers_wrote": wrote, "sessions_assigned": assigned},
                    f"WeCom counted {sessions} sessions in which customers wrote, Kefu saw customers write in "
                    f"{wrote}: Kefu missed sessions (callbacks lost for longer than WeCom keeps messages, the sync "
                    f"off or failing, or sessions before Kefu served the account)."))
            elif assigned - sessions > tolerance(sessions, assigned):
                found.append(_disagreement(
                    "sessions", day, account, None, sessions, {"customers_wrote": wrote, "sessions_assigned": assigned},
                    f"Kefu assigned {assigned} sessions to servicers but WeCom counted only {sessions} sessions: "
                    f"Kefu counted assignments WeCom did not (sessions in which the customer never wrote, or "
                    f"assignments counted more than once)."))
        customers = 0 if nothing else _count(r.get("statistic"), "customer_cnt")
        if customers is not None and customers - wrote > tolerance(customers, wrote):
            found.append(_disagreement(
                "customers", day, account, None, customers, {"customers_wrote": wrote},
                f"WeCom counted {customers} customers who wrote, more than the {wrote} sessions Kefu saw a "
                f"customer write in: Kefu missed customers' messages."))
        human = 0 if nothing else _count(r.get("servicer_statistic"), "session_cnt")
        if human is not None and abs(human - assigned) > tolerance(human, assigned):
            more = "WeCom" if human > assigned else "Kefu"
            why = ("sessions servicers took in WeCom's app that Kefu did not see, or assignments Kefu missed"
                   if more == "WeCom" else
                   "assignments of sessions in which the customer never wrote, which WeCom does not count")
            found.append(_disagreement(
                "human_sessions", day, account, None, human, {"sessions_assigned": assigned},
                f"WeCom counted {human} sessions that reached a servicer, Kefu {assigned}: {more} counted more "
                f"({why})."))
        if human is None and not wecom_servicers.get((day, account)):
            continue  # WeCom gave no servicer figures for the day: nothing to set servicers against
        theirs, ours = wecom_servicers.get((day, account), {}), kefu_servicers.get((day, account), {})
        for userid in sorted(set(theirs) | set(ours)):
            w, k = theirs.get(userid, 0), ours.get(userid, 0)
            if abs(w - k) > tolerance(w, k):
                found.append(_disagreement(
                    "servicer_sessions", day, account, userid, w, {"sessions_assigned": k},
                    f"WeCom counted {w} sessions of {userid} in which the customer wrote, Kefu assigned {userid} "
                    f"{k}: " + ("sessions the servicer took or was given outside Kefu, or assignments Kefu missed."
                                if w > k else "Kefu's assignments the customer never wrote in, or transfers Kefu "
                                              "counted for this servicer.")))
    found.sort(key=lambda d: (d["day"], d["open_kfid"], d["servicer"] or "", d["figure"]))
    return found
