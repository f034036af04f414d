"""`kefu stats` as a whole: the command against a tiny local HTTP server serving a canned /stats."""

from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from kefu_cli.main import main
from tests.unit.test_cli_stats import CANNED

pytestmark = pytest.mark.integration


# -- the whole command against a canned /stats -------------------------------------------------

class Canned(BaseHTTPRequestHandler):
    requests: list[tuple[str, dict[str, Any]]] = []
    status = 200
    answer: Any = CANNED

    def do_GET(self) -> None:  # noqa: N802
        parts = urlsplit(self.path)
        Canned.requests.append((parts.path, {**parse_qs(parts.query), "_headers": dict(self.headers)}))
        body = json.dumps(Canned.answer, ensure_ascii=False).encode()
        self.send_response(Canned.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def canned_stack(tmp_path: Path, monkeypatch):
    server = ThreadingHTTPServer(("127.0.0.1", 0), Canned)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"url": f"http://127.0.0.1:{server.server_address[1]}", "resources": {},
                                 "region": "us-east-1", "pid": os.getpid()}))
    monkeypatch.setenv("KEFU_STATE_FILE", str(state))
    Canned.requests, Canned.status, Canned.answer = [], 200, CANNED
    yield
    server.shutdown()
    server.server_close()


def test_stats_command_prints_the_tables(canned_stack, capsys) -> None:
    code = main(["stats", "--from", "2026-03-01", "--to", "2026-03-02", "--scene", "poster", "--account", "sales"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith("Kefu stats 2026-03-01 .. 2026-03-02")
    assert "上海地铁" in out and "alice" in out
    path, query = Canned.requests[0]
    assert path == "/stats"
    assert {k: v for k, v in query.items() if k != "_headers"} == {
        "from": ["2026-03-01"], "to": ["2026-03-02"], "scene": ["poster"], "account": ["sales"]}
    assert "Authorization" not in query["_headers"]  # the local stack serves /stats without auth


def test_stats_command_json(canned_stack, capsys) -> None:
    assert main(["--local", "stats", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == CANNED


def test_stats_command_reports_an_error_answer(canned_stack, capsys) -> None:
    Canned.status, Canned.answer = 400, {"error": "invalid_range", "message": "from must not be after to"}
    assert main(["stats"]) == 1
    assert "GET /stats answered 400: from must not be after to" in capsys.readouterr().err
