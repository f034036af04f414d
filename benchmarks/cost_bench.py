"""Cost per 1,000 messages from AWS requests counted in a realistic local run, and the idle cost.

    .venv/bin/python benchmarks/cost_bench.py [--customers 24] [--messages 5] [--prices config/prices.yaml]

The run: the whole local stack (benchmarks/metered_stack.py: `python -m local.stack` plus Lambda's
START/END/REPORT lines) against a moto server and the WeCom simulator, routing on with the shipped
config/routing.yaml and three servicers. Customers arrive a quarter of a second apart from four
entry scenes; each enters, writes --messages messages (every fifth customer sends one of them as an
image) with 0.3-0.8 s between them, gets one servicer reply per message once a servicer holds the
session, and the servicer ends the session. WeCom posts one callback per item, as it does.

What is counted, and how:
- every request that reaches the AWS emulator: moto's own recorder (/moto-api/recorder/...) logs
  each request; this script's own checks carry a user-agent marker and are left out. Service and
  action come from the signature scope and X-Amz-Target (or the S3 method and path);
- DynamoDB units from the recorded requests: writes are 1 unit per KB of the item written (items
  in PutItem and BatchWriteItem requests are sized from the request; UpdateItem and DeleteItem
  from the item's final size, at least 1 KB), doubled in transactions, plus one write per global
  secondary index holding the item; reads are 1 unit per 4 KB (half for eventually consistent),
  per item for GetItem and BatchGetItem, and for a Query the items the same query returns when
  replayed on the final tables (an estimate: the table has moved on since);
- SQS: sends and deletes as recorded (64 KB chunks counted on the bodies); receives as one per
  batch the functions got - the local pollers' empty long polls are not Lambda's, which are
  priced in the idle cost instead;
- Lambda invocations and durations from the METER lines (handler time on this machine, billed per
  started ms, at each function's MemorySize from template.yaml); API Gateway requests = HTTP
  invocations; CloudWatch Logs bytes = every line the functions wrote plus Lambda's platform lines;
- SSM reads (and the KMS decrypt each SecureString costs) happen once per container per five
  minutes, so they are time-based and priced per warm container-month, not per message.
This machine's CPU is several times faster than Lambda arm64 at 256 MB; durations are used as
measured (no factor applied) and a sensitivity line shows the compute cost at 5x.
"""

from __future__ import annotations

import os
import tempfile

_fd, RECORDING = tempfile.mkstemp(prefix="kefu-moto-recording-", suffix=".jsonl")
os.close(_fd)
os.environ["MOTO_RECORDER_FILEPATH"] = RECORDING  # read when moto is imported, so before that

import argparse  # noqa: E402
import base64  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections import Counter, defaultdict  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import boto3  # noqa: E402
import httpx  # noqa: E402
import yaml  # noqa: E402
from botocore.config import Config  # noqa: E402

from common import ROOT, bench, local_stack, stored_count  # noqa: E402, I001 - benchmarks/ is run as a script

DRIVER = "kefu-bench-driver"
SCENES = ("spring_sale", "poster_qr", "mini_program", "wechat_ads")
SERVICERS = ("alice", "bob", "carol")
STACK_LINE = re.compile(r"^(kefu local stack|\[sqs\]|\[api\]|METER )")
METER = re.compile(r"^METER function=(\S+) ms=(\S+) memory=(\d+) records=(\d+) cold=(\d) outcome=(\S+)")
KB, CHUNK = 1024, 64 * 1024
MONTH_SECONDS = 30 * 24 * 3600


# -- the run ---------------------------------------------------------------------------------------

def driver_clients(endpoint: str) -> tuple[Any, Any]:
    config = Config(user_agent_extra=DRIVER, retries={"max_attempts": 5, "mode": "standard"})
    kw = {"endpoint_url": endpoint, "region_name": "us-east-1", "aws_access_key_id": "testing",
          "aws_secret_access_key": "testing", "config": config}
    return boto3.client("dynamodb", **kw), boto3.client("sqs", **kw)


