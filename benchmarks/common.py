"""Shared set-up for the benchmarks: the local stack (moto server + simulator), figures, summaries,
and a function started in a fresh process as Lambda starts it (cold starts, memory sizes)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT / "shared", ROOT):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))


from tests.support.stack import free_port, stack_env, start_stack  # noqa: E402 - after the path set-up
from tests.support.store import stored_count  # noqa: E402,F401 - the benchmarks' one stored-count helper


def bench(name: str, value: float, unit: str, note: str = "") -> None:
    """Print one figure for benchmarks/run_all.py to collect: ``BENCH name=value unit # note``."""
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    print(f"BENCH {name}={text} {unit}" + (f" # {note}" if note else ""), flush=True)


@contextlib.contextmanager
def local_stack(extra_env: dict[str, str] | None = None, script: Path | None = None) -> Iterator[tuple[Any, Any, str]]:
    """Yield (stack process, simulator, aws endpoint) for one benchmark run.

    ``script``: run that wrapper of the local stack instead of ``python -m local.stack``."""
    from local.emulator import start_moto  # noqa: PLC0415 - loaded only by the benchmarks that use them (not in .venv-bench)
    from local.wecom_sim import WeComSimulator  # noqa: PLC0415 - loaded only by the benchmarks that use them (not in .venv-bench)

    port = free_port()
    moto = start_moto("127.0.0.1", port)
    endpoint = f"http://127.0.0.1:{port}"
    sim = WeComSimulator()
    sim.start()
    launch = start_stack if script is None else (lambda env: start_stack(env, [sys.executable, str(script)]))
    stack = launch(stack_env(endpoint, sim, f"kefu-b{uuid.uuid4().hex[:6]}", **(extra_env or {})))
    sim.set_callback_url(f"{stack.url}/callback")
    try:
        yield stack, sim, endpoint
    finally:
        stack.stop()
        sim.stop()
        moto.stop()


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary(values: list[float], unit: str = "ms") -> str:
    return (f"n={len(values)} p50={percentile(values, 50):.1f}{unit} p99={percentile(values, 99):.1f}{unit} "
            f"mean={statistics.fmean(values):.1f}{unit}")


# -- a function in a fresh process, as Lambda starts it (coldstart_bench.py, memory_bench.py) -------

LAMBDA_VENV = ROOT / ".venv-lambda"
LAYER = LAMBDA_VENV / "layer"
REGION = "us-east-1"
MARK = "kefu-bench: handler imported"
RESULT = "KEFU-BENCH-RESULT "


@dataclasses.dataclass(frozen=True)
class ColdFunction:
    name: str  # short name, used in figure names
    logical_id: str
    service: str  # the boto3 client the baseline process creates: the one the function mostly uses
    first_event: str  # what its first event is, for the report


COLD_FUNCTIONS = (
    ColdFunction("callback", "CallbackFunction", "sqs", "a signed kf_msg_or_event POST (queued to SQS)"),
    ColdFunction("sync", "SyncFunction", "dynamodb", "an SQS record for an account with two new items (pulled, "
                                                     "stored, handed on)"),
    ColdFunction("route", "RouteFunction", "dynamodb", "the sync's hand-off of a customer's enter_session and first "
                                                       "message (welcome sent, session transferred); rules without "
                                                       "bot.ai, no model"),
    ColdFunction("route_ai", "RouteFunction", "dynamodb", "the AI answerer on (the shipped rules, whose help scene "
                                                          "has bot.ai, and BedrockModelId set): a customer enters "
                                                          "from the help scene and asks a question the knowledge "
                                                          "covers (answered by the Bedrock stand-in)"),
    ColdFunction("links", "LinksFunction", "dynamodb", "GET /links for a stored (account, scene) link"),
    ColdFunction("conversations", "ConversationsFunction", "dynamodb", "GET /conversations?account= (the route "
                                                                       "account's recent conversations)"),
    ColdFunction("stats", "StatsFunction", "dynamodb", "GET /stats?account= (today's funnel and servicer rows)"),
    ColdFunction("sweep", "SweepFunction", "dynamodb", "its scheduled event: every account's cursor, pool and "
                                                      "quiet sessions checked, work queued"),
    ColdFunction("media", "MediaFunction", "s3", "a media job for an account with one customer image pending "
                                                 "(downloaded from WeCom, put in S3, attached)"),
    ColdFunction("sidebar", "SidebarFunction", "dynamodb", "GET /sidebar (the servicer's page; no AWS call)"),
    ColdFunction("wecomstats", "WeComStatsFunction", "dynamodb", "its scheduled event: WeCom's statistics of the "
                                                                 "days not read yet, per account"),
)

