"""A cached GET /links: the handler in-process and the whole path through the local stack's HTTP port.

    .venv/bin/python benchmarks/links_bench.py [--requests 1000]

"Cached" means the (account, scene) URL is already stored, the steady state of a deployment: the
request costs one DynamoDB GetItem (the link) and one UpdateItem (the funnel counter), no WeCom
call. Also printed: the SVG and PNG answers, and a cold start (importing the function module in a
fresh process, then its first cached request), which is what JSON callers pay after a scale-out.
Figures are for this machine against moto on loopback; Lambda on arm64 is several times slower.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import os
import subprocess
import sys
import time

import httpx

from common import ROOT, local_stack, summary  # noqa: I001 - benchmarks/ is run as a script

ACCOUNT = "wkBENCH00000000000000000000000001"
PARAMS = {"LinkAccounts": f"bench={ACCOUNT}", "LinkScenes": "bench"}
QUERY = {"scene": "bench", "scene_param": "campaign-42"}


def link_env(stack, sim, endpoint: str) -> dict[str, str]:
    """The links function's environment as the local stack gives it (template defaults + PARAMS)."""
    return {
        "AWS_ENDPOINT_URL": endpoint, "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing", "WECOM_CORP_ID": sim.corp_id, "WECOM_API_BASE": sim.base_url,
        "KEFU_SECRETS_PREFIX": stack.resources["SecretsPrefix"], "KEFU_STATE_TABLE": stack.resources["StateTable"],
        "KEFU_LINK_ACCOUNTS": PARAMS["LinkAccounts"], "KEFU_LINK_SCENES": PARAMS["LinkScenes"],
        "POWERTOOLS_METRICS_NAMESPACE": "Kefu",
    }


def event_for(query: dict[str, str]) -> dict:
    from urllib.parse import urlencode

    from local.functions import HttpRoute
    from local.http_api import build_event

    return build_event("GET", f"/links?{urlencode(query)}", {"host": "127.0.0.1", "origin": "https://shop.example"},
                       b"", HttpRoute("GET", "/links", "LinksFunction"), {}, "127.0.0.1")


def in_process(env: dict[str, str], requests: int) -> None:
    os.environ.update(env)
    spec = importlib.util.spec_from_file_location("links_app_bench", ROOT / "functions" / "links" / "app.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    from local.functions import LocalContext

    sink = io.StringIO()  # Lambda sends stdout to CloudWatch; here it goes nowhere (the log lines are
    module.logger.registered_handler.setStream(sink)  # still formatted: that cost is the function's)
    for fmt, count in (("json", requests), ("svg", max(50, requests // 10)), ("png", max(20, requests // 50))):
        event = event_for({**QUERY, "format": fmt})
        times = []
        with contextlib.redirect_stdout(sink):
            assert module.handler(event, LocalContext("LinksFunction", 256, 10))["statusCode"] == 200  # warm
            for _ in range(count):
                started = time.perf_counter()
                result = module.handler(event, LocalContext("LinksFunction", 256, 10))
                times.append((time.perf_counter() - started) * 1000)
                assert result["statusCode"] == 200
            sink.seek(0)
            sink.truncate()
        print(f"handler in-process, cached, format={fmt}: {summary(times)}")


def over_http(url: str, requests: int) -> None:
    with httpx.Client(base_url=url, timeout=10) as client:
        for fmt, count in (("json", requests), ("svg", max(50, requests // 10))):
            params = {**QUERY, "format": fmt}
            assert client.get("/links", params=params).status_code == 200  # warm
            times = []
            for _ in range(count):
                started = time.perf_counter()
                answer = client.get("/links", params=params)
                times.append((time.perf_counter() - started) * 1000)
                assert answer.status_code == 200
            print(f"through the local stack (HTTP, keep-alive), cached, format={fmt}: {summary(times)}")


COLD = """
import time
t0 = time.perf_counter()
import importlib.util, json, sys
sys.path.insert(0, {shared!r}); sys.path.insert(0, {root!r})
spec = importlib.util.spec_from_file_location("app", {app!r})
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
t1 = time.perf_counter()
from local.functions import LocalContext
event = json.loads({event!r})
import contextlib, io
module.logger.registered_handler.setStream(io.StringIO())
with contextlib.redirect_stdout(io.StringIO()):
    status = module.handler(event, LocalContext("LinksFunction", 256, 10))["statusCode"]
t2 = time.perf_counter()
print(json.dumps({{"import_ms": (t1 - t0) * 1000, "first_ms": (t2 - t1) * 1000, "status": status,
                   "segno": "segno" in sys.modules, "httpx": "httpx" in sys.modules}}))
"""


def cold_start(env: dict[str, str], runs: int = 5) -> None:
    code = COLD.format(shared=str(ROOT / "shared"), root=str(ROOT), app=str(ROOT / "functions" / "links" / "app.py"),
                       event=json.dumps(event_for(QUERY)))
    results = []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True,
                             text=True, check=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    assert all(r["status"] == 200 for r in results)
    imports = sorted(r["import_ms"] for r in results)
    firsts = sorted(r["first_ms"] for r in results)
    print(f"cold start (fresh process, median of {runs}): import {imports[runs // 2]:.0f} ms, first cached "
          f"request {firsts[runs // 2]:.0f} ms (boto3 client set-up included); segno imported: "
          f"{results[0]['segno']}, httpx imported: {results[0]['httpx']}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=1000)
    args = parser.parse_args()
    with local_stack({"KEFU_TEMPLATE_PARAMS": json.dumps(PARAMS)}) as (stack, sim, endpoint):
        sim.add_account(open_kfid=ACCOUNT, name="bench")
        first = httpx.get(f"{stack.url}/links", params=QUERY, timeout=10)  # stores the link
        assert first.status_code == 200, first.text
        over_http(stack.url, args.requests)
        env = link_env(stack, sim, endpoint)
        cold_start(env)
        in_process(env, args.requests)
        print(f"add_contact_way calls in the whole run: {len(sim.calls_to('kf/add_contact_way'))}")


if __name__ == "__main__":
    main()
