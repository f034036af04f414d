"""`kefu stats`: the /stats JSON rendered as tables, the query it sends, SigV4 signing for the
deployed route (the whole command against an HTTP server: tests/integration/test_cli_stats_command.py)."""

from __future__ import annotations

from typing import Any

import pytest

from kefu_cli import stats
from kefu_cli.target import CliError

CANNED: dict[str, Any] = {
    "from": "2026-03-01", "to": "2026-03-02", "timezone": "Asia/Shanghai",
    "funnel": [
        {"day": "2026-03-02", "open_kfid": "wkSALES", "scene": "poster", "links_issued": 10, "sessions_entered": 6,
         "customers_wrote": 4, "sessions_assigned": 3, "sessions_ended": 2, "ratings": 1, "rating_avg": 5.0},
        {"day": "2026-03-01", "open_kfid": "wkSALES", "scene": "上海地铁", "links_issued": 5, "sessions_entered": 3,
         "customers_wrote": 2, "sessions_assigned": 1, "sessions_ended": 1, "ratings": 3, "rating_avg": 3.0},
        {"day": "2026-03-01", "open_kfid": "wkSALES", "scene": "", "links_issued": 0, "sessions_entered": 1,
         "customers_wrote": 1, "sessions_assigned": 0, "sessions_ended": 0, "ratings": 0, "rating_avg": None},
    ],
    "servicers": [
        {"day": "2026-03-01", "open_kfid": "wkSALES", "servicer": "alice", "sessions_assigned": 2, "messages": 9,
         "first_responses": 2, "first_response_avg_seconds": 30.0, "ratings": 1, "rating_avg": 4.0},
        {"day": "2026-03-02", "open_kfid": "wkSALES", "servicer": "bob", "sessions_assigned": 1, "messages": 3,
         "first_responses": 1, "first_response_avg_seconds": 3725, "ratings": 0, "rating_avg": None},
    ],
}


def test_funnel_table() -> None:
    text = stats.render(CANNED)
    lines = text.splitlines()
    assert lines[0] == "Kefu stats 2026-03-01 .. 2026-03-02 (Asia/Shanghai)"
    funnel = lines[lines.index("Scene funnel") + 1 : lines.index("Servicers") - 1]
    assert funnel[0].split() == ["day", "account", "scene", "links", "entered", "wrote", "assigned", "ended",
                                 "ratings", "avg", "rating", "upgrades", "send", "fails"]
    rows = [line.split() for line in funnel[2:]]
    assert rows[0] == ["2026-03-01", "wkSALES", "(none)", "0", "1", "1", "0", "0", "0", "-", "-", "-"]  # by day, scene
    assert rows[1] == ["2026-03-01", "wkSALES", "上海地铁", "5", "3", "2", "1", "1", "3", "3.00", "-", "-"]
    assert rows[2] == ["2026-03-02", "wkSALES", "poster", "10", "6", "4", "3", "2", "1", "5.00", "-", "-"]
    # totals: sums, and the rating average weighted by the number of ratings ((5*1 + 3*3) / 4 = 3.5)
    assert rows[3] == ["total", "15", "10", "7", "4", "3", "4", "3.50", "0", "0"]


def test_servicer_table() -> None:
    lines = stats.render(CANNED).splitlines()
    servicers = lines[lines.index("Servicers") + 1 :]
    assert [line.split() for line in servicers[2:]] == [
        ["2026-03-01", "wkSALES", "alice", "2", "9", "2", "30s", "1", "4.00", "-"],
        ["2026-03-02", "wkSALES", "bob", "1", "3", "1", "1h", "02m", "0", "-", "-"],
        # first response weighted by first responses: (30 * 2 + 3725) / 3 = 1262 s
        ["total", "3", "12", "3", "21m", "02s", "1", "4.00", "0"],
    ]


def test_columns_line_up_with_wide_characters() -> None:
    from kefu_cli.output import width

    lines = stats.render(CANNED).splitlines()
    funnel = lines[lines.index("Scene funnel") + 1 : lines.index("Servicers") - 1]
    ends = {width(line) for line in funnel}
    assert len(ends) == 1  # every row ends at the same column (numbers are right-aligned)


def test_empty_answer() -> None:
    text = stats.render({"from": "2026-03-01", "to": "2026-03-01", "funnel": [], "servicers": []})
    assert text.count("(no figures in this range)") == 2


@pytest.mark.parametrize(("seconds", "text"), [(None, "-"), (0, "0s"), (59.4, "59s"), (60, "1m 00s"),
                                               (3599, "59m 59s"), (3600, "1h 00m"), (90061, "25h 01m")])
def test_duration(seconds: Any, text: str) -> None:
    assert stats.duration(seconds) == text


def test_query_leaves_missing_days_to_the_route() -> None:
    assert stats.query(None, None, None, None) == {}  # the route's today, in the stack's timezone
    assert stats.query("2026-01-03", None, "home", "sales") == {"from": "2026-01-03", "scene": "home",
                                                                 "account": "sales"}
    assert stats.query("2026-01-01", "2026-01-03", None, None) == {"from": "2026-01-01", "to": "2026-01-03"}
    with pytest.raises(CliError, match="after") as error:
        stats.query("2026-03-05", "2026-03-01", None, None)
    assert error.value.exit_code == 2


