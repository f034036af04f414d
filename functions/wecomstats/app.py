"""WeCom statistics function: a scheduled read of WeCom's own figures (kf/get_corp_statistic,
kf/get_servicer_statistic) per account and servicer, stored beside Kefu's counters
(kefu.wecom_stats). Each run reads the days of the last week WeCom has not given yet, so a day
WeCom computes late is read on a later run; a re-read overwrites the same items."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from kefu import observability, wecom_stats
from kefu.config import Settings, load
from kefu.schedule import scheduled_at
from kefu.stats import day_of
from kefu.store.stats import WeComStatsStore
from kefu.wecom import kf
from kefu.wecom.client import WeComClient
from kefu.wecom.connect import connect

if TYPE_CHECKING:  # the type only: no import at cold start
    from aws_lambda_powertools.utilities.typing import LambdaContext

SERVICE = "wecomstats"
settings = load(Settings)
logger = observability.logger(SERVICE)
store = WeComStatsStore(settings.state_table)
_wecom: WeComClient | None = None


class Ports:
    """kefu.wecom_stats' view of WeCom and the StateTable."""

    def __init__(self, wecom: WeComClient, store: WeComStatsStore) -> None:
        self.wecom = wecom
        self.store = store

    def accounts(self) -> list[str]:
        # Accounts another app manages are not Kefu's to count (and WeCom may refuse their figures).
        return [str(a["open_kfid"]) for a in kf.account_list(self.wecom) if a.get("manage_privilege", True) is not False]

    def servicers(self, open_kfid: str) -> list[str]:
        return list(kf.duty_roster(self.wecom, open_kfid))

    def corp_statistic(self, open_kfid: str | None, start: int, end: int) -> list[dict[str, Any]]:
        return kf.corp_statistic(self.wecom, start, end, open_kfid)

    def servicer_statistic(self, open_kfid: str, start: int, end: int, userid: str | None) -> list[dict[str, Any]]:
        return kf.servicer_statistic(self.wecom, open_kfid, start, end, userid)

    def settled_days(self, open_kfid: str, days: list[str]) -> set[str]:
        return self.store.settled_days(open_kfid, days)

    def kefu_servicers(self, open_kfid: str, days: list[str]) -> set[str]:
        return self.store.kefu_servicers(open_kfid, days)

    def put(self, items: list[dict[str, Any]]) -> None:
        self.store.put(items)



@logger.inject_lambda_context(clear_state=True)
@observability.log_metrics(SERVICE)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    global _wecom
    if settings.mode == "provider":
        return _read_corps(event)
    if _wecom is None:
        _wecom = connect(settings, on_error=observability.wecom_error_counter(SERVICE))
    return _read(_wecom, event)


def _read_corps(event: dict[str, Any]) -> dict[str, Any]:
    """Provider mode: each corp served, in turn, under its own scope; a failure is logged and the
    other corps are read all the same."""
    from kefu import tenancy
    from kefu.provider import CorpNotServed, provider

    p = provider(settings, on_error=observability.wecom_error_counter(SERVICE))
    read: dict[str, Any] = {}
    for corp in p.tenants.active():
        with tenancy.serving(corp):
            try:
                read[corp] = _read(p.client(p.tenant(corp)), event)
            except CorpNotServed:
                continue
            except Exception as exc:
                logger.exception("WeCom statistics of a corp failed", extra={"error": f"{type(exc).__name__}: {exc}"})
                observability.count(SERVICE, "WeComStatsCorpFailures")
    return {"corps": read}


def _read(wecom: Any, event: dict[str, Any]) -> dict[str, Any]:
    at = scheduled_at(event)
    report = wecom_stats.run(Ports(wecom, store), day_of(at, wecom_stats.WECOM_ZONE), int(time.time()),
                             log=lambda msg, **fields: logger.warning(msg, extra=fields))
    logger.info("WeCom statistics read", extra=report.fields())
    observability.count(SERVICE, "WeComStatsDaysRead", sum(len(d) for d in report.read.values()))
    if report.failed:
        observability.count(SERVICE, "WeComStatsAccountFailures", len(report.failed))
    return report.fields()