def queued(sqs: Any, urls: list[str]) -> int:
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    return sum(int(v) for url in urls for v in sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"].values())


def customer(sim: Any, open_kfid: str, index: int, messages: int, rnd: random.Random) -> dict[str, int]:
    euid, _ = sim.customer_enter(open_kfid, scene=SCENES[index % len(SCENES)], scene_param=f"c{index}")
    counts = Counter()
    servicer = ""
    image_at = rnd.randrange(messages) if index % 5 == 4 else -1
    for n in range(messages):
        time.sleep(rnd.uniform(0.3, 0.8))
        if n == image_at:
            sim.customer_sends_media(open_kfid, euid, "image")
        else:
            sim.customer_says(open_kfid, euid, f"第{n + 1}个问题：这个商品什么时候发货？")
        counts["customer"] += 1
        if not servicer:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                session = sim.session(open_kfid, euid)
                if session["service_state"] == 3:
                    servicer = session["servicer_userid"]
                    break
                time.sleep(0.05)
        if servicer:
            time.sleep(rnd.uniform(0.1, 0.3))
            sim.servicer_says(open_kfid, euid, servicer, f"您好，关于第{n + 1}个问题：今天下单明天发货。")
            counts["servicer"] += 1
    if servicer:
        sim.end_session(open_kfid, euid, servicer)
    else:
        counts["never_assigned"] += 1
    return counts


def run(args: argparse.Namespace) -> dict[str, Any]:
    script = Path(__file__).resolve().parent / "metered_stack.py"
    # One poller worker per queue: with two, moto's FIFO receive can hand two batches of one message
    # group to two workers at once (real SQS never does), and the losing sync pull then waits out
    # the queue's visibility timeout. Lambda runs one batch per group at a time, as one worker does.
    with local_stack({"KEFU_LOCAL_WORKERS": "1"}, script=script) as (stack, sim, endpoint):
        ddb, sqs = driver_clients(endpoint)
        table = stack.resources["MessagesTable"]
        queue_urls = [stack.resources["SyncQueue"], stack.resources["RouteQueue"]]
        open_kfid = sim.add_account(name="cost")
        for userid in SERVICERS:
            sim.add_servicer(open_kfid, userid)
        # The account's first pull is a replay (stored, never acted on): do it before counting.
        sim.customer_enter(open_kfid, scene="warmup")
        deadline = time.monotonic() + 30
        while stored_count(ddb, table, open_kfid) < 1 or queued(sqs, queue_urls):
            if time.monotonic() > deadline:
                raise SystemExit("the warm-up item was not stored:\n" + stack.output()[-3000:])
            time.sleep(0.1)
        time.sleep(1.0)
        items_before = len(sim.messages(open_kfid))
        line_start, callbacks_start = len(stack.lines), len(sim.callbacks)
        httpx.post(f"{endpoint}/moto-api/recorder/reset-recording")
        httpx.post(f"{endpoint}/moto-api/recorder/start-recording")
        started = time.monotonic()

        rnd = random.Random(args.seed)
        seeds = [rnd.randrange(2**32) for _ in range(args.customers)]
        totals: Counter = Counter()
        lock = threading.Lock()

        def one(index: int) -> None:
            time.sleep(index * 0.25)
            counts = customer(sim, open_kfid, index, args.messages, random.Random(seeds[index]))
            with lock:
                totals.update(counts)

        with ThreadPoolExecutor(max_workers=args.customers) as pool:
            for future in [pool.submit(one, i) for i in range(args.customers)]:
                future.result()
        items = len(sim.messages(open_kfid))
        deadline = time.monotonic() + 90
        last_lines, quiet_since = -1, time.monotonic()
        progress, moved_at = None, time.monotonic()
        while True:
            if len(stack.lines) != last_lines:
                last_lines, quiet_since = len(stack.lines), time.monotonic()
            state = (stored_count(ddb, table, open_kfid), queued(sqs, queue_urls))
            if state != progress:
                progress, moved_at = state, time.monotonic()
            if state[0] >= items and not state[1] and time.monotonic() - quiet_since > 2.5:
                break
            if time.monotonic() > deadline or time.monotonic() - moved_at > 30:
                if args.log:
                    Path(args.log).write_text(stack.output() + "\n", encoding="utf-8")
                raise SystemExit(f"the run did not drain (stored {state[0]} of {items} items, {state[1]} queue "
                                 f"messages left, no progress for {time.monotonic() - moved_at:.0f} s); the stack's "
                                 "last output:\n" + "\n".join(stack.lines[-60:]))
            time.sleep(0.2)
        httpx.post(f"{endpoint}/moto-api/recorder/stop-recording")
        elapsed = time.monotonic() - started
        lines = stack.lines[line_start:]
        requests = parse_recording(Path(RECORDING).read_text(encoding="utf-8"))
        final = final_state(ddb, stack.resources)
        dynamo = dynamodb_units(requests, final, QueryReplay(ddb))
        return {
            "elapsed": elapsed, "lines": lines, "requests": requests, "final": final,
            "dynamo": dynamo, "items": items - items_before, "totals": totals, "resources": stack.resources,
            "callbacks": sum(1 for c in sim.callbacks[callbacks_start:] if c["status"] == 200),
            "sent": len(sim.sent_messages(open_kfid)),
        }


# -- the recording ---------------------------------------------------------------------------------

UNREADABLE: list[int] = []  # offsets of recorded entries that could not be read


def parse_recording(text: str) -> list[dict[str, Any]]:
    """Requests in order as (service, action, body); concatenated entries are split apart."""
    decoder = json.JSONDecoder()
    requests, pos = [], 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            return requests
        try:
            entry, pos = decoder.raw_decode(text, pos)
        except ValueError:  # a torn entry (concurrent appends): skip to the next line, count it
            UNREADABLE.append(pos)
            pos = text.find("\n", pos + 1) if text.find("\n", pos + 1) != -1 else len(text)
            continue
        headers = {k.lower(): v for k, v in (entry.get("headers") or {}).items()}
        if DRIVER in headers.get("user-agent", ""):
            continue
        scope = re.search(r"Credential=[^/]+/\d+/[^/]+/([^/]+)/aws4_request", headers.get("authorization", ""))
        service = scope.group(1) if scope else "unknown"
        raw = entry.get("body") or ""
        body = base64.b64decode(raw) if entry.get("body_encoded") else raw.encode()
        target = headers.get("x-amz-target", "")
        if target:
            action = target.rsplit(".", 1)[-1]
        elif service == "s3":
            path = entry["url"].split("://", 1)[-1].split("/", 1)[-1].split("?", 1)[0]
            action = f"{entry['method']} {'object' if '/' in path.strip('/') else 'bucket'}"
        else:
            found = re.search(rb"Action=([A-Za-z]+)", body)
            action = found.group(1).decode() if found else entry["method"]
        parsed: Any = None
        if target and body:
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
        requests.append({"service": service, "action": action, "body": parsed, "bytes": len(body)})


def attr_size(value: dict[str, Any]) -> int:
    """DynamoDB's size rules for one attribute value (wire format)."""
    (kind, data), = value.items()
    if kind == "S":
        return len(data.encode())
    if kind == "N":
        digits = len(data.lstrip("-").replace(".", "").strip("0")) or 1
        return (digits + 1) // 2 + 1
    if kind == "B":
        return len(base64.b64decode(data))
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(s.encode()) for s in data)
    if kind == "NS":
        return sum(attr_size({"N": n}) for n in data)
    if kind == "BS":
        return sum(len(base64.b64decode(b)) for b in data)
    if kind == "M":
        return 3 + sum(len(k.encode()) + attr_size(v) + 1 for k, v in data.items())
    if kind == "L":
        return 3 + sum(attr_size(v) + 1 for v in data)
    return 1


