"""Run every benchmark in benchmarks/ and write docs/PERFORMANCE.md (what `make bench` does).

    .venv/bin/python benchmarks/run_all.py [--only callback,cost] [--output docs/PERFORMANCE.md]

Each benchmark is a script that prints human-readable lines and, for the figures, machine-readable
lines ``BENCH name=value unit [# what it is]``. Scripts that print no BENCH line still have their
summary lines (``label: n=.. p50=..ms p99=..ms ..``) collected. The report keeps, per benchmark,
the exact command, how long it took, its figures and its full output, plus the machine, the date
and the load average (other work on the machine slows everything down; nothing here asserts on
time). A benchmark whose script is not in the tree is reported as not available; one that fails is
reported with its output, and the runner exits non-zero after writing the report. Hand-written
sections (SECTIONS, e.g. benchmarks/capacity_plan.md) follow the benchmarks' own, as written.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
APP_PY = ".venv/bin/python"
BENCH_PY = ".venv-bench/bin/python"
BENCH_LINE = re.compile(r"^BENCH (?P<name>[\w.\-/]+)=(?P<value>\S+)(?: (?P<unit>[^#]*?))?\s*(?:# (?P<note>.*))?$")
SUMMARY_LINE = re.compile(r"^\s*(?P<label>[^:]+(?::[^:]+)*?): n=(?P<n>\d+) p50=(?P<p50>[\d.]+)(?P<unit>[a-zµ]+) "
                          r"p99=(?P<p99>[\d.]+)[a-zµ]+")


@dataclass
class Bench:
    key: str
    title: str
    script: str
    args: list[str] = field(default_factory=list)
    python: str = APP_PY
    timeout: int = 300
    about: str = ""
    # filled by run()
    status: str = "not run"
    seconds: float = 0.0
    output: str = ""
    figures: list[dict[str, str]] = field(default_factory=list)
    load: tuple[float, float] = (0.0, 0.0)

    @property
    def command(self) -> str:
        return shlex.join([self.python, f"benchmarks/{self.script}", *self.args])


BENCHMARKS = [
    Bench("callback", "Callback: verify + decrypt + parse, Kefu against wechatpy", "callback_bench.py",
          python=BENCH_PY, timeout=180,
          about="Same random signed callbacks for both; wechatpy lives only in .venv-bench. Ratio = Kefu's time "
                "over wechatpy's (below 1: Kefu is faster)."),
    Bench("ai_cost", "AI answerer: tokens and dollars per answer", "ai_cost_bench.py", timeout=120,
          about="The prompts the route function builds for labelled customer questions against config/knowledge.md, "
                "tokens as the Bedrock stand-in estimates them, priced with config/prices.yaml's Bedrock list prices; "
                "plus the Lambda wait on the model (an assumed 1.5 s) and the caps' DynamoDB writes."),
    Bench("retrieval", "Knowledge retrieval: Kefu's index against jieba and rank_bm25", "retrieval_bench.py",
          python=BENCH_PY, timeout=300,
          about="Fresh processes, median of 5: import, parse and first search (the index) of config/knowledge.md and of "
                "a generated 500-entry file, query latency, and top-1/top-3 accuracy on labelled Chinese paraphrases; "
                "jieba and rank_bm25 (numpy) live only in .venv-bench. The answerer may add at most 10% to the route "
                "function's cold start."),
    Bench("coldstart", "Cold start per function", "coldstart_bench.py", timeout=600,
          about="Fresh processes from .venv-lambda (boto3 + the layer's requirements, nothing else), serving a "
                "real first event against moto and the WeCom simulator; ratio over `import boto3` + one client."),
    Bench("sync", "Sync drain", "sync_bench.py", timeout=300,
          about="A backlog behind one callback, pulled and stored once each through the local stack."),
    Bench("route", "Route latency", "route_bench.py", timeout=300,
          about="enter_session callback to welcome sent, new message to transfer, through the local stack."),
    Bench("links", "Contact links", "links_bench.py", timeout=300,
          about="GET /links for a stored link: through the local stack, in-process, and a cold start."),
    Bench("cost", "Cost per 1,000 messages and idle cost", "cost_bench.py", timeout=300,
          about="AWS requests counted in a realistic run of the whole local stack, priced from "
                "config/prices.yaml."),
    Bench("memory", "Memory size per function", "memory_bench.py", timeout=1500,
          about="Each function with a first event in the cold-start benchmark, at 128, 256 and 512 MB (and where the "
                "goals need it, the size the model names), its CPU held to Lambda's share of a vCPU at that size by a "
                "cgroup CPU limit where the machine allows it, else estimated by scaling its CPU time (the output says "
                "which); cold start and warm events, priced; the cheapest size that keeps the callback's cold start "
                "under 1 s and the welcome path under 2 s."),
    Bench("load", "Load: the highest message rate the local stack sustains", "load_bench.py", timeout=900,
          about="Customers and servicers writing at a stepped, open-loop rate through the whole local stack (every "
                "message a WeCom callback) until it falls behind; CPU per process and busy time per function show "
                "where the time went. The deployed limits are in the capacity plan below."),
]
# Hand-written sections included in the report after the benchmarks' own, each from its file.
SECTIONS = ("capacity_plan.md",)


def machine() -> dict[str, str]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "cpu model", "hardware")):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
        memory = f"{kib / 1024 / 1024:.1f} GiB"
    except (OSError, IndexError, ValueError):
        pass
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip() or str(os.cpu_count())
    pythons = {}
    for name, python in (("app (.venv)", APP_PY), ("callback bench (.venv-bench)", BENCH_PY),
                         ("cold start (.venv-lambda)", ".venv-lambda/bin/python")):
        path = ROOT / python
        if path.exists():
            pythons[name] = subprocess.run([str(path), "-c", "import platform; print(platform.python_version())"],
                                           capture_output=True, text=True).stdout.strip()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                           text=True).stdout.strip()
    return {
        "uname -m": platform.machine(), "nproc": nproc, "cpu": cpu or "unknown", "memory": memory or "unknown",
        "os": f"{platform.system()} {platform.release()}",
        "python": ", ".join(f"{v} {k}" for k, v in pythons.items()),
        "commit": (commit or "unknown") + (" with uncommitted changes" if dirty else ""),
    }


def parse(bench: Bench) -> None:
    for line in bench.output.splitlines():
        found = BENCH_LINE.match(line.strip())
        if found:
            bench.figures.append({"name": found["name"], "value": found["value"], "unit": (found["unit"] or "").strip(),
                                  "note": (found["note"] or "").strip()})
    if bench.figures:
        return
    for line in bench.output.splitlines():  # no BENCH lines: the summary() lines, if any
        found = SUMMARY_LINE.match(line)
        if found:
            label = found["label"].strip()
            for pct in ("p50", "p99"):
                bench.figures.append({"name": f"{label} {pct}", "value": found[pct], "unit": found["unit"],
                                      "note": f"n={found['n']}"})


def run(bench: Bench) -> None:
    script = HERE / bench.script
    if not script.exists():
        bench.status = "not available"
        bench.output = f"benchmarks/{bench.script} is not in the tree."
        return
    python = ROOT / bench.python
    if not python.exists():
        bench.status = "failed"
        bench.output = f"{bench.python} is missing (run `make bench`, which creates the environments)."
        return
    print(f"== {bench.key}: {bench.command}", flush=True)
    started = time.monotonic()
    load_before = os.getloadavg()[0]
    try:
        proc = subprocess.run([str(python), str(script), *bench.args], cwd=ROOT, capture_output=True, text=True,
                              timeout=bench.timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        bench.output = (proc.stdout + ("\n" + proc.stderr if proc.stderr.strip() else "")).strip()
        bench.status = "ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        bench.output = out.strip()
        bench.status = f"failed (timed out after {bench.timeout} s)"
    bench.seconds = time.monotonic() - started
    bench.load = (load_before, os.getloadavg()[0])
    parse(bench)
    for line in bench.output.splitlines():
        if not line.startswith("BENCH "):
            print(f"   {line}", flush=True)
    print(f"   -> {bench.status} in {bench.seconds:.0f} s, {len(bench.figures)} figures", flush=True)


def figure(benches: dict[str, Bench], key: str, name: str) -> dict[str, str] | None:
    bench = benches.get(key)
    if bench is None:
        return None
    return next((f for f in bench.figures if f["name"] == name), None)


def fmt(f: dict[str, str] | None, unit: bool = True) -> str:
    if f is None:
        return "not available"
    return f"{f['value']} {f['unit']}".strip() if unit else f["value"]


def status_of(bench: Bench | None) -> str:
    """What a summary row says when a benchmark gave no figure."""
    if bench is None or bench.status in ("not available", "not run"):
        return "not available"
    return bench.status if bench.status != "ok" else "ran, but printed no figure"


def headline(benches: dict[str, Bench]) -> list[tuple[str, str, str]]:
    """(figure, value, benchmark) rows for the summary table."""
    rows: list[tuple[str, str, str]] = []
    k, w, r = (figure(benches, "callback", n) for n in
               ("callback.kefu_per_event", "callback.wechatpy_per_event", "callback.ratio"))
    rows.append(("Callback verify + decrypt + parse, per event: Kefu / wechatpy",
                 f"{fmt(k)} / {fmt(w)} = {fmt(r, unit=False)}x" if r else "not available", "callback"))
    cold = benches.get("coldstart")
    for f in (cold.figures if cold else []):
        m = re.fullmatch(r"coldstart\.(\w+)_ms", f["name"])
        if m:
            ratio = figure(benches, "coldstart", f"coldstart.{m[1]}.ratio")
            pyc = figure(benches, "coldstart", f"coldstart.{m[1]}.pyc_ms")
            pyc_ratio = figure(benches, "coldstart", f"coldstart.{m[1]}.pyc_ratio")
            rows.append((f"Cold start, {m[1]} (import + first event, fresh process)",
                         f"{fmt(f)} = {fmt(ratio, unit=False)}x import boto3 + client; {fmt(pyc)} with .pyc shipped"
                         + (f" = {fmt(pyc_ratio, unit=False)}x" if pyc_ratio else ""), "coldstart"))
    if not cold or not cold.figures:
        rows.append(("Cold start per function", status_of(cold), "coldstart"))
    sync = benches.get("sync")
    rates = [f for f in (sync.figures if sync else []) if f["unit"].endswith("/s")]
    for f in rates:
        rows.append((f"Sync drain ({f['name']})", fmt(f), "sync"))
    if not rates:
        rows.append(("Sync drain rate", status_of(sync), "sync"))
    for f in (sync.figures if sync else []):
        if f["name"].startswith("sync.") and "per_1000" in f["name"]:
            rows.append((f"Sync's own cost: {f['name'].removeprefix('sync.')}", fmt(f), "sync"))
    for key, label in (("route", "Route latency"), ("links", "Links")):
        bench = benches.get(key)
        shown = [f for f in (bench.figures if bench else [])][:4]
        for f in shown:
            rows.append((f"{label}: {f['name']}", fmt(f), key))
        if not shown:
            rows.append((label, status_of(bench), key))
    per_k = figure(benches, "cost", "cost.per_1000_messages")
    rows.append(("Cost per 1,000 messages (list prices, free tiers ignored)", fmt(per_k), "cost"))
    idle = figure(benches, "cost", "cost.idle_per_month")
    rows.append(("Idle cost per month, default template (list prices)", fmt(idle), "cost"))
    memory = benches.get("memory")
    sizes = [(m[1], f["value"]) for f in (memory.figures if memory else [])
             if (m := re.fullmatch(r"memory\.(\w+)\.recommended_mb", f["name"]))]
    rows.append(("Recommended MemorySize (cheapest meeting callback cold < 1 s, welcome < 2 s)",
                 ", ".join(f"{name} {value} MB" if value != "-1" else f"{name} none tried" for name, value in sizes)
                 or status_of(memory), "memory"))
    load = figure(benches, "load", "load.sustained_msgs_per_s")
    rows.append(("Highest message rate the local stack sustains on this machine", fmt(load) if load else
                 status_of(benches.get("load")), "load"))
    return rows


def previous_summary(path: Path) -> tuple[str, dict[str, str]]:
    """The date and the summary rows (figure -> value) of the report this run replaces."""
    if not path.exists():
        return "", {}
    text = path.read_text(encoding="utf-8")
    date = re.search(r"^- Date: (\S+)", text, re.MULTILINE)
    rows: dict[str, str] = {}
    summary = text.split("## Summary", 1)[-1].split("\n## ", 1)[0]
    for line in summary.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0] not in ("figure", "---") and not cells[0].startswith("-"):
            rows[cells[0]] = cells[1]
    return (date[1] if date else ""), rows


def write_report(path: Path, benches: list[Bench], info: dict[str, str], started: dt.datetime, seconds: float,
                 command: str) -> None:
    by_key = {b.key: b for b in benches}
    before_date, before = previous_summary(path)
    out: list[str] = []
    add = out.append
    add("# Kefu performance and cost")
    add("")
    add(f"Generated by `make bench` ({command}); do not edit by hand: run `make bench` again to refresh it.")
    add("")
    add(f"- Date: {started.strftime('%Y-%m-%d %H:%M UTC')} (the whole run took {seconds:.0f} s)")
    add(f"- Machine: `uname -m` {info['uname -m']}, nproc {info['nproc']}, {info['cpu']}, {info['memory']} RAM, "
        f"{info['os']}")
    add(f"- Python: {info['python']}")
    add(f"- Code: commit {info['commit']}")
    add("")
    add("Read every timing as a figure from this machine, not from Lambda: a function on arm64 with 256 MB gets a "
        "fraction of a vCPU and runs CPU-bound code several times slower, and the AWS side here is moto on "
        "loopback. Other work on the machine slows the runs down; the load average is shown per benchmark. "
        "Request counts and the cost model do not depend on the machine's speed, except Lambda's "
        "GB-seconds, which use the handler times measured here (see the cost section).")
    add("")
    add("## Summary")
    add("")
    add(f"| figure | value | previous report ({before_date or 'none'}) | benchmark |")
    add("|---|---|---|---|")
    for name, value, key in headline(by_key):
        add(f"| {name} | {value} | {before.get(name, '-')} | [{key}](#{key}) |")
    for section in SECTIONS:
        title = section_title(HERE / section)
        if title:
            add(f"| {title} | hand-written, from benchmarks/{section} | | [{title.lower()}](#{anchor(title)}) |")
    add("")
    for bench in benches:
        add(f"## {bench.key}")
        add("")
        add(f"**{bench.title}.** {bench.about}")
        add("")
        add(f"- Command: `{bench.command}`")
        if bench.status == "not available":
            add(f"- Status: not available ({bench.output})")
            add("")
            continue
        add(f"- Status: {bench.status}, {bench.seconds:.0f} s, load average {bench.load[0]:.2f} before, "
            f"{bench.load[1]:.2f} after")
        add("")
        if bench.figures:
            add("| figure | value | unit | what |")
            add("|---|---|---|---|")
            for f in bench.figures:
                add(f"| `{f['name']}` | {f['value']} | {f['unit']} | {f['note']} |")
            add("")
        text = "\n".join(line for line in bench.output.splitlines() if not line.startswith("BENCH "))
        if text.strip():
            add("<details><summary>Output</summary>")
            add("")
            add("```text")
            add(text.strip())
            add("```")
            add("")
            add("</details>")
            add("")
    for section in SECTIONS:
        source = HERE / section
        if source.exists():
            add(f"<!-- from benchmarks/{section}: edit it there, not here -->")
            add("")
            add(source.read_text(encoding="utf-8").strip())
            add("")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out) + "\n", encoding="utf-8")


def section_title(path: Path) -> str:
    """The first heading of a hand-written section file ("" when it has none or is missing)."""
    if not path.exists():
        return ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip()
    return ""


def anchor(title: str) -> str:
    """GitHub's anchor for a heading: lower case, spaces to hyphens, punctuation dropped."""
    return re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default="", help="comma-separated benchmark keys (default: all)")
    parser.add_argument("--output", default=str(ROOT / "docs" / "PERFORMANCE.md"))
    args = parser.parse_args()
    benches = list(BENCHMARKS)
    listed = {b.script for b in benches}
    for extra in sorted(HERE.glob("*_bench.py")):  # any other benchmark dropped into benchmarks/
        if extra.name not in listed:
            key = extra.stem.removesuffix("_bench")
            benches.append(Bench(key, extra.stem.replace("_", " "), extra.name, about="(no description registered)"))
    if args.only:
        wanted = set(args.only.split(","))
        benches = [b for b in benches if b.key in wanted]
    started = dt.datetime.now(dt.UTC)
    clock = time.monotonic()
    info = machine()
    for bench in benches:
        run(bench)
    seconds = time.monotonic() - clock
    command = "benchmarks/run_all.py" + (f" --only {args.only}" if args.only else "")
    output = Path(args.output)
    write_report(output, benches, info, started, seconds, command)
    print(f"wrote {output.relative_to(ROOT) if output.is_relative_to(ROOT) else output} in {seconds:.0f} s")
    failed = [b.key for b in benches if b.status.startswith("failed")]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
