"""GET /stats: validate the query and assemble the per-day funnel and servicer rows, WeCom's own
figures of those days (T+1) and where the two disagree."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kefu import stats, wecom_stats
from kefu.errors import HttpError
from kefu.ids import CHANNELS_SCENE_PREFIX, is_alias, is_scene
from kefu.store.stats import StatsStore


class StatsQueryError(HttpError):
    """A /stats query parameter at fault (the error code names it)."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(400, f"invalid_{parameter}", message)
        self.parameter = parameter


def parse_query(query: Mapping[str, str], today: str) -> tuple[list[str], str | None, str | None]:
    first, last = query.get("from") or today, query.get("to") or query.get("from") or today
    try:
        days = stats.days(first, last)
    except ValueError as exc:
        raise StatsQueryError("from" if "from" not in query or "to" in str(exc) else "to",
                              f"from/to: {exc}") from None
    account = query.get("account") or None
    if account is not None and not is_alias(account):
        raise StatsQueryError("account", "account must be an open_kfid")
    scene = query.get("scene") or None
    if scene is not None and not (scene == "-" or is_scene(scene) or _is_channels_scene(scene)):
        raise StatsQueryError("scene", "scene is at most 32 characters of 0-9 a-z A-Z _ - ('-' for no scene), "
                                       "or channels:<视频号 nickname>")
    return days, account, scene


def _is_channels_scene(scene: str) -> bool:
    """A 视频号 entry's scene (kefu.wecom.models.EnterSessionEvent.entry_scene)."""
    name = scene[len(CHANNELS_SCENE_PREFIX):] if scene.startswith(CHANNELS_SCENE_PREFIX) else ""
    return 0 < len(name.encode()) <= 128 and name.isprintable()


def report(store: StatsStore, days: list[str], account: str | None, scene: str | None, timezone: str) -> dict[str, Any]:
    """Kefu's funnel and servicer rows, WeCom's rows of the same days (kefu.wecom_stats, T+1), and
    where the two disagree. A scene narrows Kefu's funnel only: WeCom counts per account, so the
    comparison always sets WeCom's figures against all of the account's scenes."""
    funnel, servicers, wecom = [], [], []
    every_scene: list[dict[str, Any]] = []
    every_servicer: list[dict[str, Any]] = []
    for day in days:
        rows = [stats.funnel_row(i) for i in store.day_items("funnel", day, account)]
        every_scene += rows
        funnel += [r for r in rows if scene is None or r["scene"] == scene]
        theirs = [wecom_stats.row(i) for i in store.day_items(wecom_stats.KIND, day, account)]
        wecom += theirs
        if scene is None or theirs:
            day_servicers = [stats.servicer_row(i) for i in store.day_items("servicer", day, account)]
            every_servicer += day_servicers
            if scene is None:
                servicers += day_servicers
    funnel.sort(key=lambda r: (r["day"], r["open_kfid"], r["scene"]))
    servicers.sort(key=lambda r: (r["day"], r["open_kfid"], r["servicer"]))
    wecom.sort(key=lambda r: (r["day"], r["open_kfid"], r["servicer"] is not None, r["servicer"] or ""))
    # A Kefu day is WeCom's day only where the stats timezone keeps China time's offset.
    comparable = [r for r in wecom if wecom_stats.zone_is_wecoms(timezone, r["day"])]
    return {"from": days[0], "to": days[-1], "timezone": timezone, "funnel": funnel, "servicers": servicers,
            "wecom": wecom, "wecom_timezone": wecom_stats.WECOM_ZONE,
            "disagreements": wecom_stats.disagreements(comparable, every_scene, every_servicer),
            "not_compared": sorted({r["day"] for r in wecom} - {r["day"] for r in comparable})}