def item_size(item: dict[str, Any]) -> int:
    return sum(len(name.encode()) + attr_size(value) for name, value in item.items())


def index_shape(table_keys: list[str], gsi: dict[str, Any]) -> dict[str, Any]:
    """An index's keys and what it holds: every attribute (ALL), or the keys plus listed ones."""
    index_keys = [k["AttributeName"] for k in gsi["KeySchema"]]
    projection = gsi.get("Projection", {})
    kind = projection.get("ProjectionType", "ALL")
    held = None if kind == "ALL" else {*table_keys, *index_keys, *projection.get("NonKeyAttributes", [])}
    return {"keys": index_keys, "held": held}


UPDATE_WORDS = re.compile(r"#?[A-Za-z_][A-Za-z0-9_]*")
NOT_ATTRIBUTES = {"SET", "ADD", "REMOVE", "DELETE", "if_not_exists", "list_append"}


def touched(spec: dict[str, Any]) -> set[str]:
    """The attributes an UpdateItem's expression names (over-inclusive: read ones count too)."""
    names = spec.get("ExpressionAttributeNames", {})
    words = UPDATE_WORDS.findall(spec.get("UpdateExpression", ""))
    return {names.get(w, w) for w in words if w not in NOT_ATTRIBUTES and not w.startswith(":")}


def final_state(ddb: Any, resources: dict[str, str]) -> dict[str, Any]:
    """Every table's key schema, index keys and item sizes after the run."""
    tables = {}
    for logical in ("MessagesTable", "StateTable"):
        name = resources[logical]
        described = ddb.describe_table(TableName=name)["Table"]
        keys = [k["AttributeName"] for k in described["KeySchema"]]
        indexes = [index_shape(keys, gsi) for gsi in described.get("GlobalSecondaryIndexes", [])]
        sizes, start = {}, None
        while True:
            page = ddb.scan(TableName=name, **({"ExclusiveStartKey": start} if start else {}))
            for item in page["Items"]:
                sizes[tuple(json.dumps(item[k], sort_keys=True) for k in keys)] = (item_size(item), set(item))
            start = page.get("LastEvaluatedKey")
            if not start:
                break
        tables[name] = {"logical": logical, "keys": keys, "indexes": indexes, "items": sizes}
    return tables


