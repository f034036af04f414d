"""WeCom's own statistics beside Kefu's (kefu.wecom_stats): the days read and their timestamps,
the stored items, the scheduled read on in-memory ports, the comparison with Kefu's counters, the
/stats report, the function's handler and the template's promises for it."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from kefu import stats_report, wecom_stats
from kefu.wecom_stats import disagreements, tolerance
from local.template import Template
from tests.unit.lambda_env import LambdaContext, load_function
from tests.unit.test_template import TEMPLATE, _table_access

K = "wkSALES"


# -- days ----------------------------------------------------------------------------------------

def test_days_are_china_midnights() -> None:
    start = wecom_stats.day_start("2026-03-02")
    assert datetime.fromtimestamp(start, UTC) == datetime(2026, 3, 1, 16, 0, tzinfo=UTC)
    assert wecom_stats.stat_day(start) == "2026-03-02"
    assert wecom_stats.stat_day(start + 86399) == "2026-03-02"  # WeCom truncates to the day
    assert wecom_stats.stat_day("not a time") is None
    assert wecom_stats.window("2026-03-08") == [f"2026-03-0{d}" for d in range(1, 8)]  # up to yesterday
    assert wecom_stats.window("2026-03-01", 2) == ["2026-02-27", "2026-02-28"]


def test_only_zones_with_china_time_compare_days() -> None:
    assert wecom_stats.zone_is_wecoms("Asia/Shanghai", "2026-03-01")
    assert wecom_stats.zone_is_wecoms("Asia/Singapore", "2026-03-01")  # also UTC+8
    assert not wecom_stats.zone_is_wecoms("Europe/Berlin", "2026-03-01")


# -- storage shaping -------------------------------------------------------------------------------

CORP = {"session_cnt": 12, "customer_cnt": 9, "customer_msg_cnt": 40, "upgrade_service_customer_cnt": 1,
        "ai_session_reply_cnt": 12, "ai_transfer_rate": 0.75, "msg_rejected_customer_cnt": 0}
TOTAL = {"session_cnt": 8, "customer_cnt": 7, "customer_msg_cnt": 30, "reply_rate": 1, "first_reply_average_sec": 17.5,
         "satisfaction_investgate_cnt": 0}


def test_items_keep_wecoms_figures_next_to_kefus_counters() -> None:
    item = wecom_stats.account_item("2026-03-01", K, CORP, TOTAL, read_at=1_800_000_000)
    assert (item["pk"], item["sk"]) == ("wecom#2026-03-01", f"{K}#-")
    assert item["statistic"]["ai_transfer_rate"] == Decimal("0.75")  # boto3 takes no floats
    assert item["servicer_statistic"]["first_reply_average_sec"] == Decimal("17.5")
    assert wecom_stats.settled(item)
    assert wecom_stats.row(item) == {"day": "2026-03-01", "open_kfid": K, "servicer": None, "read_at": 1_800_000_000,
                                     "statistic": CORP, "servicer_statistic": TOTAL, "no_data": False}  # as given
    only_servicers = wecom_stats.account_item("2026-03-01", K, None, TOTAL, read_at=1)
    assert "statistic" not in only_servicers and not wecom_stats.settled(only_servicers)
    assert not wecom_stats.settled(None)
    quiet = wecom_stats.account_item("2026-03-01", K, None, None, read_at=1, no_data=True)
    assert wecom_stats.settled(quiet) and wecom_stats.row(quiet)["no_data"] is True
    alice = wecom_stats.servicer_item("2026-03-01", K, "alice", {"session_cnt": 3}, read_at=1)
    assert (alice["pk"], alice["sk"]) == ("wecom#2026-03-01", f"{K}#alice")
    assert wecom_stats.row(alice) == {"day": "2026-03-01", "open_kfid": K, "servicer": "alice", "read_at": 1,
                                      "statistic": {"session_cnt": 3}}


def test_a_statistic_list_by_day_leaves_out_days_not_computed() -> None:
    answer = [{"stat_time": wecom_stats.day_start("2026-03-01"), "statistic": {"session_cnt": 1}},
              {"stat_time": wecom_stats.day_start("2026-03-02")},  # not computed yet, or nothing to count
              "junk", {"statistic": {"session_cnt": 5}}]
    assert wecom_stats.by_day(answer) == {"2026-03-01": {"session_cnt": 1}}


# -- the scheduled read ----------------------------------------------------------------------------

@dataclass
class Ports:
    """WeCom's two statistics calls over canned figures, and the StateTable's items in a dict."""

    corp: dict[str | None, dict[str, dict[str, Any]]] = field(default_factory=dict)  # open_kfid (None: corp) -> day -> statistic
    per: dict[tuple[str, str | None], dict[str, dict[str, Any]]] = field(default_factory=dict)  # (kfid, userid)
    roster: dict[str, list[str]] = field(default_factory=dict)
    counted: dict[str, set[str]] = field(default_factory=dict)  # open_kfid -> servicers Kefu counted
    items: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    calls: list[tuple[str, str | None, str, str, str | None]] = field(default_factory=list)
    writes: list[list[str]] = field(default_factory=list)
    broken: set[str | None] = field(default_factory=set)

    def accounts(self) -> list[str]:
        return sorted(k for k in {*self.corp, *self.roster, *self.broken} if k is not None)

    def servicers(self, open_kfid: str) -> list[str]:
        return self.roster.get(open_kfid, [])

    def _answer(self, figures: dict[str, dict[str, Any]], start: int, end: int) -> list[dict[str, Any]]:
        days = [d for d in (wecom_stats.stat_day(t) for t in range(start, end + 1, 86400)) if d]
        return [{"stat_time": wecom_stats.day_start(d), **({"statistic": figures[d]} if d in figures else {})}
                for d in days]

    def corp_statistic(self, open_kfid: str | None, start: int, end: int) -> list[dict[str, Any]]:
        if open_kfid in self.broken:
            raise RuntimeError("errcode 45009")
        self.calls.append(("corp", open_kfid, wecom_stats.stat_day(start) or "", wecom_stats.stat_day(end) or "", None))
        return self._answer(self.corp.get(open_kfid, {}), start, end)

    def servicer_statistic(self, open_kfid: str, start: int, end: int, userid: str | None) -> list[dict[str, Any]]:
        self.calls.append(("servicer", open_kfid, wecom_stats.stat_day(start) or "", wecom_stats.stat_day(end) or "",
                           userid))
        return self._answer(self.per.get((open_kfid, userid), {}), start, end)

    def settled_days(self, open_kfid: str, days: list[str]) -> set[str]:
        return {d for d in days if wecom_stats.settled(self.items.get((f"wecom#{d}", f"{open_kfid}#-")))}

    def kefu_servicers(self, open_kfid: str, days: list[str]) -> set[str]:
        return self.counted.get(open_kfid, set())

    def put(self, items: list[dict[str, Any]]) -> None:
        self.writes.append([f"{i['pk']}/{i['sk']}" for i in items])
        self.items.update({(i["pk"], i["sk"]): i for i in items})


TODAY = "2026-03-08"  # the window: 03-01 .. 03-07
DAYS = wecom_stats.window(TODAY)
WHOLE = ("2026-03-01", "2026-03-07")


def test_a_run_reads_the_unsettled_days_and_stores_them_servicers_first() -> None:
    ports = Ports(corp={K: {"2026-03-07": CORP}}, per={(K, None): {"2026-03-07": TOTAL},
                                                        (K, "alice"): {"2026-03-07": {"session_cnt": 5}},
                                                        (K, "bob"): {"2026-03-07": {"session_cnt": 3}}},
                  roster={K: ["alice"]}, counted={K: {"bob"}})
    report = wecom_stats.run(ports, TODAY, read_at=7)
    # one call per kind and servicer covers the whole window (WeCom allows 31 days a call)
    assert ports.calls == [("corp", None, *WHOLE, None),  # how far WeCom has computed: the corp's figures
                           ("corp", K, *WHOLE, None), ("servicer", K, *WHOLE, None), ("servicer", K, *WHOLE, "alice"),
                           ("servicer", K, *WHOLE, "bob")]  # bob: Kefu counted him
    # 03-01..03-06 come before a day WeCom computed for the account: computed, nothing to count
    assert ports.writes == [[f"wecom#2026-03-07/{K}#alice", f"wecom#2026-03-07/{K}#bob"],
                            [f"wecom#{d}/{K}#-" for d in DAYS]]
    assert [ports.items[(f"wecom#{d}", f"{K}#-")].get("no_data", False) for d in DAYS] == [True] * 6 + [False]
    assert report.read == {K: DAYS} and report.pending == {}
    assert report.fields() == {"accounts": 1, "computed_through": None, "days_read": 7, "days_pending": 0,
                               "wecom_calls": 5, "failed_accounts": []}
    ports.calls.clear()
    assert wecom_stats.run(ports, TODAY, read_at=8).fields()["wecom_calls"] == 1  # all settled: the corp call only
    assert ports.calls == [("corp", None, *WHOLE, None)]


def test_a_day_wecom_computes_late_is_read_by_a_later_run() -> None:
    ports = Ports(corp={None: {d: CORP for d in DAYS[:-1]}, K: {d: CORP for d in DAYS[:-2]}}, roster={K: []})
    report = wecom_stats.run(ports, TODAY, read_at=1)  # yesterday not computed yet
    assert report.computed_through == "2026-03-06"
    assert report.read == {K: DAYS[:-1]} and report.pending == {K: DAYS[-1:]}
    assert ports.items[("wecom#2026-03-06", f"{K}#-")]["no_data"] is True  # computed: the corp has figures
    ports.calls.clear()
    ports.corp[None][DAYS[-1]] = ports.corp[K][DAYS[-1]] = {**CORP, "session_cnt": 13}  # WeCom computed it since
    report = wecom_stats.run(ports, TODAY, read_at=2)
    assert ports.calls[1] == ("corp", K, DAYS[-1], DAYS[-1], None)  # the missing day only
    assert report.read == {K: DAYS[-1:]} and ports.writes[-1] == [f"wecom#{DAYS[-1]}/{K}#-"]  # settled days stay
    assert ports.items[(f"wecom#{DAYS[-1]}", f"{K}#-")]["statistic"]["session_cnt"] == 13


def test_days_nobody_has_computed_stay_pending() -> None:
    ports = Ports(roster={K: ["alice"]})  # a quiet corp: WeCom gives nothing at all
    report = wecom_stats.run(ports, TODAY, read_at=1)
    assert report.pending == {K: DAYS} and report.read == {} and ports.items == {}


def test_a_rerun_overwrites_the_same_items() -> None:
    ports = Ports(corp={K: {"2026-03-07": CORP}}, per={(K, "alice"): {"2026-03-07": {"session_cnt": 5}}},
                  roster={K: ["alice"]})
    wecom_stats.run(ports, TODAY, read_at=1)
    first = copy.deepcopy(ports.items)
    ports.items[("wecom#2026-03-07", f"{K}#-")].pop("statistic")  # as if the day were unsettled again
    wecom_stats.run(ports, TODAY, read_at=1)
    assert ports.items == first


def test_an_account_that_fails_is_reported_and_the_others_read() -> None:
    logged: list[dict[str, Any]] = []
    ports = Ports(corp={"wkB": {"2026-03-07": CORP}}, broken={"wkA"})
    report = wecom_stats.run(ports, TODAY, read_at=1, log=lambda msg, **f: logged.append(f))
    assert report.failed == {"wkA": "RuntimeError: errcode 45009"} and report.read == {"wkB": DAYS}
    assert logged == [{"open_kfid": "wkA", "error": "RuntimeError: errcode 45009"}]
    ports = Ports(corp={"wkB": {"2026-03-07": CORP}}, broken={None})  # the corp-wide call fails: the accounts tell
    assert wecom_stats.run(ports, TODAY, read_at=1).read == {"wkB": DAYS}


# -- the comparison --------------------------------------------------------------------------------

def test_tolerance_is_two_or_a_tenth_of_the_larger_figure() -> None:
    assert tolerance(0, 0) == 2 and tolerance(10, 3) == 2 and tolerance(21, 5) == 3 and tolerance(100, 80) == 10


def _wecom(day: str = "2026-03-01", corp: dict[str, Any] | None = None, total: dict[str, Any] | None = None,
           servicers: dict[str, int] | None = None) -> list[dict[str, Any]]:
    rows = [{"day": day, "open_kfid": K, "servicer": None, "statistic": corp, "servicer_statistic": total}]
    rows += [{"day": day, "open_kfid": K, "servicer": u, "statistic": {"session_cnt": n}}
             for u, n in (servicers or {}).items()]
    return rows


def _funnel(wrote: int, assigned: int, day: str = "2026-03-01") -> list[dict[str, Any]]:
    # split over two scenes: the comparison adds every scene of the account
    return [{"day": day, "open_kfid": K, "scene": "home", "customers_wrote": wrote - wrote // 2,
             "sessions_assigned": assigned - assigned // 2},
            {"day": day, "open_kfid": K, "scene": "-", "customers_wrote": wrote // 2, "sessions_assigned": assigned // 2}]


def _servicers(counts: dict[str, int], day: str = "2026-03-01") -> list[dict[str, Any]]:
    return [{"day": day, "open_kfid": K, "servicer": u, "sessions_assigned": n} for u, n in counts.items()]


def test_figures_that_agree_within_their_definitions_raise_nothing() -> None:
    # WeCom's sessions between Kefu's assigned and wrote; human sessions and servicers equal or close
    wecom = _wecom(corp={"session_cnt": 10, "customer_cnt": 9}, total={"session_cnt": 8},
                   servicers={"alice": 5, "bob": 3})
    assert disagreements(wecom, _funnel(wrote=12, assigned=8), _servicers({"alice": 5, "bob": 2})) == []


def test_wecom_sessions_above_what_kefu_saw_written() -> None:
    found = disagreements(_wecom(corp={"session_cnt": 20}), _funnel(wrote=10, assigned=6), [])
    assert [(d["figure"], d["wecom"], d["kefu"], d["tolerance"]) for d in found] == [
        ("sessions", 20, {"customers_wrote": 10, "sessions_assigned": 6}, 2)]
    assert found[0]["servicer"] is None and found[0]["wecom_field"] == "statistic.session_cnt"
    assert "Kefu missed sessions" in found[0]["message"] and "20" in found[0]["message"]


def test_wecom_sessions_below_what_kefu_assigned() -> None:
    found = disagreements(_wecom(corp={"session_cnt": 3}), _funnel(wrote=10, assigned=8), [])
    assert [(d["figure"], d["wecom"]) for d in found] == [("sessions", 3)]
    assert "Kefu assigned 8" in found[0]["message"]


def test_human_sessions_customers_and_servicers() -> None:
    wecom = _wecom(corp={"session_cnt": 10, "customer_cnt": 15}, total={"session_cnt": 2},
                   servicers={"alice": 9})
    found = disagreements(wecom, _funnel(wrote=10, assigned=8), _servicers({"alice": 1, "bob": 7}))
    assert [(d["figure"], d["servicer"], d["wecom"], d["kefu"]) for d in found] == [
        ("customers", None, 15, {"customers_wrote": 10}),
        ("human_sessions", None, 2, {"sessions_assigned": 8}),
        ("servicer_sessions", "alice", 9, {"sessions_assigned": 1}),
        ("servicer_sessions", "bob", 0, {"sessions_assigned": 7}),  # WeCom has no row for bob: 0
    ]
    assert all(d["message"] for d in found)


def test_a_day_wecom_has_no_account_row_for_is_not_compared() -> None:
    assert disagreements([], _funnel(wrote=50, assigned=40), _servicers({"alice": 40})) == []
    # no servicer figures from WeCom that day: the servicers are not set against nothing
    assert disagreements(_wecom(corp={"session_cnt": 45}), _funnel(wrote=50, assigned=40),
                         _servicers({"alice": 40})) == []


def test_a_day_wecom_counted_nothing_for_is_set_against_kefus_counts() -> None:
    nothing = [{"day": "2026-03-01", "open_kfid": K, "servicer": None, "statistic": None, "servicer_statistic": None,
                "no_data": True}]
    assert disagreements(nothing, _funnel(wrote=2, assigned=0), []) == []  # unanswered: not WeCom's sessions
    found = disagreements(nothing, _funnel(wrote=6, assigned=5), _servicers({"alice": 5}))
    assert [(d["figure"], d["servicer"], d["wecom"]) for d in found] == [
        ("human_sessions", None, 0), ("sessions", None, 0), ("servicer_sessions", "alice", 0)]


# -- the /stats report -----------------------------------------------------------------------------

class Store:
    def __init__(self, items: dict[str, list[dict[str, Any]]]) -> None:
        self.items = items  # pk -> items

    def day_items(self, kind: str, day: str, open_kfid: str | None = None) -> list[dict[str, Any]]:
        return [i for i in self.items.get(f"{kind}#{day}", []) if open_kfid in (None, i["open_kfid"])]


def _store() -> Store:
    day = "2026-03-01"
    return Store({
        f"funnel#{day}": [{"day": day, "open_kfid": K, "scene": "home", "customers_wrote": 3, "sessions_assigned": 2},
                          {"day": day, "open_kfid": K, "scene": "poster", "customers_wrote": 2, "sessions_assigned": 1}],
        f"servicer#{day}": [{"day": day, "open_kfid": K, "servicer": "alice", "sessions_assigned": 3}],
        f"wecom#{day}": [wecom_stats.account_item(day, K, {"session_cnt": 30}, {"session_cnt": 3}, 1),
                         wecom_stats.servicer_item(day, K, "alice", {"session_cnt": 3, "reply_rate": 0.5}, 1)],
    })


def test_the_report_keeps_its_fields_and_adds_wecoms() -> None:
    body = stats_report.report(_store(), ["2026-03-01"], None, None, "Asia/Shanghai")  # type: ignore[arg-type]
    assert [r["scene"] for r in body["funnel"]] == ["home", "poster"] and body["servicers"][0]["servicer"] == "alice"
    assert [(r["servicer"], r["statistic"]["session_cnt"]) for r in body["wecom"]] == [(None, 30), ("alice", 3)]
    assert body["wecom"][1]["statistic"]["reply_rate"] == 0.5
    assert body["wecom_timezone"] == "Asia/Shanghai" and body["not_compared"] == []
    assert [(d["figure"], d["wecom"], d["kefu"]) for d in body["disagreements"]] == [
        ("sessions", 30, {"customers_wrote": 5, "sessions_assigned": 3})]


def test_a_scene_narrows_kefus_funnel_but_the_comparison_takes_every_scene() -> None:
    body = stats_report.report(_store(), ["2026-03-01"], None, "poster", "Asia/Shanghai")  # type: ignore[arg-type]
    assert [r["scene"] for r in body["funnel"]] == ["poster"] and body["servicers"] == []
    assert body["disagreements"][0]["kefu"] == {"customers_wrote": 5, "sessions_assigned": 3}


def test_days_of_another_timezone_are_shown_but_not_compared() -> None:
    body = stats_report.report(_store(), ["2026-03-01"], None, None, "Europe/Berlin")  # type: ignore[arg-type]
    assert len(body["wecom"]) == 2 and body["disagreements"] == [] and body["not_compared"] == ["2026-03-01"]


# -- the function --------------------------------------------------------------------------------

class FakeWeCom:
    """kf/account/list, kf/servicer/list and the two statistics calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def read(self, path: str, body: dict[str, Any] | None = None, *,
             params: dict[str, str] | None = None) -> dict[str, Any]:
        self.calls.append((path, dict(body or params or {})))
        if path == "kf/account/list":
            return {"account_list": [{"open_kfid": K, "manage_privilege": True},
                                     {"open_kfid": "wkOTHER", "manage_privilege": False}]}
        if path == "kf/servicer/list":
            return {"servicer_list": [{"userid": "alice", "status": 0}]}
        stat = {"stat_time": (body or {})["end_time"], "statistic": {"session_cnt": 4}}
        return {"statistic_list": [stat]}

    def write(self, path: str, body: dict[str, Any], *, retry_not_executed: bool = False) -> dict[str, Any]:
        raise AssertionError("the statistics read writes nothing to WeCom")


