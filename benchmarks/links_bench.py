"""A cached GET /links: the handler in-process and the whole path through the local stack's HTTP port.

    .venv/bin/python benchmarks/links_bench.py [--requests 1000]

"Cached" means the (account, scene) URL is already stored, the steady state of a deployment. The
handler is measured in-process three ways, interleaved in one run:
- previous: the request path before links were kept in memory - one DynamoDB GetItem (the link)
  and one UpdateItem (the funnel count) before the answer;
- deployed: a warm container answers from memory and writes the count after the answer has gone
  out (the links function's internal Lambda extension, driven here by a stand-in for Lambda's
  Extensions API on loopback): "answer" is until the handler returns, "invocation" until the
  extension asks for its next event (what Lambda bills);
- memory, count first: as the local stack runs it (no Extensions API), the count written before
  the answer.
The ratio figure is deployed answer p50 / previous answer p50. Also printed: DynamoDB calls per
request, a check that links_issued grew by exactly the links answered, the SVG and PNG answers,
the local stack over HTTP, and a cold start (importing the function module in a fresh process,
then its first cached request), which is what JSON callers pay after a scale-out. Figures are for
this machine against moto on loopback; Lambda on arm64 is several times slower.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import importlib.util
import io
import json
import os
import queue
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

from common import ROOT, bench, local_stack, percentile, summary  # noqa: I001 - benchmarks/ is run as a script

ACCOUNT = "wkBENCH00000000000000000000000001"
PARAMS = {"LinkAccounts": f"bench={ACCOUNT}", "LinkScenes": "bench"}
QUERY = {"scene": "bench", "scene_param": "campaign-42"}
ROUNDS = 5  # the modes take turns, so a busy moment of the machine hits them alike


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


class ExtensionsApi:
    """Lambda's Extensions API as far as the links function's internal extension uses it: register,
    then event/next, which answers when ``invoke`` hands out an INVOKE event. ``finished`` gives the
    moment the extension asked for its next event (its after-answer work done)."""

    def __init__(self) -> None:
        self.events: queue.Queue[dict] = queue.Queue()
        self.asked: queue.Queue[float] = queue.Queue()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self._answer({}, {"Lambda-Extension-Identifier": "bench-extension"})

            def do_GET(self) -> None:  # noqa: N802
                api.asked.put(time.perf_counter())
                self._answer(api.events.get())

            def _answer(self, body: dict, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(200)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.address = f"127.0.0.1:{self.server.server_address[1]}"

    def invoke(self, request_id: str) -> None:
        self.events.put({"eventType": "INVOKE", "requestId": request_id,
                         "deadlineMs": int((time.time() + 10) * 1000)})

    def finished(self) -> float:
        return self.asked.get(timeout=15)


class Mode:
    """One way of running the handler: its service, whether the extension takes part, and timings."""

    def __init__(self, label: str, service, after_answer) -> None:
        self.label, self.service, self.after_answer = label, service, after_answer
        self.answers: list[float] = []
        self.invocations: list[float] = []
        self.calls: collections.Counter[str] = collections.Counter()


def load_module(env: dict[str, str], api: ExtensionsApi):
    os.environ.update({**env, "AWS_LAMBDA_RUNTIME_API": api.address})
    try:
        spec = importlib.util.spec_from_file_location("links_app_bench", ROOT / "functions" / "links" / "app.py")
        module = importlib.util.module_from_spec(spec)
        assert spec.loader is not None
        spec.loader.exec_module(module)
    finally:
        del os.environ["AWS_LAMBDA_RUNTIME_API"]
    assert module.after_answer is not None, "the after-answer extension did not register"
    api.finished()  # its first event/next: the end of init
    return module


def run(module, api: ExtensionsApi, mode: Mode, event: dict, count: int, calls: collections.Counter[str],
        record: bool = True) -> None:
    from local.functions import LocalContext

    module.service, module.after_answer = mode.service, mode.after_answer
    for _ in range(count):
        context = LocalContext("LinksFunction", 256, 10)
        if mode.after_answer is not None:
            api.invoke(context.aws_request_id)
        before = calls.copy()
        started = time.perf_counter()
        result = module.handler(event, context)
        answered = time.perf_counter()
        ended = api.finished() if mode.after_answer is not None else answered
        assert result["statusCode"] == 200, result
        if record:
            mode.answers.append((answered - started) * 1000)
            mode.invocations.append((ended - started) * 1000)
            mode.calls.update(calls - before)


def issued_count(table: str) -> int:
    from kefu import aws
    from kefu.stats import day_of

    day = day_of(time.time(), "Asia/Shanghai")
    item = aws.table(table).get_item(Key={"pk": f"funnel#{day}", "sk": f"{ACCOUNT}#{QUERY['scene']}"},
                                     ConsistentRead=True).get("Item") or {}
    return int(item.get("links_issued", 0))


def in_process(env: dict[str, str], requests: int) -> None:
    from kefu import aws
    from kefu.accounts import AccountDirectory
    from kefu.links import LinkService
    from kefu.store.links import LinkStore

    api = ExtensionsApi()
    module = load_module(env, api)
    sink = io.StringIO()  # Lambda sends stdout to CloudWatch; here it goes nowhere (the log lines are
    module.logger.registered_handler.setStream(sink)  # still formatted: that cost is the function's)
    table = env["KEFU_STATE_TABLE"]
    calls: collections.Counter[str] = collections.Counter()
    aws.table(table).meta.client.meta.events.register(
        "before-call.dynamodb", lambda model, **_: calls.update([model.name]))
    previous = LinkService(LinkStore(table), module._add_contact_way, AccountDirectory(module._account_list),
                           on_count_failed=module._count_failed, timezone=module.settings.stats_timezone,
                           daily_new_limit=module.settings.link_daily_new_limit)  # no memory, counts at once
    modes = [Mode("previous (GetItem + UpdateItem before the answer)", previous, module.after_answer),
             Mode("deployed (memory, count after the answer)", module.service, module.after_answer),
             Mode("memory, count before the answer (local stack)", module.service, None)]
    event = event_for({**QUERY, "format": "json"})
    issued_before = issued_count(table)
    answered = 0
    with contextlib.redirect_stdout(sink):
        for mode in modes:  # warm: the boto3 connection, and the link in the deployed service's memory
            run(module, api, mode, event, 3, calls, record=False)
            answered += 3
        for _ in range(ROUNDS):
            for mode in modes:
                run(module, api, mode, event, requests // ROUNDS, calls)
                answered += requests // ROUNDS
                sink.seek(0)
                sink.truncate()
    issued = issued_count(table) - issued_before
    old, new, first = modes
    ratio = percentile(new.answers, 50) / percentile(old.answers, 50)
    for mode in modes:
        print(f"handler in-process, cached, format=json, {mode.label}: {summary(mode.answers)}")
    print(f"handler in-process, cached, format=json, deployed, whole invocation (answer + count): "
          f"{summary(new.invocations)}")
    print(f"deployed answer p50 / previous answer p50 = {ratio:.3f} (the memory cache alone, counting before "
          f"the answer: {percentile(first.answers, 50) / percentile(old.answers, 50):.3f})")
    for mode in modes:
        per = {name: mode.calls[name] / len(mode.answers) for name in ("GetItem", "UpdateItem")}
        other = sum(n for name, n in mode.calls.items() if name not in per)
        print(f"DynamoDB calls per request, {mode.label}: GetItem {per['GetItem']:.2f}, "
              f"UpdateItem {per['UpdateItem']:.2f}, other {other / len(mode.answers):.2f}")
    print(f"links_issued grew by {issued} for {answered} links answered in-process: "
          f"{'exact' if issued == answered else 'NOT EXACT'}")
    assert issued == answered, (issued, answered)
    bench("links.answer_p50_ms", percentile(new.answers, 50), "ms",
          "handler in-process, cached json, deployed: from memory, count after the answer")
    bench("links.previous_answer_p50_ms", percentile(old.answers, 50), "ms",
          "the same run, previous path: GetItem + UpdateItem before the answer")
    bench("links.answer_ratio", round(ratio, 3), "x", "deployed answer p50 / previous answer p50 (below 0.2: 5x faster)")
    bench("links.answer_p99_ms", percentile(new.answers, 99), "ms", "deployed answer p99")
    bench("links.previous_answer_p99_ms", percentile(old.answers, 99), "ms", "previous answer p99")
    bench("links.invocation_p50_ms", percentile(new.invocations, 50), "ms",
          "deployed whole invocation: answer + the count written after it (billed)")
    bench("links.memory_count_first_p50_ms", percentile(first.answers, 50), "ms",
          "from memory, count before the answer (no Extensions API: the local stack)")
    bench("links.count_writes_per_request", round(new.calls["UpdateItem"] / len(new.answers), 2), "writes",
          "funnel count, deployed (previous: "
          f"{old.calls['UpdateItem'] / len(old.answers):.2f}); table reads {new.calls['GetItem'] / len(new.answers):.2f}"
          f" (previous {old.calls['GetItem'] / len(old.answers):.2f})")
    for fmt, count in (("svg", max(50, requests // 10)), ("png", max(20, requests // 50))):
        timed = Mode(new.label, new.service, new.after_answer)
        with contextlib.redirect_stdout(sink):
            run(module, api, timed, event_for({**QUERY, "format": fmt}), 1, calls, record=False)  # renders it
            run(module, api, timed, event_for({**QUERY, "format": fmt}), count, calls)
            sink.seek(0)
            sink.truncate()
        print(f"handler in-process, cached, format={fmt}, deployed: {summary(timed.answers)}")
        bench(f"links.{fmt}_answer_p50_ms", percentile(timed.answers, 50), "ms", f"deployed, format={fmt}")
    new.after_answer.stop()


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
            bench(f"links.http_{fmt}_p50_ms", percentile(times, 50), "ms",
                  f"through the local stack (HTTP, keep-alive), format={fmt}: memory, count before the answer")


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
                   "segno": "segno" in sys.modules, "wecom": "kefu.wecom.client" in sys.modules}}))
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
          f"{results[0]['segno']}, WeCom client imported: {results[0]['wecom']}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=1000)
    args = parser.parse_args()
    with local_stack({"KEFU_TEMPLATE_PARAMS": json.dumps(PARAMS)}) as (stack, sim, endpoint):
        sim.add_account(open_kfid=ACCOUNT, name="bench")
        first = httpx.get(f"{stack.url}/links", params=QUERY, timeout=10)  # stores the link
        assert first.status_code == 200, first.text
        env = link_env(stack, sim, endpoint)
        in_process(env, args.requests)
        over_http(stack.url, args.requests)
        cold_start(env)
        print(f"add_contact_way calls in the whole run: {len(sim.calls_to('kf/add_contact_way'))}")


if __name__ == "__main__":
    main()