class QueryReplay:
    def __init__(self, ddb: Any) -> None:
        self._ddb = ddb

    def size(self, params: dict[str, Any]) -> int:
        params = {k: v for k, v in params.items() if k not in ("ReturnConsumedCapacity", "ProjectionExpression", "Select")}
        params["Select"] = "ALL_ATTRIBUTES"
        try:
            items = self._ddb.query(**params).get("Items", [])
        except Exception:  # noqa: BLE001 - an estimate: an unreplayable query counts its minimum
            return 0
        return sum(item_size(item) for item in items)


def dynamodb_units(requests: list[dict[str, Any]], tables: dict[str, Any], replay: QueryReplay) -> dict[str, Any]:
    wru: Counter = Counter()
    rru: Counter = Counter()
    calls: Counter = Counter()

    def key_of(table: str, key: dict[str, Any]) -> tuple:
        return tuple(json.dumps(key[k], sort_keys=True) for k in tables[table]["keys"])

    def known(table: str, key: dict[str, Any]) -> tuple[int, set]:
        return tables[table]["items"].get(key_of(table, key), (0, set()))

    by_kind: Counter = Counter()

    def kind_of(key: dict[str, Any]) -> str:
        """What a StateTable item is, from its partition key's prefix (cursor#, session#, ...)."""
        pk = key.get("pk", {}).get("S", "")
        return pk.split("#", 1)[0] if "#" in pk else "message"

    def write(table: str, size: int, attrs: set, factor: int = 1, key: dict[str, Any] | None = None,
              item: dict[str, Any] | None = None, changed: set | None = None) -> None:
        """One write of an item of ``size`` bytes holding ``attrs``: the table's units, and each
        index's where the item is in it and the write changes what the index holds (a put: the
        whole entry; an update: only when it sets an attribute the index holds, ``changed``).
        An index holding keys and a few attributes is sized from ``item`` when known, else one unit."""
        if table not in tables:
            return
        units = max(1, math.ceil(size / KB)) * factor
        logical = tables[table]["logical"]
        wru[logical] += units
        by_kind[kind_of(key or {})] += units
        for index in tables[table]["indexes"]:
            if not set(index["keys"]) <= attrs:
                continue
            held = index["held"]
            if changed is not None and held is not None and not (changed & held):
                continue
            index_units = units
            if held is not None:
                index_units = factor * (max(1, math.ceil(item_size({k: v for k, v in item.items() if k in held}) / KB))
                                        if item is not None else 1)
            wru[f"{logical} (indexes)"] += index_units
            by_kind[kind_of(key or {})] += index_units

    def read(table: str, size: int, consistent: bool) -> None:
        if table not in tables:
            return
        rru[tables[table]["logical"]] += max(1, math.ceil(size / (4 * KB))) * (1.0 if consistent else 0.5)

    for request in requests:
        if request["service"] != "dynamodb" or not isinstance(request["body"], dict):
            continue
        body, action = request["body"], request["action"]
        calls[action] += 1
        table = body.get("TableName", "")
        if action == "PutItem":
            write(table, item_size(body["Item"]), set(body["Item"]), key=body["Item"], item=body["Item"])
        elif action == "UpdateItem":
            size, attrs = known(table, body["Key"])
            write(table, size, attrs, key=body["Key"], changed=touched(body))
        elif action == "DeleteItem":
            size, attrs = known(table, body["Key"])
            write(table, size, attrs, key=body["Key"])
        elif action == "BatchWriteItem":
            for name, entries in body.get("RequestItems", {}).items():
                for entry in entries:
                    if "PutRequest" in entry:
                        item = entry["PutRequest"]["Item"]
                        write(name, item_size(item), set(item), key=item, item=item)
                    else:
                        size, attrs = known(name, entry["DeleteRequest"]["Key"])
                        write(name, size, attrs, key=entry["DeleteRequest"]["Key"])
        elif action == "TransactWriteItems":
            for entry in body.get("TransactItems", []):
                (kind, spec), = entry.items()
                if kind == "Put":
                    write(spec["TableName"], item_size(spec["Item"]), set(spec["Item"]), factor=2, key=spec["Item"],
                          item=spec["Item"])
                elif kind == "Update":
                    size, attrs = known(spec["TableName"], spec["Key"])
                    write(spec["TableName"], size, attrs, factor=2, key=spec["Key"], changed=touched(spec))
                else:
                    size, attrs = known(spec["TableName"], spec["Key"])
                    write(spec["TableName"], size, attrs if kind != "ConditionCheck" else set(), factor=2,
                          key=spec["Key"])
        elif action == "GetItem":
            read(table, known(table, body["Key"])[0], bool(body.get("ConsistentRead")))
        elif action == "BatchGetItem":
            for name, spec in body.get("RequestItems", {}).items():
                for key in spec.get("Keys", []):
                    read(name, known(name, key)[0], bool(spec.get("ConsistentRead")))
        elif action == "Query":
            read(table, replay.size(body), bool(body.get("ConsistentRead")))
        elif action == "TransactGetItems":
            for entry in body.get("TransactItems", []):
                spec = entry["Get"]
                read(spec["TableName"], known(spec["TableName"], spec["Key"])[0] * 2, True)
    return {"wru": wru, "rru": rru, "calls": calls, "wru_by_kind": by_kind}