# The child: Lambda's init (importing the handler's module), then the first event; then, for each
# event file named on its stdin, one warm event in the same process. One RESULT line per event.
CHILD = """
import resource, time
def cpu_ms():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return (r.ru_utime + r.ru_stime) * 1000
T0 = time.perf_counter()
C0 = cpu_ms()
import json, os, sys, uuid
import {module} as handler_module
T1 = time.perf_counter()
C1 = cpu_ms()
sys.stderr.write({mark!r} + "\\n"); sys.stderr.flush()

class Context:
    function_name = os.environ["AWS_LAMBDA_FUNCTION_NAME"]
    memory_limit_in_mb = int(os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"])
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:{region}:123456789012:function:" + function_name
    log_group_name = "/aws/lambda/" + function_name
    log_stream_name = "bench"
    def __init__(self):
        self.aws_request_id = str(uuid.uuid4())
    def get_remaining_time_in_millis(self):
        return 10000

def serve(path):
    with open(path, encoding="utf-8") as handle:
        event = json.load(handle)
    t, c = time.perf_counter(), cpu_ms()
    result = handler_module.{attr}(event, Context())
    return result, (time.perf_counter() - t) * 1000, cpu_ms() - c

def outcome(result):
    result = result if isinstance(result, dict) else {{}}
    return {{"status": result.get("statusCode"), "failures": len(result.get("batchItemFailures") or [])
             if "batchItemFailures" in result else None, "failed_accounts": result.get("failed_accounts"),
             "maxrss_mb": peak_rss_mb()}}

def peak_rss_mb():
    # VmHWM: this process's own peak (ru_maxrss would include the forking parent's, kept across exec)
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

result, first_ms, first_cpu = serve(os.environ["KEFU_BENCH_EVENT"])
sys.stdout.write({result_mark!r} + json.dumps({{"import_ms": (T1 - T0) * 1000, "first_ms": first_ms,
    "start_cpu_ms": C0, "import_cpu_ms": C1 - C0, "first_cpu_ms": first_cpu, "wall_end": time.time(),
    **outcome(result)}}) + "\\n")
sys.stdout.flush()
for line in sys.stdin:
    if not line.strip():
        break
    result, ms, cpu = serve(line.strip())
    sys.stdout.write({result_mark!r} + json.dumps({{"warm_ms": ms, "warm_cpu_ms": cpu, **outcome(result)}}) + "\\n")
    sys.stdout.flush()
"""

BASELINE = """
import time
T0 = time.perf_counter()
import json, sys
import boto3
client = boto3.client({service!r})
T1 = time.perf_counter()
sys.stdout.write({result_mark!r} + json.dumps({{"import_ms": (T1 - T0) * 1000, "first_ms": 0.0, "wall_end": time.time()}}) + "\\n")
"""