class FakeStore:
    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def settled_days(self, open_kfid: str, days: list[str]) -> set[str]:
        return set()

    def kefu_servicers(self, open_kfid: str, days: list[str]) -> set[str]:
        return set()

    def put(self, items: list[dict[str, Any]]) -> None:
        self.items += items


def test_the_handler_reads_the_accounts_the_app_manages(monkeypatch: pytest.MonkeyPatch) -> None:
    module = load_function("wecomstats", monkeypatch)
    wecom, store = FakeWeCom(), FakeStore()
    monkeypatch.setattr(module, "_wecom", wecom)
    monkeypatch.setattr(module, "store", store)
    # 2026-03-08 01:00 China time is 03-07 17:00 UTC: the window ends on China's yesterday, 03-07
    result = module.handler({"time": "2026-03-07T17:00:00Z"}, LambdaContext())
    assert result["accounts"] == 1 and result["failed_accounts"] == [] and result["wecom_calls"] == 4
    stats_calls = [(p, b) for p, b in wecom.calls if "statistic" in p]
    assert {b.get("open_kfid") for _, b in stats_calls} == {None, K}  # the corp's, never another app's account
    assert all(b["end_time"] == wecom_stats.day_start("2026-03-07") and b["start_time"] == wecom_stats.day_start("2026-03-01")
               for _, b in stats_calls)
    assert sorted({i["sk"] for i in store.items}) == [f"{K}#-", f"{K}#alice"]
    assert [i["day"] for i in store.items if i["sk"] == f"{K}#-" and "statistic" in i] == ["2026-03-07"]


