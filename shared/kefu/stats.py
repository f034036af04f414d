"""Service statistics counted as events happen: the per-scene funnel and per-servicer figures.

Counters live in the StateTable, one item per day and (account, scene) or (account, servicer):
- funnel: "funnel#<day>" / "<open_kfid>#<scene>" - links_issued, sessions_entered,
  customers_wrote, sessions_assigned, sessions_ended, ratings, rating_sum, upgrades_offered
  (升级服务 offers), sends_failed (WeCom's msg_send_fail), ai_answered / ai_handed_off / ai_fallback
  (questions the AI answerer answered, handed to a person, or met with the fallback text)
- servicer: "servicer#<day>" / "<open_kfid>#<userid>" - sessions_assigned, messages,
  first_responses, first_response_seconds, ratings, rating_sum, upgrades_offered (offers made in
  sessions the servicer served)
Days are calendar days in the stats time zone (KEFU_STATS_TIMEZONE, default Asia/Shanghai, the
zone WeCom's own statistics use). Every count but links_issued is made through a marker keyed by
the event that caused it, in the same transaction, so a retried queue record never counts twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

from kefu.store import keys

NO_SCENE = "-"  # sessions entered without a scene (a plain link, a channel page)
FUNNEL_FIELDS = ("links_issued", "sessions_entered", "customers_wrote", "sessions_assigned", "sessions_ended",
                 "ratings", "rating_sum", "upgrades_offered", "sends_failed", "ai_answered", "ai_handed_off",
                 "ai_fallback")
SERVICER_FIELDS = ("sessions_assigned", "messages", "first_responses", "first_response_seconds", "ratings",
                   "rating_sum", "upgrades_offered")
MAX_DAYS = 92


@dataclass(frozen=True)
class Increment:
    pk: str
    sk: str
    field: str
    amount: int = 1
    labels: tuple[tuple[str, str], ...] = ()  # plain attributes written beside the counter


@cache
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def day_of(epoch: float, timezone: str) -> str:
    return datetime.fromtimestamp(epoch, _zone(timezone)).strftime("%Y-%m-%d")


def funnel(day: str, open_kfid: str, scene: str | None, field: str, amount: int = 1) -> Increment:
    scene = scene or NO_SCENE
    return Increment(keys.figures_pk("funnel", day), f"{open_kfid}#{scene}", field, amount,
                     (("day", day), ("open_kfid", open_kfid), ("scene", scene)))


def servicer(day: str, open_kfid: str, userid: str, field: str, amount: int = 1) -> Increment:
    return Increment(keys.figures_pk("servicer", day), f"{open_kfid}#{userid}", field, amount,
                     (("day", day), ("open_kfid", open_kfid), ("servicer", userid)))


def days(first: str, last: str) -> list[str]:
    """The days from ``first`` to ``last`` inclusive; ValueError names what is wrong."""
    try:
        start, end = date.fromisoformat(first), date.fromisoformat(last)
    except ValueError:
        raise ValueError("dates must be YYYY-MM-DD") from None
    if end < start:
        raise ValueError("'to' is before 'from'")
    if (end - start).days >= MAX_DAYS:
        raise ValueError(f"at most {MAX_DAYS} days per request")
    return [(start + timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]


def _average(total: Any, count: Any) -> float | None:
    return round(float(total) / int(count), 2) if count else None


def funnel_row(item: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"day": item["day"], "open_kfid": item["open_kfid"], "scene": item["scene"]}
    row.update({f: int(item.get(f, 0)) for f in FUNNEL_FIELDS if f != "rating_sum"})
    row["rating_avg"] = _average(item.get("rating_sum", 0), item.get("ratings", 0))
    return row


def servicer_row(item: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"day": item["day"], "open_kfid": item["open_kfid"], "servicer": item["servicer"]}
    row.update({f: int(item.get(f, 0)) for f in ("sessions_assigned", "messages", "first_responses", "ratings",
                                                 "upgrades_offered")})
    row["first_response_avg_seconds"] = _average(item.get("first_response_seconds", 0), item.get("first_responses", 0))
    row["rating_avg"] = _average(item.get("rating_sum", 0), item.get("ratings", 0))
    return row
