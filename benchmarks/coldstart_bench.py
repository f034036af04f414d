"""Cold start per function: a fresh process imports the handler and serves its first event.

    .venv/bin/python benchmarks/coldstart_bench.py [--runs 5] [--functions callback,sync,route,links]

The child processes run Python from .venv-lambda, which holds only what a deployed function has:
boto3 (Lambda's runtime provides it; installed with its .pyc, as the runtime has them) and, in
.venv-lambda/layer, the layer's requirements (shared/requirements.txt) installed without .pyc -
`sam build` unpacks wheels and copies sources without compiling them, and Lambda's file system is
read-only, so every layer module is compiled at every cold start. Kefu's own package and the
function's directory are copied fresh for each run (no __pycache__). No moto, pytest or test
extras are importable in the child (httpx would import `rich` if it were installed).

The first event is real work against AWS and WeCom stand-ins on loopback: a moto server and the
WeCom simulator run in this (parent) process, the template's tables, queues, bucket and SSM
secrets are created with local.provision, and each child gets the function's environment as the
template resolves it. Events: callback - a signed kf_msg_or_event POST (queued to SQS); sync - an
SQS record for an account with two new items (pulled, stored, handed on); route - the sync's
hand-off of a customer's enter_session and first message (welcome sent, session transferred); links - a
GET /links for a stored (account, scene) link. One warm-up child per function runs first and is
not counted (it sets the account's cursor, the shared access_token and the stored link, so the
timed runs are the steady state every later cold start meets).

Baseline: a fresh process that imports boto3 and creates the client the function mostly uses.
Reported: medians of --runs fresh processes, interleaved: spawn-to-answer (interpreter start +
import + first event) and its ratio to the baseline's spawn-to-client; the same with the .pyc
shipped (PYTHONPYCACHEPREFIX primed once), and what each function imports (python -X importtime).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from common import ROOT, bench, free_port  # noqa: I001 - benchmarks/ is run as a script

LAMBDA_VENV = ROOT / ".venv-lambda"
LAYER = LAMBDA_VENV / "layer"
REGION = "us-east-1"
MARK = "kefu-bench: handler imported"
RESULT = "KEFU-BENCH-RESULT "
# (short name, logical id, the boto3 client its baseline creates)
FUNCTIONS = (("callback", "CallbackFunction", "sqs"), ("sync", "SyncFunction", "dynamodb"),
             ("route", "RouteFunction", "dynamodb"), ("links", "LinksFunction", "dynamodb"))

CHILD = """
import time
T0 = time.perf_counter()
import json, os, sys, uuid
import app
T1 = time.perf_counter()
sys.stderr.write({mark!r} + "\\n"); sys.stderr.flush()
with open(os.environ["KEFU_BENCH_EVENT"], encoding="utf-8") as handle:
    event = json.load(handle)

