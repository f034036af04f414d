"""Load test through the local stack: the offered message rate is stepped up until the stack stops
keeping up; reported: the highest rate this machine sustains and where the time went.

    .venv/bin/python benchmarks/load_bench.py [--rates 2,4,6,8,12,...] [--step 15] [--accounts 2]
                                              [--customers 40] [--servicers 5] [--replies 0.5] [--workers 2]

The stack is the one `make dev` runs (benchmarks/metered_stack.py: `python -m local.stack` plus a
METER line per invocation) with the shipped config/routing.yaml, against a moto server in a process
of its own and the WeCom simulator in this one, so the CPU each uses is measured apart. Before the
steps, --customers per account enter and write once, and are welcomed and assigned to one of
--servicers (not counted). Each step then offers --step seconds of messages at a fixed rate, open
loop (a message is due every 1/rate s whatever happened to the last one): a customer of a random
account writes, or - for a --replies share - the servicer holding a random customer's session
replies. As at WeCom, every message makes the simulator POST a kf_msg_or_event callback (from a
pool of 32 threads). A message is done when the route function has taken it (the METER lines
count the records each route invocation got; the sync's "account synced" lines count what was
stored).

A step keeps up when the driver offered at least 90% of the rate, every callback was answered
200, and at the step's end no more than two seconds' worth of messages (at least 5) was still
waiting for the route function, all of them taken within 15 s after. The steps stop at the first
that does not keep up, after one more step half-way back from it. Where the time went, per step: the CPU time of each process (the stack -
every function, the pollers, the HTTP server; moto; this one - the simulator and the driver) as a
share of the step, the machine's cores beside it; and per function its invocations, the records
they got, and its busy time (the sum of its handler times over the step: 1.0 = one invocation
running all the time, against the stack's --workers pollers per queue), and the AWS requests per
message by service where the METER lines carry them.

What it measures is the local stack on this machine, not Lambda: one Python process runs every
function (one GIL), moto is far slower than DynamoDB and SQS, and the machine is shared. The
capacity plan (benchmarks/capacity_plan.md) says which AWS and WeCom limits bite first deployed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import ROOT, bench, free_port, stack_env, start_stack  # noqa: I001 - benchmarks/ is run as a script

METER = re.compile(r"^METER function=(\S+) ms=(\S+) memory=\d+ records=(\d+) cold=\d outcome=(\S+)"
                   r"(?: cpu_ms=(\S+))?(?: calls=(\S+))?")
TICK = os.sysconf("SC_CLK_TCK")
DRIVER_THREADS = 32
LAG_SECONDS = 2.0  # at the step's end, at most this many seconds' worth of messages may wait
DRAIN_SECONDS = 15.0
MOTO = """
import sys, time
sys.path[:0] = [{root!r}, {shared!r}]
from local.emulator import start_moto
server = start_moto("127.0.0.1", {port})
print("moto ready", flush=True)
sys.stdin.read()  # until the benchmark closes it
server.stop()
"""


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def own_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


@dataclass
class Tally:
    """What the stack's output says happened, read as it comes."""

    routed: int = 0
    stored: int = 0
    invocations: Counter = field(default_factory=Counter)
    records: Counter = field(default_factory=Counter)
    busy_ms: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    cpu_ms: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    calls: Counter = field(default_factory=Counter)  # AWS requests by service, where the METER lines say
    errors: Counter = field(default_factory=Counter)
    read: int = 0

    def update(self, lines: list[str]) -> None:
        new, self.read = lines[self.read:], len(lines)
        for line in new:
            meter = METER.match(line)
            if meter:
                function, ms, records, outcome, cpu, calls = meter.groups()
                self.invocations[function] += 1
                self.records[function] += int(records)
                self.busy_ms[function] += float(ms)
                if cpu:
                    self.cpu_ms[function] += float(cpu)
                for call in (calls or "-").split(","):
                    if ":" in call:
                        operation, _, count = call.rpartition(":")
                        self.calls[operation.split(".")[0]] += int(count)
                if outcome != "ok":
                    self.errors[function] += 1
                if function == "RouteFunction":
                    self.routed += int(records)
            elif line.startswith("{") and '"account synced"' in line:
                try:
                    self.stored += int(json.loads(line).get("stored") or 0)
                except (ValueError, TypeError):
                    pass

    def copy(self) -> Tally:
        return Tally(self.routed, self.stored, Counter(self.invocations), Counter(self.records),
                     defaultdict(float, self.busy_ms), defaultdict(float, self.cpu_ms), Counter(self.calls),
                     Counter(self.errors), self.read)


