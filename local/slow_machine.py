"""Run a command as if on a slower machine, several times, and report each run.

    python -m local.slow_machine --mode pin --runs 10 -- .venv/bin/python -m pytest tests/integration/test_chaos.py -q
    python -m local.slow_machine --mode hog --runs 5 -- bash .ci/run

Modes:
- pin: the command (and every process it starts) runs on one CPU core only;
- hog: busy loops occupy --hogs cores (default 1) for the whole run, so the command shares the
  machine with a CPU-bound neighbour;
- both: pinned to one core that a busy loop also occupies (the harshest).

Each run's exit status and duration are printed; the exit status is non-zero when any run failed.
`make slow` wraps this (see the Makefile).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess  # nosec B404 - runs the developer's own command, as given
import sys
import time


def _busy(core: int | None) -> None:
    if core is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {core})
    while True:
        pass


def _pin(core: int) -> None:
    os.sched_setaffinity(0, {core})  # inherited by every child the command starts


def run(command: list[str], mode: str, runs: int, hogs: int, stop_on_failure: bool) -> int:
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    core = cores[0]
    hog_cores: list[int | None] = [core] if mode == "both" else [cores[i % len(cores)] for i in range(hogs)]
    if mode == "pin":
        hog_cores = []
    failures = 0
    durations: list[str] = []
    for number in range(1, runs + 1):
        hog_procs = [multiprocessing.Process(target=_busy, args=(c,), daemon=True) for c in hog_cores]
        for proc in hog_procs:
            proc.start()
        started = time.monotonic()
        try:
            preexec = (lambda: _pin(core)) if mode in ("pin", "both") else None
            code = subprocess.call(command, preexec_fn=preexec)  # nosec B603 - the developer's own command line
        finally:
            for proc in hog_procs:
                proc.terminate()
                proc.join()
        seconds = time.monotonic() - started
        durations.append(f"{seconds:.0f}s")
        verdict = "passed" if code == 0 else f"FAILED (exit {code})"
        print(f"slow_machine: run {number}/{runs} ({mode}) {verdict} in {seconds:.1f}s", flush=True)
        if code != 0:
            failures += 1
            if stop_on_failure:
                break
    done = len(durations)
    print(f"slow_machine: {done - failures} of {done} run(s) passed ({mode}); durations: {' '.join(durations)}",
          flush=True)
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("pin", "hog", "both"), default="pin")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--hogs", type=int, default=1, help="busy loops in hog mode (one core each)")
    parser.add_argument("--stop-on-failure", action="store_true")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return run(command, args.mode, args.runs, args.hogs, args.stop_on_failure)


if __name__ == "__main__":
    sys.exit(main())