# -- pricing ---------------------------------------------------------------------------------------

def sqs_billed(requests: list[dict[str, Any]], batches: int) -> tuple[Counter, int, dict[str, int]]:
    recorded = Counter(r["action"] for r in requests if r["service"] == "sqs")
    billed = 0
    payload = 0
    for r in requests:
        if r["service"] != "sqs" or not isinstance(r["body"], dict):
            continue
        if r["action"] == "SendMessage":
            size = len(str(r["body"].get("MessageBody", "")).encode())
        elif r["action"] == "SendMessageBatch":
            size = sum(len(str(e.get("MessageBody", "")).encode()) for e in r["body"].get("Entries", []))
        elif r["action"] in ("DeleteMessage", "DeleteMessageBatch"):
            billed += 1
            continue
        else:
            continue
        payload += size
        billed += max(1, math.ceil(size / CHUNK))
    receives = max(batches, math.ceil(payload / CHUNK))  # one receive per batch delivered, 64 KB chunks
    billed += receives
    return recorded, billed, {"receives": receives, "payload": payload}


def emf_metrics(lines: list[str]) -> set[tuple]:
    """Distinct CloudWatch metrics (namespace, name, dimensions) in the EMF blobs of the logs."""
    found = set()
    for line in lines:
        if '"_aws"' not in line:
            continue
        try:
            blob = json.loads(line)
        except ValueError:
            continue
        for directive in blob.get("_aws", {}).get("CloudWatchMetrics", []):
            for dims in directive.get("Dimensions", []):
                dimension = tuple((d, str(blob.get(d))) for d in sorted(dims))
                for metric in directive.get("Metrics", []):
                    found.add((directive.get("Namespace"), metric.get("Name"), dimension))
    return found


BILLING = {  # resource type -> how it bills; the types with a monthly charge are priced in idle_cost()
    "AWS::Serverless::Function": "per request and GB-second",
    "AWS::Serverless::LayerVersion": "free (code storage)",
    "AWS::Serverless::HttpApi": "per request",
    "AWS::DynamoDB::Table": "per request unit (on-demand); storage and PITR per GB kept",
    "AWS::S3::Bucket": "per request; storage per GB kept",
    "AWS::S3::BucketPolicy": "free",
    "AWS::SQS::Queue": "per request",
    "AWS::SQS::QueuePolicy": "free",
    "AWS::Logs::LogGroup": "per GB ingested; storage per GB kept",
    "AWS::CloudWatch::Alarm": "per alarm metric-month",
    "AWS::CloudWatch::Dashboard": "per dashboard-month",
    "AWS::IAM::Role": "free",
    "AWS::Events::Rule": "free (custom events published are billed per event)",
}


ACCESS_LOG_SAMPLE = {"requestId": "Jv2dEhx3IAMEbCw=", "identity.sourceIp": "101.226.103.14",
                     "requestTime": "25/Nov/2026:21:46:11 +0000", "routeKey": "POST /callback", "status": "200",
                     "responseLength": "7", "integrationLatency": "24", "integrationErrorMessage": "-",
                     "httpMethod": "POST", "path": "/callback", "protocol": "HTTP/1.1"}


def load_template() -> Any:
    from local.template import Template

    return Template.load(ROOT / "template.yaml", overrides={"WeComCorpId": "wwcost"})


PLATFORM_LINE = re.compile(r"^(START|END|REPORT) RequestId: ")


def log_kinds(lines: list[str]) -> Counter:
    """Log bytes by kind of line: "<service>: <message>" for a function's JSON line, "<service>:
    metrics" for an EMF blob, the first word for anything else."""
    kinds: Counter = Counter()
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if isinstance(record, dict):
            kind = f"{record.get('service', '?')}: " + ("metrics" if "_aws" in record else str(record.get("message"))[:40])
        else:
            kind = line.split(" ", 1)[0][:40]
        kinds[kind] += len(line.encode()) + 1
    return kinds


