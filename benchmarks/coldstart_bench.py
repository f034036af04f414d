"""Cold start per function: a fresh process imports the handler and serves its first event.

    .venv/bin/python benchmarks/coldstart_bench.py [--runs 5] [--functions callback,sync,route,...]

The child processes run Python from .venv-lambda, which holds only what a deployed function has:
boto3 (Lambda's runtime provides it; installed with its .pyc, as the runtime has them) and, in
.venv-lambda/layer, the layer's requirements (shared/requirements.txt) installed without .pyc.
Lambda's file system is read-only, so a layer without .pyc is compiled at every cold start; the
SharedLayer's build (shared/Makefile) now ships them, which the "with .pyc" figures show
(PYTHONPYCACHEPREFIX primed once). Kefu's own package and the function's CodeUri are staged as
the package holds them (benchmarks/common.py: stage_function - symlinks copied as files, the
routing rules' assets/ beside routing.yaml, no __pycache__). No moto, pytest or test extras are
importable in the child (httpx would import `rich` if it were installed).

The first event is real work against AWS and WeCom stand-ins on loopback: a moto server and the
WeCom simulator run in this (parent) process, the template's tables, queues, bucket and SSM
secrets are created with local.provision, and each child gets the function's environment as the
template resolves it. Each function's first event is listed in the output (common.COLD_FUNCTIONS).
One warm-up child per function runs first and is not counted (it sets the account's cursor, the
shared access_token, the stored link and the route account's conversations, so the timed runs
are the steady state every later cold start meets).

Baseline: a fresh process that imports boto3 and creates the client the function mostly uses.
Reported: medians of --runs fresh processes, interleaved: spawn-to-answer (interpreter start +
import + first event) and its ratio to the baseline's spawn-to-client; the same with the .pyc
shipped, and what each function imports (python -X importtime).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from common import COLD_FUNCTIONS, LAMBDA_VENV, LAYER, MARK, ColdFixture, ColdFunction, ColdRunner, bench  # noqa: I001 - run as a script

HANDLER_MODULES = ("app", "sweep", "conversations")  # the handlers' own modules, counted with kefu


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
        if package == "kefu" or package in HANDLER_MODULES:
            package = "kefu + handler"
        elif package in sys.stdlib_module_names or package.startswith("_"):
            package = "stdlib"
        phases[phase][package] = phases[phase].get(package, 0.0) + micros / 1000
    return [sorted(p.items(), key=lambda kv: -kv[1]) for p in phases]  # type: ignore[return-value]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--functions", default=",".join(f.name for f in COLD_FUNCTIONS))
    args = parser.parse_args()
    if not (LAMBDA_VENV / "bin" / "python").exists() or not LAYER.is_dir():
        raise SystemExit(f"{LAMBDA_VENV} with its layer/ is missing: run `make bench` (it creates it)")
    wanted = [f for f in COLD_FUNCTIONS if f.name in args.functions.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="kefu-cold-"))
    fixture = ColdFixture()
    runner = ColdRunner(fixture, workdir)
    try:
        imports, failed = {}, {}
        # Warm-up (not counted), then the import listing. The route function first: the
        # conversations and stats functions read what its events leave.
        for fn in sorted(wanted, key=lambda f: f.name != "route"):
            try:
                runner.run(fn)
                imports[fn.name] = import_summary(runner.run(fn, importtime=True)["stderr"])
                runner.run(fn, pyc=True, prime=True)  # writes the .pyc of everything it imports
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                failed[fn.name] = str(exc)
        wanted = [f for f in wanted if f.name not in failed]
        results: dict[tuple[str, str], list[dict]] = {}
        services = sorted({f.service for f in wanted})
        for _ in range(args.runs):
            for service in services:
                results.setdefault(("baseline", service), []).append(runner.baseline(service))
            for fn in wanted:
                results.setdefault((fn.name, "as shipped"), []).append(runner.run(fn))
                results.setdefault((fn.name, "pyc"), []).append(runner.run(fn, pyc=True))
    finally:
        fixture.close()
        shutil.rmtree(workdir, ignore_errors=True)
    report(args.runs, wanted, results, imports)
    for note in runner.notes:
        print(f"  staged: {note}")
    skipped = sorted(set(fixture.functions) - {f.logical_id for f in COLD_FUNCTIONS})
    if skipped:
        print(f"  not measured (this benchmark defines no first event for them): {', '.join(skipped)}")
    for name, error in failed.items():
        print(f"  {name}: FAILED, no figure - the function did not serve its first event:\n{error[-2500:]}")
    if failed:
        sys.exit(1)


def report(runs: int, wanted: list[ColdFunction], results: dict[tuple[str, str], list[dict[str, Any]]],
           imports: dict[str, Any]) -> None:
    if not wanted:
        print("cold start: no function served its first event")
        return
    base = {service: median([r["total_ms"] for r in results[("baseline", service)]]) for service in {f.service for f in wanted}}
    base_in = {service: median([r["import_ms"] for r in results[("baseline", service)]]) for service in base}
    print(f"cold start, fresh process per run, median of {runs} (Python {sys.version.split()[0]} from .venv-lambda; "
          "this machine, not Lambda arm64)")
    for service in sorted(base):
        print(f"  baseline `import boto3` + boto3.client({service!r}): {base[service]:.0f} ms spawn-to-client "
              f"({base_in[service]:.0f} ms of it importing and creating the client)")
        bench(f"coldstart.baseline.{service}_ms", round(base[service]), "ms",
              f"fresh process: import boto3 + boto3.client('{service}')")
    for fn in wanted:
        name, service = fn.name, fn.service
        shipped = results[(name, "as shipped")]
        pyc = results[(name, "pyc")]
        total = median([r["total_ms"] for r in shipped])
        init = median([r["import_ms"] for r in shipped])
        first = median([r["first_ms"] for r in shipped])
        total_pyc = median([r["total_ms"] for r in pyc])
        ratio = total / base[service]
        print(f"  {name} ({fn.logical_id}; first event: {fn.first_event}): {total:.0f} ms spawn-to-answer = "
              f"{ratio:.2f}x the {service} baseline (import {init:.0f} ms + first event {first:.0f} ms); with .pyc "
              f"shipped {total_pyc:.0f} ms = {total_pyc / base[service]:.2f}x")
        bench(f"coldstart.{name}_ms", round(total), "ms", "fresh process: import the handler + serve the first event")
        bench(f"coldstart.{name}.import_ms", round(init), "ms", "importing the handler's module (the Lambda init phase)")
        bench(f"coldstart.{name}.first_event_ms", round(first), "ms", "the first event, boto3 clients and SSM reads included")
        bench(f"coldstart.{name}.ratio", round(ratio, 2), "x", f"over import boto3 + boto3.client('{service}')")
        bench(f"coldstart.{name}.pyc_ms", round(total_pyc), "ms", "the same with the layer's .pyc shipped")
        bench(f"coldstart.{name}.pyc_ratio", round(total_pyc / base[service], 2), "x",
              f"with .pyc, over import boto3 + boto3.client('{service}')")
    print("  what each function imports, by top-level package: ms of module code run while importing "
          "(python -X importtime, one run without .pyc; the tracing inflates it), packages under 2 ms left out")
    names = {fn.name for fn in wanted}
    if {"route", "route_ai"} <= names:
        def figure(name: str, key: str, kind: str = "as shipped") -> float:
            return median([r[key] for r in results[(name, kind)]])

        ratio = figure("route_ai", "total_ms", "pyc") / figure("route", "total_ms", "pyc")
        init_ratio = figure("route_ai", "import_ms", "pyc") / figure("route", "import_ms", "pyc")
        print(f"  route with the AI answerer on against without (with .pyc): cold start {ratio:.2f}x, init "
              f"{init_ratio:.2f}x (the first event differs: an answer from the model instead of a transfer)")
        bench("coldstart.route_ai.vs_route", round(ratio, 2), "x",
              "route cold start (.pyc, init + first event) with the AI answerer on, over without it (goal <= 1.10)")
        bench("coldstart.route_ai.init_vs_route", round(init_ratio, 2), "x",
              "route init (.pyc) with the AI answerer's rules and model set, over without")
    for fn in wanted:
        init_rows, first_rows = imports[fn.name]
        for label, rows in (("init (importing the handler)", init_rows), ("during the first event", first_rows)):
            total = sum(ms for _, ms in rows)
            shown = ", ".join(f"{pkg} {ms:.0f}" for pkg, ms in rows if ms >= 2) or "nothing"
            print(f"    {fn.name}, {label}: {total:.0f} ms in {len(rows)} packages: {shown}")
        heavy = [pkg for pkg in ("rich", "moto", "pytest", "werkzeug", "flask", "segno", "aws_xray_sdk")
                 if pkg in dict(init_rows) or pkg in dict(first_rows)]
        print(f"    {fn.name} imports none of rich, moto, pytest, flask, segno, aws_xray_sdk: "
              + ("yes" if not heavy else f"NO ({', '.join(heavy)})"))


if __name__ == "__main__":
    main()