def stage_function(code_dir: Path, task: Path) -> list[str]:
    """Copy a function's CodeUri to ``task`` (its /var/task) as the deployment ships it: symlinked
    files copied as files, no __pycache__; and the routing rules' assets/ beside routing.yaml. In
    the tree routing.yaml is a symlink to config/routing.yaml, whose file assets (config/assets)
    resolve beside the link's target; deployed, the rules file ships "with its assets/ folder"
    (config/routing.yaml's header), which this tree's functions/route/ does not hold itself.
    Returns notes on what had to be added."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(code_dir, task, ignore=ignore)  # symlinks followed, as a zip of the build would hold them
    notes = []
    rules = code_dir / "routing.yaml"
    assets = rules.resolve().parent / "assets"
    if rules.is_file() and assets.is_dir() and not (task / "assets").exists():
        shutil.copytree(assets, task / "assets", ignore=ignore)
        notes.append(f"{code_dir.relative_to(ROOT)}: routing.yaml's assets/ staged beside it from "
                     f"{assets.relative_to(ROOT)} ({code_dir.relative_to(ROOT)} has no assets/ of its own: a "
                     "package built from the tree as it is would fail the rules' check at init)")
    return notes


def _timestamp_ms() -> str:
    return str(int(time.time() * 1000))


class ColdFixture:
    """The AWS emulator (moto, in this process), the WeCom simulator and the provisioned template,
    shared by every child, and each function's events: every call makes a new one (a new
    customer, a new callback), so a warm event is as real as the first."""

    def __init__(self, functions: tuple[ColdFunction, ...] = COLD_FUNCTIONS) -> None:
        import boto3  # noqa: PLC0415 - loaded only by the benchmarks that use them (not in .venv-bench)

        from kefu.secrets import CALLBACK_TOKEN, CORP_SECRET, ENCODING_AES_KEY, parameter_names  # noqa: PLC0415 - loaded only by the benchmarks that use them (not in .venv-bench)
        from local.emulator import start_moto  # noqa: PLC0415 - loaded only by the benchmarks that use them (not in .venv-bench)
        from local.functions import load_functions  # noqa: PLC0415 - loaded only by the benchmarks that use them (not in .venv-bench)
        from local.provision import provision, put_secrets  # noqa: PLC0415 - loaded only by the benchmarks that use them (not in .venv-bench)
        from local.template import Template  # noqa: PLC0415 - loaded only by the benchmarks that use them (not in .venv-bench)
        from local.wecom_sim import WeComSimulator  # noqa: PLC0415 - loaded only by the benchmarks that use them (not in .venv-bench)

        self.moto = start_moto("127.0.0.1", free_port())
        host, port = self.moto.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        for key, value in {"AWS_ENDPOINT_URL": self.endpoint, "AWS_DEFAULT_REGION": REGION,
                           "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
            os.environ[key] = value
        self.sim = WeComSimulator()
        self.sim.start()
        from local.bedrock_standin import BedrockStandIn  # noqa: PLC0415 - loaded only by the benchmarks that use them (not in .venv-bench)

        self.bedrock = BedrockStandIn()
        self.bedrock_url = self.bedrock.start()
        self.accounts = {f.name: self.sim.add_account(name=f"bench-{f.name}") for f in functions}
        for open_kfid in self.accounts.values():
            for userid in ("alice", "bob"):
                self.sim.add_servicer(open_kfid, userid)
        template = Template.load(ROOT / "template.yaml", region=REGION, overrides={
            "WeComCorpId": self.sim.corp_id, "WeComApiBase": self.sim.base_url,
            "LinkAccounts": f"bench={self.accounts.get('links', next(iter(self.accounts.values())))}",
            "LinkScenes": "bench"})
        session = boto3.Session(region_name=REGION)
        provision(template, f"kefu-cold{uuid.uuid4().hex[:6]}", session)
        put_secrets(session, parameter_names(template.parameters["SecretsPrefix"]),
                    {CORP_SECRET: self.sim.corp_secret, CALLBACK_TOKEN: self.sim.token,
                     ENCODING_AES_KEY: self.sim.encoding_aes_key})
        self.template = template
        self.functions, _, _ = load_functions(template, ROOT)

    def close(self) -> None:
        self.bedrock.stop()
        self.sim.stop()
        self.moto.stop()

    def event(self, name: str) -> dict[str, Any]:
        return getattr(self, f"_event_{name}")()

    def _http(self, method: str, target: str, headers: dict[str, str], body: bytes, logical_id: str) -> dict:
        from local.functions import HttpRoute  # noqa: PLC0415 - loaded only by the benchmarks that use them (not in .venv-bench)
        from local.http_api import build_event  # noqa: PLC0415 - loaded only by the benchmarks that use them (not in .venv-bench)

        path = target.split("?", 1)[0]
        return build_event(method, target, {"host": "kefu.execute-api.us-east-1.amazonaws.com", **headers}, body,
                           HttpRoute(method, path, logical_id), {}, "203.0.113.7")

    def _sqs(self, queue: str, messages: list[tuple[str, str]]) -> dict:
        """A Lambda SQS event: one record per (body, group), in order, as one batch."""
        from local.sqs_poller import to_record  # noqa: PLC0415 - loaded only by the benchmarks that use them (not in .venv-bench)

        now = _timestamp_ms()
        records = []
        for n, (body, group) in enumerate(messages):
            message = {"MessageId": str(uuid.uuid4()), "ReceiptHandle": uuid.uuid4().hex, "Body": body,
                       "Attributes": {"MessageGroupId": group, "MessageDeduplicationId": uuid.uuid4().hex,
                                      "SequenceNumber": f"{now}{n:06d}", "ApproximateReceiveCount": "1",
                                      "SentTimestamp": now, "ApproximateFirstReceiveTimestamp": now,
                                      "SenderId": "AROAEXAMPLE"}}
            records.append(to_record(message, self.template.attributes[(queue, "Arn")], REGION))
        return {"Records": records}

    def _scheduled(self) -> dict:
        now = time.time()
        return {"version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event", "source": "aws.events",
                "account": "123456789012", "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
                "region": REGION, "resources": [], "detail": {}}

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
        return self._entry_and_question("route", "bench", "你好，想问一下价格")

    def _event_route_ai(self) -> dict:
        return self._entry_and_question("route_ai", "help", "请问下单后多久发货？")

    def _entry_and_question(self, account: str, scene: str, text: str) -> dict:
        """The sync's hand-off of a customer's entry from ``scene`` and first message."""
        from kefu.sync import route_messages  # noqa: PLC0415 - loaded only by the benchmarks that use them (not in .venv-bench)
        from kefu.wecom.models import parse_item  # noqa: PLC0415 - loaded only by the benchmarks that use them (not in .venv-bench)

        open_kfid = self.accounts[account]
        euid, _ = self.sim.customer_enter(open_kfid, scene=scene)
        entered = self.sim.messages(open_kfid)[-1]
        said = self.sim.item(self.sim.customer_says(open_kfid, euid, text))
        assert said is not None
        messages = route_messages([(entered["msgid"], parse_item(entered)), (said["msgid"], parse_item(said))])
        return self._sqs("RouteQueue", [(m.body, m.group_id) for m in messages])

    def _event_links(self) -> dict:
        target = "/links?" + urlencode({"scene": "bench", "scene_param": "cold-start"})
        return self._http("GET", target, {"origin": "https://shop.example"}, b"", "LinksFunction")

    def _event_conversations(self) -> dict:
        target = "/conversations?" + urlencode({"account": self.accounts.get("route", self.accounts["conversations"]),
                                                "limit": "20"})
        return self._http("GET", target, {}, b"", "ConversationsFunction")

    def _event_stats(self) -> dict:
        target = "/stats?" + urlencode({"account": self.accounts.get("route", self.accounts["stats"])})
        return self._http("GET", target, {}, b"", "StatsFunction")

    def _event_sweep(self) -> dict:
        return self._scheduled()

    def _event_wecomstats(self) -> dict:
        return self._scheduled()

    def _event_sidebar(self) -> dict:
        return self._http("GET", "/sidebar", {"user-agent": "wxwork"}, b"", "SidebarFunction")

    def _event_media(self) -> dict:
        """A customer's image as the sync leaves it: the message stored, its media pending."""
        from kefu.store.media import MediaStore, object_key  # noqa: PLC0415 - loaded only by the benchmarks that use them (not in .venv-bench)
        from kefu.store.messages import MessageStore  # noqa: PLC0415 - loaded only by the benchmarks that use them (not in .venv-bench)
        from kefu.sync import to_record  # noqa: PLC0415 - loaded only by the benchmarks that use them (not in .venv-bench)
        from kefu.wecom.models import parse_item  # noqa: PLC0415 - loaded only by the benchmarks that use them (not in .venv-bench)

        open_kfid = self.accounts["media"]
        euid, _ = self.sim.customer_enter(open_kfid, scene="bench")
        msgid = self.sim.customer_sends_media(open_kfid, euid, "image")
        item = parse_item(self.sim.item(msgid))
        now = int(time.time())
        MessageStore(self.template.physical["MessagesTable"]).put_new(
            [to_record(item, msgid, time.time_ns(), now, 30)])
        MediaStore(self.template.physical["StateTable"], self.template.physical["MediaBucket"]).add_pending(
            [(open_kfid, msgid, str(item.media_id), object_key(open_kfid, euid, msgid), item.send_time or now)])
        return self._sqs("MediaQueue", [(json.dumps({"open_kfid": open_kfid, "reason": "bench"}), open_kfid)])