class Load:
    """The moto process, the simulator, the stack and the conversations the steps drive."""

    def __init__(self, args: argparse.Namespace) -> None:
        from local.wecom_sim import WeComSimulator  # noqa: PLC0415 - after common.py put the tree on sys.path

        self.args = args
        port = free_port()
        self.moto = subprocess.Popen([sys.executable, "-c", MOTO.format(root=str(ROOT), shared=str(ROOT / "shared"),
                                                                       port=port)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.moto.stdout is not None
        if self.moto.stdout.readline().strip() != "moto ready":
            raise RuntimeError("the moto process did not start")
        self.endpoint = f"http://127.0.0.1:{port}"
        self.sim = WeComSimulator()
        self.sim.start()
        script = Path(__file__).resolve().parent / "metered_stack.py"
        env = stack_env(self.endpoint, self.sim, f"kefu-l{uuid.uuid4().hex[:6]}",
                        KEFU_LOCAL_WORKERS=str(args.workers), KEFU_LOCAL_SCHEDULE_SECONDS="off")
        self.stack = start_stack(env, [sys.executable, str(script)])
        self.sim.set_callback_url(f"{self.stack.url}/callback")
        self.tally = Tally()
        self.conversations: list[tuple[str, str]] = []  # (open_kfid, external_userid)
        self.assigned: dict[tuple[str, str], str] = {}  # -> servicer holding the session
        self.rnd = random.Random(args.seed)
        self.failures: Counter = Counter()
        self.setup_calls: Counter = Counter()

    def close(self) -> None:
        self.stack.stop()
        self.sim.stop()
        if self.moto.stdin:
            self.moto.stdin.close()
        try:
            self.moto.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.moto.kill()

    def poll(self) -> Tally:
        self.tally.update(self.stack.lines)
        return self.tally

    def wait_routed(self, target: int, timeout: float) -> float | None:
        """Seconds until the route function has taken ``target`` records in all (None: not in time)."""
        started = time.monotonic()
        while self.poll().routed < target:
            if time.monotonic() - started > timeout:
                return None
            time.sleep(0.1)
        return time.monotonic() - started

    def setup(self) -> float:
        """Accounts, servicers, and customers who entered, wrote once, and were assigned."""
        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            for a in range(self.args.accounts):
                open_kfid = self.sim.add_account(name=f"load-{a}")
                for s in range(self.args.servicers):
                    self.sim.add_servicer(open_kfid, f"agent{a}x{s}")
                entered = list(pool.map(lambda _n, o=open_kfid: self.sim.customer_enter(o, scene="load")[0],
                                        range(self.args.customers)))
                self.conversations += [(open_kfid, euid) for euid in entered]
            list(pool.map(lambda c: self.sim.customer_says(c[0], c[1], "你好，我想咨询一下"), self.conversations))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            for conversation in self.conversations:
                if conversation not in self.assigned:
                    session = self.sim.session(*conversation)
                    if session["service_state"] == 3 and session["servicer_userid"]:
                        self.assigned[conversation] = session["servicer_userid"]
            if len(self.assigned) == len(self.conversations):
                break
            time.sleep(0.5)
        self.poll()
        self.setup_calls = Counter(str(c["path"]).removeprefix("/cgi-bin/") for c in self.sim.calls)
        return time.monotonic() - started

    def one_message(self, n: int) -> None:
        conversation = self.rnd.choice(self.conversations)
        try:
            if conversation in self.assigned and self.rnd.random() < self.args.replies:
                self.sim.servicer_says(*conversation, self.assigned[conversation], f"您好，第{n}条回复")
            else:
                self.sim.customer_says(*conversation, f"第{n}条消息：请问什么时候发货？")
        except Exception as exc:  # noqa: BLE001 - counted and reported, the load goes on
            self.failures[type(exc).__name__] += 1

    def step(self, rate: float, seconds: float) -> dict[str, Any]:
        self.poll()
        before = self.tally.copy()
        callbacks_before, wecom_before = len(self.sim.callbacks), len(self.sim.calls)
        cpu_before = {"stack": cpu_seconds(self.stack.process.pid), "moto": cpu_seconds(self.moto.pid),
                      "simulator + driver": own_cpu()}
        total = int(rate * seconds)
        sent = [0]
        middle = (time.monotonic(), before.routed)
        started = time.monotonic()
        with ThreadPoolExecutor(DRIVER_THREADS) as pool:
            def send(n: int) -> None:
                self.one_message(n)
                sent[0] += 1

            for n in range(total):
                if n == total // 2:
                    middle = (time.monotonic(), self.poll().routed)
                due = started + n / rate
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                pool.submit(send, n)
        end = time.monotonic()  # every message posted and its callback answered
        at_end = self.poll().copy()
        cpu_after = {"stack": cpu_seconds(self.stack.process.pid), "moto": cpu_seconds(self.moto.pid),
                     "simulator + driver": own_cpu()}
        waiting = before.routed + total - at_end.routed
        drain = self.wait_routed(before.routed + total, DRAIN_SECONDS)
        statuses = Counter(c["status"] for c in self.sim.callbacks[callbacks_before:])
        wecom = Counter(str(c["path"]).removeprefix("/cgi-bin/") for c in self.sim.calls[wecom_before:])
        wall = end - started
        offered = total / max(wall, 1e-9)  # a slow callback holds its driver thread: fewer offered
        kept_up = (offered >= 0.9 * rate and set(statuses) <= {200} and drain is not None
                   and waiting <= max(5, LAG_SECONDS * rate))
        return {"rate": rate, "total": total, "offered": offered, "wall": wall, "kept_up": kept_up,
                "waiting": waiting, "drain": drain, "statuses": dict(statuses),
                "cpu": {k: cpu_after[k] - cpu_before[k] for k in cpu_before},
                "routed": at_end.routed - before.routed, "stored": at_end.stored - before.stored,
                "throughput": (at_end.routed - middle[1]) / max(end - middle[0], 1e-9),
                "calls": at_end.calls - before.calls, "wecom": wecom,
                "invocations": at_end.invocations - before.invocations, "records": at_end.records - before.records,
                "busy": {f: (at_end.busy_ms[f] - before.busy_ms[f]) / 1000 / wall for f in at_end.busy_ms},
                "fn_cpu": {f: (at_end.cpu_ms[f] - before.cpu_ms[f]) / 1000 / wall for f in at_end.cpu_ms},
                "errors": at_end.errors - before.errors}


def describe(r: dict[str, Any], workers: int) -> list[str]:
    cores = os.cpu_count() or 1
    cpu = ", ".join(f"{name} {seconds / r['wall']:.0%}" for name, seconds, in sorted(r["cpu"].items(), key=lambda kv: -kv[1]))
    lines = [f"{r['rate']:g} msg/s offered for {r['wall']:.1f} s ({r['total']} messages, driver reached "
             f"{r['offered']:.0f} msg/s): {'KEPT UP' if r['kept_up'] else 'FELL BEHIND'} - at the end "
             f"{r['waiting']} waiting for the route function, "
             + (f"all taken {r['drain']:.1f} s later" if r["drain"] is not None else f"not all taken within {DRAIN_SECONDS:.0f} s")
             + f"; callbacks answered {r['statuses']}; the route function took {r['throughput']:.1f} msg/s over the "
             "step's second half",
             f"  CPU, as a share of one core over the step (the machine has {cores}): {cpu}; "
             f"{sum(r['cpu'].values()) / r['wall'] / cores:.0%} of the machine"]
    functions = sorted(r["invocations"], key=lambda f: -r["busy"].get(f, 0.0))
    parts = []
    for f in functions:
        inv, rec = r["invocations"][f], r["records"][f]
        per = f", {r['busy'][f] * r['wall'] / max(rec or inv, 1) * 1000:.0f} ms per {'record' if rec else 'call'}"
        cpu_part = f", CPU {r['fn_cpu'][f]:.2f}" if f in r["fn_cpu"] else ""
        parts.append(f"{f.removesuffix('Function')} {inv} calls/{rec} records, busy {r['busy'][f]:.2f}{cpu_part}{per}")
    lines.append(f"  functions (busy = handler time / step time; {workers} poller(s) per queue): " + "; ".join(parts))
    per_message = {name: seconds / max(r["total"], 1) * 1000 for name, seconds in r["cpu"].items()}
    lines.append("  CPU ms per message: " + ", ".join(f"{name} {ms:.0f}" for name, ms in per_message.items())
                 + (" - AWS requests per message: " + ", ".join(f"{k} {v / max(r['total'], 1):.1f}"
                                                              for k, v in r["calls"].most_common())
                    if r["calls"] else ""))
    lines.append("  WeCom API calls per message (this step and its drain): "
                 + (", ".join(f"{api} {n / max(r['total'], 1):.2f}" for api, n in r["wecom"].most_common()) or "none"))
    if r["errors"]:
        lines.append(f"  invocations that raised: {dict(r['errors'])}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rates", default="2,4,6,8,12,16,24,32,48,64,96,128",
                        help="offered messages per second, in order; after the first that falls behind, one step "
                             "half-way back from it")
    parser.add_argument("--step", type=float, default=15.0, help="seconds per step")
    parser.add_argument("--accounts", type=int, default=2)
    parser.add_argument("--customers", type=int, default=40, help="per account")
    parser.add_argument("--servicers", type=int, default=5, help="per account")
    parser.add_argument("--replies", type=float, default=0.5, help="share of messages that are servicers' replies")
    parser.add_argument("--workers", type=int, default=2, help="KEFU_LOCAL_WORKERS: concurrent batches per queue")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    load = Load(args)
    results = []
    try:
        setup = load.setup()
        print(f"load: {args.accounts} account(s) x {args.customers} customers, {args.servicers} servicers each; "
              f"{len(load.assigned)} of {len(load.conversations)} sessions assigned in {setup:.0f} s of set-up "
              f"(not counted); steps of {args.step:g} s, {args.replies:.0%} of the messages servicers' replies; "
              f"KEFU_LOCAL_WORKERS={args.workers}; this machine: {os.cpu_count()} cores, load average "
              f"{os.getloadavg()[0]:.2f} before")
        sessions = max(len(load.conversations), 1)
        print("  WeCom API calls per new session in the set-up (enter, welcome, first message, assignment): "
              + ", ".join(f"{api} {n / sessions:.2f}" for api, n in load.setup_calls.most_common()))
        rates = [float(r) for r in args.rates.split(",")]
        for rate in rates:
            result = load.step(rate, args.step)
            results.append(result)
            for line in describe(result, args.workers):
                print(f"  {line}", flush=True)
            if not result["kept_up"]:
                kept = [r["rate"] for r in results if r["kept_up"]]
                middle = round((max(kept) + rate) / 2, 1) if kept else rate / 2
                if kept and middle - max(kept) >= 1 and middle not in rates:  # one step between the two
                    time.sleep(DRAIN_SECONDS / 3)
                    result = load.step(middle, args.step)
                    results.append(result)
                    for line in describe(result, args.workers):
                        print(f"  {line}", flush=True)
                break
    finally:
        load.close()
    if load.failures:
        print(f"  driver errors (the simulator refused a message): {dict(load.failures)}")
    kept = [r for r in results if r["kept_up"]]
    best = max((r["rate"] for r in kept), default=0.0)
    failed = min((r for r in results if not r["kept_up"]), key=lambda r: r["rate"], default=None)
    print(f"highest rate sustained: {best:g} msg/s" + (f" ({failed['rate']:g} msg/s fell behind)"
                                                         if failed else " (the highest step tried)")
          + f"; the most the route function took in a step: {max((r['throughput'] for r in results), default=0):.1f} msg/s")
    if failed:
        top = max(failed["cpu"].items(), key=lambda kv: kv[1])
        busiest = max(failed["busy"].items(), key=lambda kv: kv[1], default=("-", 0.0))
        print(f"  at {failed['rate']:g} msg/s the most CPU went to {top[0]} ({top[1] / failed['wall']:.0%} of a core), "
              f"the machine was {sum(failed['cpu'].values()) / failed['wall'] / (os.cpu_count() or 1):.0%} busy, and the "
              f"busiest function was {busiest[0]} (busy {busiest[1]:.2f} against {args.workers} poller(s))")
    bench("load.sustained_msgs_per_s", best, "msg/s", "highest offered rate the local stack kept up with on this machine")
    bench("load.peak_route_msgs_per_s", round(max((r["throughput"] for r in results), default=0.0), 1), "msg/s",
          "most messages per second the route function took over a step's second half")
    top = max(kept, key=lambda r: r["rate"], default=None)
    if top:
        for name, key in (("moto", "moto"), ("stack", "stack")):
            bench(f"load.{name}_cpu_ms_per_message", round(top["cpu"][key] / max(top["total"], 1) * 1000), "ms",
                  f"{name} process CPU per message at {top['rate']:g} msg/s")
    for r in results:
        bench(f"load.{r['rate']:g}.waiting_at_end", r["waiting"], "messages",
              "not yet taken by the route function when the step ended" + ("" if r["kept_up"] else " (fell behind)"))


if __name__ == "__main__":
    main()