def test_sigv4_signs_for_execute_api() -> None:
    from botocore.credentials import ReadOnlyCredentials

    headers = stats.sigv4_headers(ReadOnlyCredentials("AKIDEXAMPLE", "secret", "session-token"), "ap-east-1", "GET",
                                  "https://abc.execute-api.ap-east-1.amazonaws.com/stats?from=2026-03-01&to=2026-03-02")
    auth = headers["Authorization"]
    assert auth.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/ap-east-1/execute-api/aws4_request" in auth and "SignedHeaders=" in auth and "Signature=" in auth
    assert headers["X-Amz-Security-Token"] == "session-token" and "X-Amz-Date" in headers


# -- WeCom's own figures (T+1) and the disagreements ----------------------------------------------

WECOM: dict[str, Any] = {
    **CANNED, "wecom_timezone": "Asia/Shanghai", "not_compared": [],
    "wecom": [
        {"day": "2026-03-01", "open_kfid": "wkSALES", "servicer": "alice", "read_at": 1,
         "statistic": {"session_cnt": 4, "customer_cnt": 4, "customer_msg_cnt": 20, "reply_rate": 1,
                       "first_reply_average_sec": 95, "upgrade_service_customer_cnt": 0}},
        {"day": "2026-03-01", "open_kfid": "wkSALES", "servicer": None, "read_at": 1,
         "statistic": {"session_cnt": 12, "customer_cnt": 9, "customer_msg_cnt": 40, "upgrade_service_customer_cnt": 1,
                       "msg_rejected_customer_cnt": 0},
         "servicer_statistic": {"session_cnt": 4, "reply_rate": 0.75, "first_reply_average_sec": 17.5}},
        {"day": "2026-03-02", "open_kfid": "wkSALES", "servicer": None, "read_at": 1, "statistic": None,
         "servicer_statistic": {"session_cnt": 1}},
    ],
    "disagreements": [
        {"day": "2026-03-01", "open_kfid": "wkSALES", "servicer": None, "figure": "sessions", "wecom": 12,
         "kefu": {"customers_wrote": 4, "sessions_assigned": 1}, "tolerance": 2,
         "message": "WeCom counted 12 sessions in which customers wrote, Kefu saw customers write in 4."},
    ],
}


def _section(text: str, title: str) -> list[str]:
    lines = text.splitlines()
    start = lines.index(title) + 1
    end = next((i for i in range(start, len(lines)) if not lines[i]), len(lines))
    return lines[start:end]


def test_wecom_table_beside_kefus() -> None:
    text = stats.render(WECOM)
    assert _section(text, "Servicers")[-1].split()[0] == "total"  # Kefu's tables as before
    rows = [line.split() for line in _section(text, "WeCom (T+1, days in Asia/Shanghai)")]
    assert rows[0] == ["day", "account", "servicer", "sessions", "human", "customers", "cust", "msgs", "reply", "rate",
                       "first", "reply", "upgraded", "rejected"]
    assert rows[2:] == [
        # the account first: its sessions (get_corp_statistic), its servicers' together (get_servicer_statistic)
        ["2026-03-01", "wkSALES", "(account)", "12", "4", "9", "40", "75%", "18s", "1", "0"],
        ["2026-03-01", "wkSALES", "alice", "-", "4", "4", "20", "100%", "1m", "35s", "0", "-"],
        ["2026-03-02", "wkSALES", "(account)", "-", "1", "-", "-", "-", "-", "-", "-"],  # corp figures not in yet
    ]


def test_disagreements_name_both_figures_and_say_why() -> None:
    lines = _section(stats.render(WECOM), "Disagreements (WeCom vs Kefu)")
    assert lines == ["2026-03-01  wkSALES  (account)  sessions: WeCom 12, Kefu customers_wrote=4 sessions_assigned=1 "
                     "(tolerance 2)",
                     "  WeCom counted 12 sessions in which customers wrote, Kefu saw customers write in 4."]


def test_wecom_sections_when_nothing_disagrees_or_nothing_is_in() -> None:
    agreeing = stats.render({**WECOM, "disagreements": []})
    assert _section(agreeing, "Disagreements (WeCom vs Kefu)") == ["(they agree within tolerance)"]
    empty = stats.render({**WECOM, "wecom": [], "disagreements": []})
    assert _section(empty, "WeCom (T+1, days in Asia/Shanghai)") == ["(none yet: WeCom gives a day's figures the next day)"]
    assert _section(empty, "Disagreements (WeCom vs Kefu)") == ["(nothing to compare)"]
    elsewhere = stats.render({**WECOM, "timezone": "Europe/Berlin", "disagreements": [],
                              "not_compared": ["2026-03-01", "2026-03-02"]})
    assert _section(elsewhere, "Disagreements (WeCom vs Kefu)") == [
        "(not compared: 2026-03-01, 2026-03-02 - the stack counts days in Europe/Berlin, WeCom in Asia/Shanghai)"]


def test_a_stack_without_wecoms_figures_shows_kefus_only() -> None:
    assert "WeCom" not in stats.render(CANNED)