def served(name: str, result: dict[str, Any]) -> bool:
    """Did the event succeed: 200 for HTTP, no failed records for a queue, no failed account for a schedule."""
    if result.get("status") is not None:
        return result["status"] == 200
    if result.get("failures") is not None:
        return result["failures"] == 0
    return not result.get("failed_accounts")


RULES_WITHOUT_AI = "routing-without-ai.json"
AI_MODEL = "amazon.nova-lite-v1:0"


def write_rules_without_ai(rules: Path, target: Path) -> None:
    """The shipped rules with every bot.ai taken out (JSON is YAML too): the route function's cold
    start without the answerer, beside the same assets."""
    import yaml  # noqa: PLC0415 - loaded only by the benchmarks that use them (not in .venv-bench)

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if not (k == "ai" and isinstance(v, dict))}
        return [strip(v) for v in node] if isinstance(node, list) else node

    target.write_text(json.dumps(strip(yaml.safe_load(rules.read_text(encoding="utf-8"))), ensure_ascii=False),
                      encoding="utf-8")


class ColdRunner:
    """Spawns the children: one fresh .venv-lambda process per cold start."""

    def __init__(self, fixture: ColdFixture, workdir: Path, python: Path | None = None) -> None:
        self.fixture = fixture
        self.workdir = workdir
        self.python = python or LAMBDA_VENV / "bin" / "python"
        self.pycache = workdir / "pycache"
        self.notes: list[str] = []
        self._staged: dict[Path, tuple[Path, Path]] = {}

    def _task(self, fn: ColdFunction) -> tuple[Path, Path, str, str]:
        """(task dir = /var/task, the kefu package's dir = /opt/python, module, handler attribute);
        copied once per CodeUri without __pycache__, and children never write bytecode beside them."""
        local = self.fixture.functions[fn.logical_id]
        if local.code_dir not in self._staged:
            run = self.workdir / local.code_dir.name
            self.notes += stage_function(local.code_dir, run / "task")
            shutil.copytree(ROOT / "shared" / "kefu", run / "opt" / "kefu",
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            self._staged[local.code_dir] = (run / "task", run / "opt")
            if (run / "task" / "routing.yaml").is_file():
                write_rules_without_ai(run / "task" / "routing.yaml", run / "task" / RULES_WITHOUT_AI)
        module, _, attr = local.handler_name.rpartition(".")
        return (*self._staged[local.code_dir], module, attr)

    def env(self, fn: ColdFunction, pyc: bool, memory: int | None = None) -> dict[str, str]:
        local = self.fixture.functions[fn.logical_id]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "TZ": ":UTC",
               "AWS_ENDPOINT_URL": self.fixture.endpoint, "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION,
               "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_LAMBDA_FUNCTION_NAME": fn.logical_id, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory or local.memory),
               "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST", "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
               **local.environment}
        if fn.name == "route":  # the route function as it was before the AI answerer: no bot.ai, no model
            env["KEFU_ROUTING_CONFIG"] = str(self._task(fn)[0] / RULES_WITHOUT_AI)
        elif fn.name == "route_ai":
            env.update(KEFU_AI_MODEL_ID=AI_MODEL, AWS_ENDPOINT_URL_BEDROCK_RUNTIME=self.fixture.bedrock_url)
        if pyc:
            env["PYTHONPYCACHEPREFIX"] = str(self.pycache)
        else:
            env["PYTHONDONTWRITEBYTECODE"] = "1"
        return env

    def _event_file(self, fn: ColdFunction) -> Path:
        path = self.workdir / f"event-{fn.name}-{uuid.uuid4().hex[:8]}.json"
        path.write_text(json.dumps(self.fixture.event(fn.name)), encoding="utf-8")
        return path

    def run(self, fn: ColdFunction, pyc: bool = False, importtime: bool = False, prime: bool = False,
            warm: int = 0, memory: int | None = None, wrap: list[str] | None = None) -> dict[str, Any]:
        """One cold start (and ``warm`` more events in the same process, in result["warm"]).
        ``memory``: the MemorySize the child is told; ``wrap``: a command the child runs under
        (a CPU limit: see memory_bench.py)."""
        task, opt, module, attr = self._task(fn)
        env = self.env(fn, pyc, memory)
        if prime:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
        first = self._event_file(fn)
        env.update({"PYTHONPATH": os.pathsep.join([str(task), str(LAYER), str(opt)]),
                    "LAMBDA_TASK_ROOT": str(task), "KEFU_BENCH_EVENT": str(first)})
        code = CHILD.format(mark=MARK, region=REGION, result_mark=RESULT, module=module, attr=attr)
        argv = [*(wrap or []), str(self.python)] + (["-X", "importtime"] if importtime else []) + ["-c", code]
        result = self._spawn(argv, env, task, lambda: self._event_file(fn), warm)
        for one in [result, *result["warm"]]:
            if not served(fn.name, one):
                raise RuntimeError(f"{fn.name}: an event failed: {json.dumps(one)[:300]}\n{result['stderr'][-3000:]}")
        return result

    def baseline(self, service: str) -> dict[str, Any]:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "TZ": ":UTC",
               "AWS_ENDPOINT_URL": self.fixture.endpoint, "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION,
               "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "PYTHONDONTWRITEBYTECODE": "1"}
        code = BASELINE.format(service=service, result_mark=RESULT)
        return self._spawn([str(self.python), "-c", code], env, self.workdir)

    def _spawn(self, argv: list[str], env: dict[str, str], cwd: Path, next_event: Callable[[], Path] | None = None,
               warm: int = 0, timeout: float = 300) -> dict[str, Any]:
        with tempfile.TemporaryFile("w+", encoding="utf-8") as errors:
            started = time.time()
            proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=errors, text=True)
            watchdog = threading.Timer(timeout, proc.kill)
            watchdog.start()
            assert proc.stdin is not None and proc.stdout is not None
            log_bytes = [0]

            def read_result() -> dict[str, Any] | None:
                for line in proc.stdout:  # type: ignore[union-attr]
                    if line.startswith(RESULT):
                        return dict(json.loads(line[len(RESULT):]))
                    log_bytes[0] += len(line.encode())
                return None

            try:
                result = read_result()
                warm_results = []
                for _ in range(warm if result is not None and next_event is not None else 0):
                    proc.stdin.write(f"{next_event()}\n")  # type: ignore[misc]
                    proc.stdin.flush()
                    one = read_result()
                    if one is None:
                        break
                    warm_results.append(one)
                proc.stdin.close()
                proc.stdout.read()
                proc.wait()
            finally:
                watchdog.cancel()
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            errors.seek(0)
            stderr = errors.read()
        if proc.returncode != 0 or result is None or len(warm_results) < warm:
            raise RuntimeError(f"child failed ({proc.returncode}):\n{stderr[-3000:]}")
        result["total_ms"] = (result["wall_end"] - started) * 1000
        result["stderr"] = stderr
        result["log_bytes"] = log_bytes[0]
        result["warm"] = warm_results
        return result