class Context:
    function_name = os.environ["AWS_LAMBDA_FUNCTION_NAME"]
    memory_limit_in_mb = int(os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"])
    function_version = "$LATEST"
    aws_request_id = str(uuid.uuid4())
    invoked_function_arn = "arn:aws:lambda:{region}:123456789012:function:" + function_name
    log_group_name = "/aws/lambda/" + function_name
    log_stream_name = "bench"
    def get_remaining_time_in_millis(self):
        return 10000

result = app.handler(event, Context())
T2 = time.perf_counter()
WALL = time.time()
status = result.get("statusCode") if isinstance(result, dict) else None
failures = len(result.get("batchItemFailures") or []) if isinstance(result, dict) else None
sys.stdout.write({result!r} + json.dumps({{"import_ms": (T1 - T0) * 1000, "first_ms": (T2 - T1) * 1000,
    "wall_end": WALL, "status": status, "failures": failures}}) + "\\n")
"""

BASELINE = """
import time
T0 = time.perf_counter()
import json, sys
import boto3
client = boto3.client({service!r})
T1 = time.perf_counter()
sys.stdout.write({result!r} + json.dumps({{"import_ms": (T1 - T0) * 1000, "first_ms": 0.0, "wall_end": time.time()}}) + "\\n")
"""


class Fixture:
    """The AWS emulator, the simulator and the provisioned template, shared by every child."""

    def __init__(self, workdir: Path) -> None:
        import boto3

        from kefu.secrets import CALLBACK_TOKEN, CORP_SECRET, ENCODING_AES_KEY, parameter_names
        from local.functions import load_functions
        from local.provision import provision, put_secrets
        from local.template import Template
        from local.wecom_sim import WeComSimulator

        from local.emulator import start_moto

        self.workdir = workdir
        self.moto = start_moto("127.0.0.1", free_port())
        host, port = self.moto.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        for key, value in {"AWS_ENDPOINT_URL": self.endpoint, "AWS_DEFAULT_REGION": REGION,
                           "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
            os.environ[key] = value
        self.sim = WeComSimulator()
        self.sim.start()
        self.accounts = {name: self.sim.add_account(name=f"bench-{name}") for name, _, _ in FUNCTIONS}
        for open_kfid in self.accounts.values():
            for userid in ("alice", "bob"):
                self.sim.add_servicer(open_kfid, userid)
        template = Template.load(ROOT / "template.yaml", region=REGION, overrides={
            "WeComCorpId": self.sim.corp_id, "WeComApiBase": self.sim.base_url,
            "LinkAccounts": f"bench={self.accounts['links']}", "LinkScenes": "bench"})
        session = boto3.Session(region_name=REGION)
        provision(template, f"kefu-cold{uuid.uuid4().hex[:6]}", session)
        put_secrets(session, parameter_names(template.parameters["SecretsPrefix"]),
                    {CORP_SECRET: self.sim.corp_secret, CALLBACK_TOKEN: self.sim.token,
                     ENCODING_AES_KEY: self.sim.encoding_aes_key})
        self.template = template
        self.functions, _, _ = load_functions(template, ROOT)

    def close(self) -> None:
        self.sim.stop()
        self.moto.stop()

    # -- first events ---------------------------------------------------------------------------

    def event(self, name: str) -> dict[str, Any]:
        return getattr(self, f"_event_{name}")()

    def _http(self, method: str, target: str, headers: dict[str, str], body: bytes, logical_id: str) -> dict:
        from local.functions import HttpRoute
        from local.http_api import build_event

        path = target.split("?", 1)[0]
        return build_event(method, target, {"host": "kefu.execute-api.us-east-1.amazonaws.com", **headers}, body,
                           HttpRoute(method, path, logical_id), {}, "203.0.113.7")

    def _sqs(self, queue: str, messages: list[tuple[str, str]]) -> dict:
        """A Lambda SQS event: one record per (body, group), in order, as one batch."""
        from local.sqs_poller import to_record

        now = str(int(time.time() * 1000))
        records = []
        for n, (body, group) in enumerate(messages):
            message = {"MessageId": str(uuid.uuid4()), "ReceiptHandle": uuid.uuid4().hex, "Body": body,
                       "Attributes": {"MessageGroupId": group, "MessageDeduplicationId": uuid.uuid4().hex,
                                      "SequenceNumber": f"{now}{n:06d}", "ApproximateReceiveCount": "1",
                                      "SentTimestamp": now, "ApproximateFirstReceiveTimestamp": now,
                                      "SenderId": "AROAEXAMPLE"}}
            records.append(to_record(message, self.template.attributes[(queue, "Arn")], REGION))
        return {"Records": records}

    def _event_callback(self) -> dict:
        open_kfid = self.accounts["callback"]
        xml = self.sim.callback_xml(open_kfid, self.sim.issue_callback_token(open_kfid))
        query, body = self.sim.signed_callback_request(xml)
        return self._http("POST", "/callback?" + urlencode(query), {"content-type": "text/xml"}, body,
                          "CallbackFunction")

    def _event_sync(self) -> dict:
        open_kfid = self.accounts["sync"]
        euid, _ = self.sim.customer_enter(open_kfid, scene="bench")
        self.sim.customer_says(open_kfid, euid, "你好，想问一下价格")
        job = {"open_kfid": open_kfid, "token": self.sim.issue_callback_token(open_kfid),
               "create_time": int(self.sim.now())}
        return self._sqs("SyncQueue", [(json.dumps(job), open_kfid)])

    def _event_route(self) -> dict:
        from kefu.sync import route_messages
        from kefu.wecom.models import parse_item

        open_kfid = self.accounts["route"]
        euid, _ = self.sim.customer_enter(open_kfid, scene="bench")
        entered = self.sim.messages(open_kfid)[-1]
        said = self.sim.item(self.sim.customer_says(open_kfid, euid, "你好，想问一下价格"))
        messages = route_messages([(entered["msgid"], parse_item(entered)), (said["msgid"], parse_item(said))])
        return self._sqs("RouteQueue", [(m.body, m.group_id) for m in messages])

    def _event_links(self) -> dict:
        target = "/links?" + urlencode({"scene": "bench", "scene_param": "cold-start"})
        return self._http("GET", target, {"origin": "https://shop.example"}, b"", "LinksFunction")


def ok(name: str, result: dict[str, Any]) -> bool:
    if name in ("callback", "links"):
        return result.get("status") == 200
    return result.get("failures") == 0


class Runner:
    def __init__(self, fixture: Fixture, workdir: Path, python: Path) -> None:
        self.fixture = fixture
        self.workdir = workdir
        self.python = python
        self.pycache = workdir / "pycache"
        self.baselines: dict[str, list[dict]] = {}

    def _task(self, name: str) -> tuple[Path, Path]:
        """The function's directory (/var/task) and the kefu package (/opt/python), copied once
        without __pycache__; children never write bytecode beside them."""
        run = self.workdir / name
        if not run.exists():
            ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
            shutil.copytree(ROOT / "functions" / name, run / "task", ignore=ignore)  # symlinks followed
            shutil.copytree(ROOT / "shared" / "kefu", run / "opt" / "kefu", ignore=ignore)
        return run / "task", run / "opt"

    def env(self, name: str, logical_id: str, pyc: bool) -> dict[str, str]:
        fn = self.fixture.functions[logical_id]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "TZ": ":UTC",
               "AWS_ENDPOINT_URL": self.fixture.endpoint, "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION,
               "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_LAMBDA_FUNCTION_NAME": logical_id, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(fn.memory),
               "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST", "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
               **fn.environment}
        if pyc:
            env["PYTHONPYCACHEPREFIX"] = str(self.pycache)
        else:
            env["PYTHONDONTWRITEBYTECODE"] = "1"
        return env

    def run(self, name: str, logical_id: str, pyc: bool = False, importtime: bool = False,
            prime: bool = False) -> dict[str, Any]:
        task, opt = self._task(name)
        event_file = self.workdir / f"event-{name}.json"
        event_file.write_text(json.dumps(self.fixture.event(name)), encoding="utf-8")
        env = self.env(name, logical_id, pyc)
        if prime:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.update({"PYTHONPATH": os.pathsep.join([str(task), str(LAYER), str(opt)]),
                    "LAMBDA_TASK_ROOT": str(task), "KEFU_BENCH_EVENT": str(event_file)})
        code = CHILD.format(mark=MARK, region=REGION, result=RESULT)
        argv = [str(self.python)] + (["-X", "importtime"] if importtime else []) + ["-c", code]
        result = self._spawn(argv, env, task)
        if not ok(name, result):
            raise RuntimeError(f"{name}: the first event failed: {json.dumps(result)[:300]}\n{result.get('stderr', '')[-3000:]}")
        return result

    def baseline(self, service: str) -> dict[str, Any]:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "TZ": ":UTC",
               "AWS_ENDPOINT_URL": self.fixture.endpoint, "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION,
               "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "PYTHONDONTWRITEBYTECODE": "1"}
        code = BASELINE.format(service=service, result=RESULT)
        return self._spawn([str(self.python), "-c", code], env, self.workdir)

    def _spawn(self, argv: list[str], env: dict[str, str], cwd: Path) -> dict[str, Any]:
        started = time.time()
        proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=120)
        lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT)]
        if proc.returncode != 0 or not lines:
            raise RuntimeError(f"child failed ({proc.returncode}):\n{proc.stderr[-3000:]}\n{proc.stdout[-2000:]}")
        result = json.loads(lines[-1][len(RESULT):])
        result["total_ms"] = (result["wall_end"] - started) * 1000
        result["stderr"] = proc.stderr
        result["log_bytes"] = len(proc.stdout.encode()) - len(lines[-1]) - 1
        return result


def import_summary(stderr: str) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """Import time by top-level package (the sum of each module's own time, so nothing is
    counted twice), at init (importing app.py) and during the first event."""
    phases: list[dict[str, float]] = [{}, {}]
    phase = 0
    for line in stderr.splitlines():
        if line.startswith(MARK):
            phase = 1
            continue
        if not line.startswith("import time:") or line.count("|") != 2:
            continue
        own, _, name = line[len("import time:"):].split("|")
        try:
            micros = int(own)
        except ValueError:
            continue  # the header line
        package = name.strip().split(".")[0]
        if package in ("kefu", "app"):
            package = "kefu + app.py"
        elif package in sys.stdlib_module_names or package.startswith("_"):
            package = "stdlib"
        phases[phase][package] = phases[phase].get(package, 0.0) + micros / 1000
    return [sorted(p.items(), key=lambda kv: -kv[1]) for p in phases]  # type: ignore[return-value]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--functions", default=",".join(name for name, _, _ in FUNCTIONS))
    args = parser.parse_args()
    python = LAMBDA_VENV / "bin" / "python"
    if not python.exists() or not LAYER.is_dir():
        raise SystemExit(f"{LAMBDA_VENV} with its layer/ is missing: run `make bench` (it creates it)")
    wanted = [f for f in FUNCTIONS if f[0] in args.functions.split(",") and (ROOT / "functions" / f[0]).is_dir()]
    workdir = Path(tempfile.mkdtemp(prefix="kefu-cold-"))
    fixture = Fixture(workdir)
    try:
        runner = Runner(fixture, workdir, python)
        imports, failed = {}, {}
        for name, logical_id, _ in list(wanted):  # warm-up (not counted), then the import listing
            try:
                runner.run(name, logical_id)
                imports[name] = import_summary(runner.run(name, logical_id, importtime=True)["stderr"])
                runner.run(name, logical_id, pyc=True, prime=True)  # writes the .pyc of everything it imports
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                failed[name] = str(exc)
                wanted.remove((name, logical_id, _))
        results: dict[tuple[str, str], list[dict]] = {}
        services = sorted({service for _, _, service in wanted})
        for _ in range(args.runs):
            for service in services:
                results.setdefault(("baseline", service), []).append(runner.baseline(service))
            for name, logical_id, _ in wanted:
                results.setdefault((name, "as shipped"), []).append(runner.run(name, logical_id))
                results.setdefault((name, "pyc"), []).append(runner.run(name, logical_id, pyc=True))
    finally:
        fixture.close()
        shutil.rmtree(workdir, ignore_errors=True)
    skipped = sorted(set(fixture.functions) - {logical for _, logical, _ in FUNCTIONS})
    report(args.runs, wanted, results, imports)
    if skipped:
        print(f"  not measured (this benchmark defines no first event for them): {', '.join(skipped)}")
    for name, error in failed.items():
        print(f"  {name}: FAILED, no figure - the function did not serve its first event:\n{error[-2500:]}")
    if failed:
        sys.exit(1)


def report(runs: int, wanted, results, imports) -> None:
    base = {service: median([r["total_ms"] for r in results[("baseline", service)]])
            for service in {s for _, _, s in wanted}}
    if not wanted:
        print("cold start: no function served its first event")
        return
    base_in = {service: median([r["import_ms"] for r in results[("baseline", service)]]) for service in base}
    print(f"cold start, fresh process per run, median of {runs} (Python {sys.version.split()[0]} from .venv-lambda; "
          "this machine, not Lambda arm64)")
    for service in sorted(base):
        print(f"  baseline `import boto3` + boto3.client({service!r}): {base[service]:.0f} ms spawn-to-client "
              f"({base_in[service]:.0f} ms of it importing and creating the client)")
        bench(f"coldstart.baseline.{service}_ms", round(base[service]), "ms",
              f"fresh process: import boto3 + boto3.client('{service}')")
    for name, _, service in wanted:
        shipped = results[(name, "as shipped")]
        pyc = results[(name, "pyc")]
        total = median([r["total_ms"] for r in shipped])
        init = median([r["import_ms"] for r in shipped])
        first = median([r["first_ms"] for r in shipped])
        total_pyc = median([r["total_ms"] for r in pyc])
        ratio = total / base[service]
        print(f"  {name}: {total:.0f} ms spawn-to-answer = {ratio:.2f}x the {service} baseline "
              f"(import {init:.0f} ms + first event {first:.0f} ms); with .pyc shipped {total_pyc:.0f} ms "
              f"= {total_pyc / base[service]:.2f}x")
        bench(f"coldstart.{name}_ms", round(total), "ms", "fresh process: import the handler + serve the first event")
        bench(f"coldstart.{name}.import_ms", round(init), "ms", "importing app.py (the Lambda init phase)")
        bench(f"coldstart.{name}.first_event_ms", round(first), "ms", "the first event, boto3 clients and SSM reads included")
        bench(f"coldstart.{name}.ratio", round(ratio, 2), "x", f"over import boto3 + boto3.client('{service}')")
        bench(f"coldstart.{name}.pyc_ms", round(total_pyc), "ms", "the same with the layer's .pyc shipped")
        bench(f"coldstart.{name}.pyc_ratio", round(total_pyc / base[service], 2), "x",
              f"with .pyc, over import boto3 + boto3.client('{service}')")
    print("  what each function imports, by top-level package: ms of module code run while importing "
          "(python -X importtime, one run without .pyc; the tracing inflates it), packages under 2 ms left out")
    for name, _, _ in wanted:
        init, first = imports[name]
        for label, rows in (("init (importing app.py)", init), ("during the first event", first)):
            total = sum(ms for _, ms in rows)
            shown = ", ".join(f"{pkg} {ms:.0f}" for pkg, ms in rows if ms >= 2) or "nothing"
            print(f"    {name}, {label}: {total:.0f} ms in {len(rows)} packages: {shown}")
        heavy = [pkg for pkg in ("rich", "moto", "pytest", "werkzeug", "flask", "segno", "aws_xray_sdk")
                 if pkg in dict(init) or pkg in dict(first)]
        print(f"    {name} imports none of rich, moto, pytest, flask, segno, aws_xray_sdk: "
              + ("yes" if not heavy else f"NO ({', '.join(heavy)})"))


if __name__ == "__main__":
    main()
