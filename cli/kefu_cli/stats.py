"""`kefu stats`: GET /stats as tables - the scene funnel per day and account, and per servicer;
WeCom's own figures of the same days (T+1), and where WeCom's and Kefu's disagree.

Deployed, the route is protected with AWS_IAM: the request is signed with SigV4 (service
execute-api) using the caller's AWS credentials. The local stack serves it without auth.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any
from urllib.parse import urlencode

from kefu_cli.api import error_detail, request_headers
from kefu_cli.api import sigv4_headers as sigv4_headers  # where it was first defined
from kefu_cli.output import table
from kefu_cli.target import CliError, Target

FUNNEL = [("day", "day"), ("open_kfid", "account"), ("scene", "scene"), ("links_issued", "links"),
          ("sessions_entered", "entered"), ("customers_wrote", "wrote"), ("sessions_assigned", "assigned"),
          ("sessions_ended", "ended"), ("ratings", "ratings"), ("rating_avg", "avg rating"),
          ("upgrades_offered", "upgrades"), ("sends_failed", "send fails")]
# The AI answerer's columns, shown when some row of the range has an AI figure.
AI_FUNNEL = [("ai_answered", "ai answered"), ("ai_handed_off", "ai handed off"), ("ai_fallback", "ai fallback")]
SERVICERS = [("day", "day"), ("open_kfid", "account"), ("servicer", "servicer"),
             ("sessions_assigned", "assigned"), ("messages", "messages"), ("first_responses", "first resp"),
             ("first_response_avg_seconds", "avg first resp"), ("ratings", "ratings"), ("rating_avg", "avg rating"),
             ("upgrades_offered", "upgrades")]
KEYS = 3  # the leading columns that name a row; the rest are figures
# WeCom's figures (kefu.wecom_stats): an account's row holds get_corp_statistic ("statistic") and the
# account's servicers together ("servicer_statistic"); a servicer's row its own "statistic".
WECOM = ["day", "account", "servicer", "sessions", "human", "customers", "cust msgs", "reply rate", "first reply",
         "upgraded", "rejected"]
ACCOUNT_ROW = "(account)"


def parse_day(text: str) -> str:
    """argparse type of --from/--to: a calendar day written YYYY-MM-DD."""
    import argparse

    try:
        if len(text) == 10:
            return date.fromisoformat(text).isoformat()
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"{text!r} is not a day as YYYY-MM-DD")


def query(day_from: str | None, day_to: str | None, scene: str | None, account: str | None) -> dict[str, str]:
    """The /stats query. Days left out are the route's to choose: no day = today, --from alone =
    that day (in the stack's statistics timezone, which may not be this machine's)."""
    if day_from and day_to and day_from > day_to:
        raise CliError(f"--from {day_from} is after --to {day_to}", exit_code=2)
    params = {"from": day_from, "to": day_to, "scene": scene, "account": account}
    return {k: v for k, v in params.items() if v}


def fetch(target: Target, http: Any, params: Mapping[str, str]) -> dict[str, Any]:
    url = target.url("/stats", "StatsUrl") + "?" + urlencode(params)
    headers = request_headers(target, "GET", url, "GET /stats")
    response = http.get(url, headers=headers)
    if response.status_code != 200:
        detail = error_detail(response)
        hint = ""
        if response.status_code == 403 and not target.local:
            hint = " (the caller needs execute-api:Invoke on the stack's HTTP API)"
        elif response.status_code == 404:
            hint = " (this stack has no /stats route: deploy the current template.yaml)"
        raise CliError(f"GET /stats answered {response.status_code}: {detail}{hint}")
    data = response.json()
    if not isinstance(data, dict):
        raise CliError("GET /stats did not answer a JSON object")
    return data


def _num(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


def _weighted(rows: list[Mapping[str, Any]], value: str, weight: str) -> float | None:
    total = sum(_num(r.get(weight)) for r in rows)
    if not total:
        return None
    return sum(_num(r.get(value)) * _num(r.get(weight)) for r in rows if r.get(value) is not None) / total


def duration(seconds: Any) -> str:
    if not isinstance(seconds, int | float):
        return "-"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def _cells(row: Mapping[str, Any], columns: list[tuple[str, str]]) -> list[Any]:
    cells = []
    for key, _ in columns:
        value = row.get(key)
        if key == "first_response_avg_seconds":
            value = duration(value)
        elif key == "rating_avg" and isinstance(value, int | float):
            value = f"{value:.2f}"
        elif key in ("scene", "servicer") and value == "" and not row.get("_total"):
            value = "(none)"
        cells.append(value)
    return cells


def _table(rows: Sequence[Mapping[str, Any]], columns: list[tuple[str, str]], averages: dict[str, str]) -> str:
    ordered = sorted(rows, key=lambda r: tuple(str(r.get(k) or "") for k, _ in columns[:KEYS]))
    body = [_cells(r, columns) for r in ordered]
    if len(ordered) > 1:
        total: dict[str, Any] = {"_total": True, "day": "total", "open_kfid": "", columns[2][0]: ""}
        for key, _ in columns[KEYS:]:
            if key in averages:
                total[key] = _weighted(ordered, key, averages[key])
            else:
                total[key] = int(sum(_num(r.get(key)) for r in ordered))
        body.append(_cells(total, columns))
    return table([label for _, label in columns], body, right=range(KEYS, len(columns)))


def _rate(value: Any) -> Any:
    return f"{value:.0%}" if isinstance(value, int | float) and not isinstance(value, bool) else None


def _figures(row: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = row.get(key)
    return value if isinstance(value, dict) else {}


def _wecom_cells(row: Mapping[str, Any]) -> list[Any]:
    own = _figures(row, "statistic")
    if row.get("no_data"):  # WeCom computed the day and counted nothing for the account
        return [row.get("day"), row.get("open_kfid"), ACCOUNT_ROW, 0, 0, 0, 0, None, None, 0, 0]
    if row.get("servicer") is None:  # the account: sessions from the account, service from its servicers
        name, sessions, service = ACCOUNT_ROW, own.get("session_cnt"), _figures(row, "servicer_statistic")
        human = service.get("session_cnt")
    else:  # a servicer: every session of theirs reached a human
        name, sessions, human, service = row["servicer"], None, own.get("session_cnt"), own
    first = service.get("first_reply_average_sec")
    return [row.get("day"), row.get("open_kfid"), name, sessions, human, own.get("customer_cnt"),
            own.get("customer_msg_cnt"), _rate(service.get("reply_rate")), duration(first) if first is not None else None,
            own.get("upgrade_service_customer_cnt"), own.get("msg_rejected_customer_cnt")]


def _wecom_table(rows: Sequence[Mapping[str, Any]]) -> str:
    ordered = sorted(rows, key=lambda r: (str(r.get("day")), str(r.get("open_kfid")), r.get("servicer") is not None,
                                          str(r.get("servicer") or "")))
    return table(WECOM, [_wecom_cells(r) for r in ordered], right=range(KEYS, len(WECOM)))


def _disagreement_lines(items: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = []
    for d in sorted(items, key=lambda d: (str(d.get("day")), str(d.get("open_kfid")), str(d.get("servicer") or ""))):
        kefu = d.get("kefu")
        ours = " ".join(f"{k}={v}" for k, v in kefu.items()) if isinstance(kefu, dict) else str(kefu)
        who = d.get("servicer") or ACCOUNT_ROW
        lines.append(f"{d.get('day')}  {d.get('open_kfid')}  {who}  {d.get('figure')}: WeCom {d.get('wecom')}, "
                     f"Kefu {ours} (tolerance {d.get('tolerance')})")
        lines.append(f"  {d.get('message')}")
    return lines


def render_wecom(data: Mapping[str, Any]) -> list[str]:
    """The WeCom table and the disagreements (nothing from a stack whose /stats predates them)."""
    if "wecom" not in data:
        return []
    rows = [r for r in data.get("wecom") or [] if isinstance(r, dict)]
    zone = data.get("wecom_timezone") or "Asia/Shanghai"
    lines = ["", f"WeCom (T+1, days in {zone})"]
    lines.append(_wecom_table(rows) if rows else "(none yet: WeCom gives a day's figures the next day)")
    found = [d for d in data.get("disagreements") or [] if isinstance(d, dict)]
    lines += ["", "Disagreements (WeCom vs Kefu)"]
    skipped = [str(d) for d in data.get("not_compared") or []]
    if skipped:
        lines.append(f"(not compared: {', '.join(skipped)} - the stack counts days in {data.get('timezone')}, "
                     f"WeCom in {zone})")
    if found:
        lines += _disagreement_lines(found)
    elif not skipped:
        lines.append("(they agree within tolerance)" if rows else "(nothing to compare)")
    return lines


def render(data: Mapping[str, Any]) -> str:
    funnel = [r for r in data.get("funnel") or [] if isinstance(r, dict)]
    servicers = [r for r in data.get("servicers") or [] if isinstance(r, dict)]
    zone = f" ({data['timezone']})" if data.get("timezone") else ""
    lines = [f"Kefu stats {data.get('from', '?')} .. {data.get('to', '?')}{zone}", "", "Scene funnel"]
    columns = FUNNEL + AI_FUNNEL if any(row.get(key) for row in funnel for key, _ in AI_FUNNEL) else FUNNEL
    lines.append(_table(funnel, columns, {"rating_avg": "ratings"}) if funnel else "(no figures in this range)")
    lines += ["", "Servicers"]
    lines.append(_table(servicers, SERVICERS, {"rating_avg": "ratings",
                                               "first_response_avg_seconds": "first_responses"})
                 if servicers else "(no figures in this range)")
    lines += render_wecom(data)
    return "\n".join(lines)
