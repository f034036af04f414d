"""The local stack's console: JSON log lines kept whole in a file and shown condensed."""

from __future__ import annotations


def test_the_local_console_condenses_a_log_line_and_keeps_the_whole_in_its_file(tmp_path) -> None:
    import io
    import json as _json

    from local.console import Console, condense

    record = {"level": "INFO", "location": "x:1", "message": "route decision", "timestamp": "2026-12-01 08:23:58,123+0000",
              "service": "route", "cold_start": False, "function_name": "RouteFunction", "rule": "welcome",
              "outcome": "sent", "detail": "d" * 100}
    assert condense(record) == f"08:23:58 route    INFO  route decision rule=welcome outcome=sent detail={'d' * 59}…"
    screen, log = io.StringIO(), tmp_path / "f.log"
    console = Console(screen, log, full_json=False)
    console.write(_json.dumps(record)[:20])  # a line may arrive in pieces
    console.write(_json.dumps(record)[20:] + "\n" + '{"_aws": {}, "M": [1]}\n[sqs] plain\n')
    console.flush()
    assert screen.getvalue().splitlines() == [condense(record), "[sqs] plain"]
    assert [_json.loads(line) for line in log.read_text().splitlines()] == [record, {"_aws": {}, "M": [1]}]