# -- the template ----------------------------------------------------------------------------------

def test_the_read_reaches_only_wecoms_items_kefus_servicers_and_the_token() -> None:
    access = _table_access("WeComStatsFunction")
    assert access and all(keys is not None for _, keys in access)
    by_keys = {tuple(keys or []): actions for actions, keys in access}
    assert by_keys == {("wecom#*",): {"dynamodb:BatchGetItem", "dynamodb:BatchWriteItem"},
                       ("servicer#*",): {"dynamodb:Query"},
                       ("token#*",): {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"}}
    stats = _table_access("StatsFunction")
    assert any("wecom#*" in (keys or []) for _, keys in stats)  # /stats reads WeCom's figures


def test_the_read_runs_on_its_schedule_and_can_be_turned_off() -> None:
    resource = TEMPLATE.body["Resources"]["WeComStatsFunction"]
    assert resource["Condition"] == "HasWeComStats"
    assert TEMPLATE.body["Resources"]["WeComStatsLogGroup"]["Condition"] == "HasWeComStats"
    event = TEMPLATE.resolve(TEMPLATE.function_properties("WeComStatsFunction"))["Events"]["Read"]
    assert event["Type"] == "Schedule" and event["Properties"]["Schedule"] == "rate(6 hours)"
    assert TEMPLATE.condition("HasWeComStats")
    path = Path(__file__).resolve().parents[2] / "template.yaml"
    off = Template.load(path, overrides={"WeComCorpId": "ww", "WeComStatsSchedule": "off"})
    assert not off.condition("HasWeComStats")
    daily = Template.load(path, overrides={"WeComCorpId": "ww", "WeComStatsSchedule": "cron(0 23 * * ? *)"})
    props = daily.resolve(daily.function_properties("WeComStatsFunction"))
    assert props["Events"]["Read"]["Properties"]["Schedule"] == "cron(0 23 * * ? *)"
    with pytest.raises(ValueError):
        Template.load(path, overrides={"WeComCorpId": "ww", "WeComStatsSchedule": "daily"})