def platform_lines_ingested() -> bool:
    """Whether Lambda's START/END/REPORT lines reach CloudWatch Logs: not when the template's
    LoggingConfig sets the system log level to WARN or above (they are INFO)."""
    config = ((load_template().body.get("Globals") or {}).get("Function") or {}).get("LoggingConfig") or {}
    return str(config.get("SystemLogLevel") or "INFO") in ("DEBUG", "INFO")


def access_log_bytes() -> int:
    """Bytes of one API Gateway access log line, rendering the template's format with a callback's
    typical values (the local stack writes no access log); 0 when access logging is off."""
    template = load_template()
    for res in template.body["Resources"].values():
        if res["Type"] == "AWS::Serverless::HttpApi":
            settings = template.resolve((res.get("Properties") or {}).get("AccessLogSettings") or {})
            if settings.get("Format"):
                line = re.sub(r"\$context\.([A-Za-z.]+)", lambda m: ACCESS_LOG_SAMPLE.get(m.group(1), "-"),
                              str(settings["Format"]))
                return len(line.encode()) + 1
    return 0


def idle_cost(prices: dict[str, Any]) -> tuple[float, list[str]]:
    """Monthly cost of the default template with no traffic, resource by resource."""
    template = load_template()
    monthly = prices["monthly"]
    types: Counter = Counter()
    charges: defaultdict[str, float] = defaultdict(float)
    problems = []
    for logical, res in template.body["Resources"].items():
        if res.get("Condition") and not template.condition(res["Condition"]):
            continue  # not created with the default parameters
        kind, props = res["Type"], res.get("Properties") or {}
        types[kind] += 1
        if kind == "AWS::CloudWatch::Alarm":
            read = [m for m in props.get("Metrics") or [] if "MetricStat" in m]
            charges[kind] += max(1, len(read)) * monthly["cloudwatch_alarm_standard"]
        elif kind == "AWS::CloudWatch::Dashboard":
            charges[kind] += monthly["cloudwatch_dashboard"]
        elif kind not in BILLING:
            problems.append(f"{logical} ({kind}) is not classified: check how it bills")
        if kind == "AWS::DynamoDB::Table" and props.get("BillingMode") != "PAY_PER_REQUEST":
            problems.append(f"{logical} is not on-demand")
        if kind == "AWS::Serverless::Function" and props.get("ProvisionedConcurrencyConfig"):
            problems.append(f"{logical} has provisioned concurrency")
        if kind in ("AWS::EC2::NatGateway", "AWS::EC2::VPCEndpoint"):
            problems.append(f"{logical} ({kind}) bills by the hour")
    lines = [f"{kind} x{count}: {BILLING.get(kind, 'NOT CLASSIFIED')}; idle ${charges[kind]:.2f}/month"
             for kind, count in sorted(types.items())]
    sources = [e for res in template.body["Resources"].values() if res["Type"] == "AWS::Serverless::Function"
               for e in ((res.get("Properties") or {}).get("Events") or {}).values() if e.get("Type") == "SQS"]
    idle = prices["sqs_event_source_idle"]
    polls = len(sources) * idle["pollers_per_queue"] * MONTH_SECONDS / idle["long_poll_seconds"]
    polling = polls * prices["per_request"]["sqs_fifo_request"]
    lines.append(f"Lambda's SQS pollers on {len(sources)} queues: about {polls / 1e6:.2f} million empty receives a month "
                 f"(assumed {idle['pollers_per_queue']} pollers per queue, {idle['long_poll_seconds']} s long polls) "
                 f"= ${polling:.2f}/month")
    lines.extend(f"WARNING: {p}" for p in problems)
    return sum(charges.values()) + polling, lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=24)
    parser.add_argument("--messages", type=int, default=5, help="customer messages per session")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--prices", default=str(ROOT / "config" / "prices.yaml"))
    parser.add_argument("--log", help="write the stack's whole output here when the run does not drain")
    args = parser.parse_args()
    prices = yaml.safe_load(Path(args.prices).read_text(encoding="utf-8"))
    pr, pu = prices["per_request"], prices["per_unit"]
    try:
        result = run(args)
    finally:
        Path(RECORDING).unlink(missing_ok=True)

    lines, requests = result["lines"], result["requests"]
    meters = [m.groups() for m in (METER.match(line) for line in lines) if m]
    invocations: Counter = Counter()
    gb_seconds: defaultdict[str, float] = defaultdict(float)
    handler_ms: defaultdict[str, list[float]] = defaultdict(list)
    colds: Counter = Counter()
    batches = 0
    for function, ms, memory, records, cold, outcome in meters:
        invocations[function] += 1
        handler_ms[function].append(float(ms))
        colds[function] += int(cold)
        gb_seconds[function] += math.ceil(float(ms)) / 1000 * int(memory) / 1024
        if int(records):
            batches += 1
    http_requests = invocations["CallbackFunction"] + invocations["LinksFunction"]
    log_lines = [line for line in lines if not STACK_LINE.match(line)]
    platform = sum(1 for line in log_lines if PLATFORM_LINE.match(line))
    if not platform_lines_ingested():
        log_lines = [line for line in log_lines if not PLATFORM_LINE.match(line)]
    function_log_bytes = sum(len(line.encode()) + 1 for line in log_lines)
    access_bytes = access_log_bytes() * http_requests
    log_bytes = function_log_bytes + access_bytes
    sqs_recorded, sqs_requests, sqs_info = sqs_billed(requests, batches)
    dynamo = result["dynamo"]
    wru, rru = sum(dynamo["wru"].values()), sum(dynamo["rru"].values())
    s3_puts = sum(1 for r in requests if r["service"] == "s3" and r["action"] == "PUT object")
    s3_gets = sum(1 for r in requests if r["service"] == "s3" and r["action"] == "GET object")
    ssm_calls = [r for r in requests if r["service"] == "ssm"]
    secure_reads = sum(len((r["body"] or {}).get("Names", [])) or 1 for r in ssm_calls if r["action"].startswith("GetParameter"))
    messages = result["totals"]["customer"] + result["totals"]["servicer"]
    scale = 1000 / messages

    costs = {
        "API Gateway HTTP API requests": http_requests * pr["apigw_http_request"],
        "Lambda requests": sum(invocations.values()) * pr["lambda_request"],
        "Lambda compute (arm64)": sum(gb_seconds.values()) * pu["lambda_gb_second_arm64"],
        "SQS FIFO requests": sqs_requests * pr["sqs_fifo_request"],
        "DynamoDB writes": wru * pr["dynamodb_write_unit"],
        "DynamoDB reads": rru * pr["dynamodb_read_unit"],
        "S3 requests": s3_puts * pr["s3_put"] + s3_gets * pr["s3_get"],
        "CloudWatch Logs ingestion": log_bytes / 2**30 * pu["logs_ingested_gb"],
    }
    per_k = {name: value * scale for name, value in costs.items()}
    total_k = sum(per_k.values())
    compute_5x = per_k["Lambda compute (arm64)"] * 5

    print(f"cost model: {args.customers} customers x {args.messages} messages ({result['totals']['customer']} customer + "
          f"{result['totals']['servicer']} servicer messages = {messages} messages, {result['items']} items with the "
          f"entries, session ends and images) in {result['elapsed']:.1f} s through the local stack; "
          f"prices {prices['region']} {prices['as_of']} (config/prices.yaml), free tiers ignored")
    if result["totals"]["never_assigned"]:
        print(f"  note: {result['totals']['never_assigned']} customer(s) never reached a servicer (pool)")
    print(f"  WeCom callbacks answered 200: {result['callbacks']}; messages Kefu sent (welcomes): {result['sent']}")
    print("  counted in the run (per 1,000 messages in brackets):")
    print(f"    API Gateway requests: {http_requests} ({http_requests * scale:.0f})")
    for function in sorted(invocations):
        times = handler_ms[function]
        print(f"    Lambda {function}: {invocations[function]} invocations ({invocations[function] * scale:.0f}), "
              f"handler time median {statistics.median(times):.1f} ms, mean {statistics.fmean(times):.1f} ms "
              f"({colds[function]} in a new environment, its init included), "
              f"{gb_seconds[function]:.3f} GB-s ({gb_seconds[function] * scale:.2f})")
    print(f"    SQS requests billed: {sqs_requests} ({sqs_requests * scale:.0f}) = sends and deletes as recorded "
          f"{dict(sorted((k, v) for k, v in sqs_recorded.items() if k != 'ReceiveMessage'))} + {sqs_info['receives']} "
          f"receives (one per batch delivered); the local pollers' {sqs_recorded.get('ReceiveMessage', 0)} receives "
          "(mostly empty 1 s polls) are not counted")
    print(f"    DynamoDB calls: {dict(sorted(dynamo['calls'].items()))}")
    print(f"    DynamoDB write units: {wru:.0f} ({wru * scale:.0f}) {dict(sorted(dynamo['wru'].items()))}; "
          f"read units: {rru:.1f} ({rru * scale:.0f}) {dict(sorted(dynamo['rru'].items()))}")
    print("    DynamoDB write units by item kind (partition key prefix; 'message' = MessagesTable with its indexes): "
          + ", ".join(f"{k} {v:.0f}" for k, v in dynamo["wru_by_kind"].most_common()))
    print(f"    S3: {s3_puts} PUT ({s3_puts * scale:.0f}), {s3_gets} GET")
    print(f"    CloudWatch Logs: {log_bytes} bytes ({log_bytes * scale / 1024:.0f} KiB) = the functions' "
          f"{len(log_lines)} lines, {function_log_bytes} bytes "
          + (f"({platform} of them Lambda's START/END/REPORT) " if platform_lines_ingested() else
             f"(Lambda's {platform} START/END/REPORT lines left out: the template's SystemLogLevel is WARN) ")
          + f"+ API access log lines estimated from the template's format, {access_bytes} bytes")
    print(f"    log bytes per message: {log_bytes / messages:.0f}; the largest kinds of line (bytes per message): "
          + ", ".join(f"{kind} {size / messages:.0f}" for kind, size in log_kinds(log_lines).most_common(8)))
    if UNREADABLE:
        print(f"    note: {len(UNREADABLE)} recorded request(s) could not be read and are not counted")
    print(f"    SSM: {len(ssm_calls)} GetParameters calls reading {secure_reads} SecureStrings (time-based, below)")
    print("  $ per 1,000 messages:")
    for name, value in sorted(per_k.items(), key=lambda kv: -kv[1]):
        print(f"    {name}: ${value:.5f}")
    print(f"    total: ${total_k:.4f} per 1,000 messages (${total_k * 1000:.2f} per million)")
    print(f"    sensitivity: if every handler ms took 5x longer on Lambda arm64 at 256 MB, compute would be "
          f"${compute_5x:.5f} and the total ${total_k - per_k['Lambda compute (arm64)'] + compute_5x:.4f}")

    metrics = emf_metrics(log_lines)
    metric_month = len(metrics) * prices["monthly"]["cloudwatch_custom_metric"]
    container_month = (MONTH_SECONDS / 300) * 3 * pr["kms_request"]
    print("  time-based, not per message:")
    print(f"    CloudWatch custom metrics (EMF) seen in the run: {len(metrics)} distinct name/dimension sets; each "
          f"costs ${prices['monthly']['cloudwatch_custom_metric']:.2f} a month when published every hour, pro-rated by "
          f"the hours with data: up to ${metric_month:.2f}/month under steady traffic, $0 when idle")
    print(f"    SSM: each warm container reads its 3 SecureStrings every 5 minutes: KMS ${container_month:.3f} per "
          "container-month (SSM standard parameters are free)")
    idle_total, idle_lines = idle_cost(prices)
    print(f"  idle cost of the default template: ${idle_total:.2f}/month at list prices "
          "(log, table and bucket storage of what was kept excluded):")
    for line in idle_lines:
        print(f"    {line}")
    print("    AWS's always-free tiers (10 alarm metrics, 3 dashboards, 1 million SQS requests a month) cover all of "
          "it in an account where nothing else uses them; the figure above ignores them")

    bench("cost.per_1000_messages", round(total_k, 4), "USD", "list prices, us-east-1, free tiers ignored")
    bench("cost.per_million_messages", round(total_k * 1000, 2), "USD", "the same, per million messages")
    for name, value in per_k.items():
        key = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
        bench(f"cost.per_1000.{key}", round(value, 6), "USD", name)
    bench("cost.per_1000.compute_at_5x", round(compute_5x, 6), "USD", "Lambda compute if handlers ran 5x slower")
    bench("cost.idle_per_month", round(idle_total, 2), "USD", "alarms, dashboards, Lambda's SQS pollers, at list prices")
    bench("cost.custom_metrics", len(metrics), "metrics", "distinct EMF metrics (each $0.30/month while published)")
    bench("cost.requests.apigw_per_1000", round(http_requests * scale), "requests", "API Gateway")
    bench("cost.requests.lambda_per_1000", round(sum(invocations.values()) * scale), "invocations", "all functions")
    bench("cost.requests.sqs_per_1000", round(sqs_requests * scale), "requests", "SQS, billed")
    bench("cost.units.dynamodb_write_per_1000", round(wru * scale), "WRU", "tables and indexes")
    bench("cost.units.dynamodb_read_per_1000", round(rru * scale), "RRU", "")
    bench("cost.logs_per_1000", round(log_bytes * scale / 1024), "KiB", "CloudWatch Logs ingested")


if __name__ == "__main__":
    main()
