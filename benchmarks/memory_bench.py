"""Memory size per function, chosen from measurements: cold start and a warm event at 128, 256 and
512 MB with Lambda's CPU share emulated, priced, and the cheapest size that meets the latency goals.

    .venv/bin/python benchmarks/memory_bench.py [--sizes 128,256,512] [--runs 2] [--warm 3]
                                                [--functions callback,sync,route,...] [--mode auto|scaled]

Lambda gives a function CPU in proportion to its memory: one full vCPU at 1,769 MB, so 7.2% of
one at 128 MB, 14.5% at 256 MB, 28.9% at 512 MB. Each function runs as in coldstart_bench.py (a
fresh .venv-lambda process, the layer's .pyc shipped, a real first event against moto and the
WeCom simulator, which run in this process and are not limited), then --warm more events in the
same process (new customers, new callbacks: the same kind of work as the first). The child's CPU
is limited to the size's share of one core by, in this order of preference: a cgroup v2 child
with cpu.max, a cgroup v1 cpu controller child with cpu.cfs_quota_us (both 100 ms periods), or
`systemd-run --scope -p CPUQuota=`; the limit is checked first with a CPU-bound calibration
child. Where none works (--mode scaled, or no permission), every figure is an estimate from the
unlimited run instead: wall time + CPU time x (1769/MB - 1), and the output says so. The
unlimited ("full vCPU") run is always measured: it gives the same estimate beside each measured
figure, and the "init at full speed" variant below.

Cold start = spawn-to-answer (interpreter start, import, first event), the limit applied from
the first instruction: the conservative reading. If Lambda runs the init phase faster than the
size's share (AWS does not document a share for it), the cold start would be nearer the
unlimited run's import plus the limited first event: shown as "init at full CPU".

Goals (issue #16): the callback's cold start under 1 s (WeCom waits 5 s for the answer, and a
slow answer delays every event behind it), and the welcome path under 2 s: the route function,
cold, from the enter_session it is handed to the welcome sent (its first event also carries the
customer's first message, so the figure errs long). The whole chain a welcome waits for after a
quiet spell - callback, sync and route all cold - is printed too, and its floor at a full vCPU:
what the three import and set up, which no memory size removes; that chain must stay under 10 s,
half the 20 s a welcome code lives (an enter_session older than that gets no welcome), which is
what the sync's size is chosen for. Where none of --sizes meets a goal, the scaling model,
corrected by the limited runs, names the size that would; that size is measured and the choice
made again (up to three rounds).

Price = billed duration (ms, rounded up) x MemorySize x the arm64 GB-second price + the request
price (config/prices.yaml); Lambda bills the init phase too, so a cold start is priced at its
whole duration. Per function the report prints the price per million warm invocations and per
cold start at each size, and picks the size with the lowest price per warm invocation among those
that: hold the process's peak RSS with 10% to spare, answer a cold start well inside the
function's Timeout (half of it), and meet the goals above. Do not read the absolute times as
Lambda's: this machine's core is not a Graviton2's, the machine is shared, and moto on loopback is
not DynamoDB.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from common import COLD_FUNCTIONS, LAMBDA_VENV, LAYER, ROOT, ColdFixture, ColdFunction, ColdRunner, bench

FULL_VCPU_MB = 1769
PERIOD_US = 100_000
# The goals: (cold start limit in ms, what it stands for).
GOALS = {"callback": (1000.0, "callback cold start < 1 s"),
         "route": (2000.0, "welcome path (route, cold: enter_session -> welcome sent) < 2 s")}
WELCOME_PATH = ("callback", "sync", "route")
# Invocations per customer or servicer message in cost_bench.py's realistic run (docs/PERFORMANCE.md,
# "cost": CallbackFunction 1201, SyncFunction 502, RouteFunction 155 per 1,000 messages): the
# price of the three per million messages, today's sizes against the recommended ones.
PER_MESSAGE = {"callback": 1.201, "sync": 0.502, "route": 0.155}
RSS_HEADROOM = 0.9  # the peak RSS must stay under 90% of MemorySize
PRICE_TIE = 0.10
# The whole chain cold must leave the welcome code (20 s) a wide margin: SQS hops, retries.
CHAIN_LIMIT_MS = 10_000.0


def share(mb: int) -> float:
    return min(1.0, mb / FULL_VCPU_MB)


# -- the CPU limit --------------------------------------------------------------------------------

class CpuLimit:
    """Runs a child with a CPU quota of ``share(mb)`` of one core, by the first mechanism this
    machine allows (see the module's docstring); ``mode`` is "scaled" when none does."""

    def __init__(self, mode: str = "auto") -> None:
        self.mode = "scaled"
        self.detail = ""
        self._dirs: dict[int, Path] = {}
        self._root: Path | None = None
        if mode == "scaled":
            self.detail = "--mode scaled"
            return
        tried = []
        for name, probe in (("cgroup v2", self._v2_root), ("cgroup v1", self._v1_root)):
            try:
                root = probe()
                self._sweep(root)
                test = root / f"kefu-membench-{os.getpid()}-probe"
                test.mkdir()
                test.rmdir()
                self.mode, self._root = name, root
                self.detail = f"child cgroups under {root}"
                return
            except (OSError, RuntimeError) as exc:
                tried.append(f"{name}: {exc}")
        if shutil.which("systemd-run"):
            probe_run = subprocess.run(["systemd-run", "--scope", "--quiet", "-p", "CPUQuota=50%", "true"],
                                       capture_output=True, text=True)
            if probe_run.returncode == 0:
                self.mode, self.detail = "systemd-run", "systemd-run --scope -p CPUQuota="
                return
            tried.append(f"systemd-run: {(probe_run.stderr or probe_run.stdout).strip().splitlines()[0:1]}")
        else:
            tried.append("systemd-run: not installed")
        self.detail = "; ".join(tried)

    @staticmethod
    def _sweep(root: Path) -> None:
        """Remove the empty cgroups an earlier run that was killed left behind."""
        for stale in root.glob("kefu-membench-*"):
            pid = stale.name.split("-")[2]
            if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                with contextlib.suppress(OSError):
                    stale.rmdir()

    @staticmethod
    def _mounts(fstype: str) -> list[tuple[str, str]]:
        found = []
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            left, _, right = line.partition(" - ")
            if right.split()[0] == fstype:
                found.append((left.split()[4], right.split()[2] if len(right.split()) > 2 else ""))
        return found

    @staticmethod
    def _own(controller: str) -> str:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if controller in controllers.split(","):
                return path
        raise RuntimeError(f"this process is in no {controller or 'v2'} cgroup")

    def _v2_root(self) -> Path:
        mounts = self._mounts("cgroup2")
        if not mounts:
            raise RuntimeError("no cgroup2 mount")
        base = Path(mounts[0][0]) / self._own("").lstrip("/")
        if "cpu" not in (base / "cgroup.controllers").read_text().split():
            raise RuntimeError(f"the cpu controller is not available in {base} (a hybrid or delegated hierarchy)")
        if "cpu" not in (base / "cgroup.subtree_control").read_text().split():
            (base / "cgroup.subtree_control").write_text("+cpu")  # fails where this cgroup holds processes
        return base

    def _v1_root(self) -> Path:
        for mount, options in self._mounts("cgroup"):
            if "cpu" in options.split(","):
                base = Path(mount) / self._own("cpu").lstrip("/")
                if (base / "cpu.cfs_quota_us").exists():
                    return base
        raise RuntimeError("no cgroup v1 cpu controller mounted")

    def quota_us(self, mb: int) -> int:
        return max(1000, round(PERIOD_US * share(mb)))

    def wrap(self, mb: int | None) -> list[str]:
        """The command prefix that runs a child under ``mb``'s CPU share (none for the full vCPU)."""
        if mb is None or self.mode == "scaled" or share(mb) >= 1.0:
            return []
        if self.mode == "systemd-run":
            return ["systemd-run", "--scope", "--quiet", "-p", f"CPUQuota={100 * share(mb):.2f}%", "--"]
        if mb not in self._dirs:
            assert self._root is not None
            path = self._root / f"kefu-membench-{os.getpid()}-{mb}"
            path.mkdir(exist_ok=True)
            if self.mode == "cgroup v2":
                (path / "cpu.max").write_text(f"{self.quota_us(mb)} {PERIOD_US}")
            else:
                (path / "cpu.cfs_period_us").write_text(str(PERIOD_US))
                (path / "cpu.cfs_quota_us").write_text(str(self.quota_us(mb)))
            self._dirs[mb] = path
        # sh joins the cgroup, then becomes the child: everything from the interpreter's start is limited.
        return ["sh", "-c", 'echo $$ > "$0" && exec "$@"', str(self._dirs[mb] / "cgroup.procs")]

    def calibrate(self, python: Path, mb: int, cpu_seconds: float = 0.15) -> float:
        """The share a CPU-bound child really gets under ``mb``'s limit: its CPU time over wall time."""
        code = ("import resource, time\nt = time.perf_counter()\nx = 0\n"
                "def cpu():\n    r = resource.getrusage(resource.RUSAGE_SELF)\n    return r.ru_utime + r.ru_stime\n"
                f"c0 = cpu()\nwhile cpu() - c0 < {cpu_seconds}:\n    x += 1\n"
                "print(cpu() - c0, time.perf_counter() - t)")
        out = subprocess.run([*self.wrap(mb), str(python), "-c", code], capture_output=True, text=True, timeout=120)
        cpu, wall = (float(v) for v in out.stdout.split())
        return cpu / wall

    def close(self) -> None:
        for path in self._dirs.values():
            with contextlib.suppress(OSError):
                path.rmdir()


# -- measuring ------------------------------------------------------------------------------------

@dataclass
class Sample:
    """Every run of one function at one size (None = the full vCPU, unlimited)."""

    cold_ms: list[float] = field(default_factory=list)  # spawn-to-answer
    init_ms: list[float] = field(default_factory=list)  # spawn-to-imported
    first_ms: list[float] = field(default_factory=list)
    first_cpu_ms: list[float] = field(default_factory=list)
    cold_cpu_ms: list[float] = field(default_factory=list)
    warm_ms: list[float] = field(default_factory=list)
    warm_cpu_ms: list[float] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)

    def add(self, result: dict[str, Any]) -> None:
        self.cold_ms.append(result["total_ms"])
        self.first_ms.append(result["first_ms"])
        self.first_cpu_ms.append(result["first_cpu_ms"])
        self.init_ms.append(result["total_ms"] - result["first_ms"])
        self.cold_cpu_ms.append(result["start_cpu_ms"] + result["import_cpu_ms"] + result["first_cpu_ms"])
        for warm in result["warm"]:
            self.warm_ms.append(warm["warm_ms"])
            self.warm_cpu_ms.append(warm["warm_cpu_ms"])
        self.rss_mb.append(max([result["maxrss_mb"], *(w["maxrss_mb"] for w in result["warm"])]))


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def scaled(wall: float, cpu: float, mb: int, k: float = 1.0) -> float:
    """The scaling model: the CPU time stretched by 1/share, the rest (waiting on AWS, WeCom) as is;
    ``k`` corrects the stretch by what the limited runs measured."""
    return wall + k * cpu * (1 / share(mb) - 1)


@dataclass
class Figures:
    """One function at one size: medians measured under the CPU limit, or estimated by the model."""

    cold: float
    warm: float
    cold_init_boost: float  # init at full CPU, the first event limited
    rss: float
    measured: bool
    est_cold: float  # the plain scaling estimate from the unlimited run, for comparison
    est_warm: float


def correction(samples: dict[int | None, Sample]) -> float:
    """How much more the measured limited cold starts lost to the limit than the model says (median
    over the sizes measured; 1 when none was)."""
    full = samples[None]
    ratios = []
    for mb, at in samples.items():
        if mb is None:
            continue
        model = scaled(med(full.cold_ms), med(full.cold_cpu_ms), mb) - med(full.cold_ms)
        if model > 0:
            ratios.append((med(at.cold_ms) - med(full.cold_ms)) / model)
    return min(3.0, max(0.5, med(ratios))) if ratios else 1.0


def figures(samples: dict[int | None, Sample], mb: int) -> Figures:
    full = samples[None]
    est_cold = scaled(med(full.cold_ms), med(full.cold_cpu_ms), mb)
    est_warm = scaled(med(full.warm_ms), med(full.warm_cpu_ms), mb)
    at = samples.get(mb)
    if at is None:
        k = correction(samples)
        return Figures(scaled(med(full.cold_ms), med(full.cold_cpu_ms), mb, k),
                       scaled(med(full.warm_ms), med(full.warm_cpu_ms), mb, k),
                       med(full.init_ms) + scaled(med(full.first_ms), med(full.first_cpu_ms), mb, k),
                       max(full.rss_mb), False, est_cold, est_warm)
    return Figures(med(at.cold_ms), med(at.warm_ms), med(full.init_ms) + med(at.first_ms), max(at.rss_mb + full.rss_mb),
                   True, est_cold, est_warm)


# -- pricing and choosing ---------------------------------------------------------------------------

def invocation_price(ms: float, mb: int, prices: dict[str, Any]) -> float:
    return (math.ceil(ms) / 1000 * mb / 1024 * prices["per_unit"]["lambda_gb_second_arm64"]
            + prices["per_request"]["lambda_request"])


def cold_price(ms: float, mb: int, prices: dict[str, Any]) -> float:
    return math.ceil(ms) / 1000 * mb / 1024 * prices["per_unit"]["lambda_gb_second_arm64"]


def fits(fig: Figures, mb: int, timeout_s: float) -> list[str]:
    """Why a size cannot be used at all (empty: it can)."""
    problems = []
    if fig.rss > RSS_HEADROOM * mb:
        problems.append(f"peak RSS {fig.rss:.0f} MB > {RSS_HEADROOM:.0%} of {mb} MB")
    if fig.cold > timeout_s * 1000 / 2:
        problems.append(f"cold start {fig.cold / 1000:.1f} s > half the {timeout_s:.0f} s Timeout")
    return problems


@dataclass
class Pick:
    mb: int | None
    why: str


def cheapest(sizes: list[int], price: dict[int, float]) -> int:
    """The size with the lowest price; prices within PRICE_TIE of the lowest count as equal (the
    warm times behind them are a few ms of a shared machine), and then the smallest size wins."""
    low = min(price[mb] for mb in sizes)
    return min(mb for mb in sizes if price[mb] <= low * (1 + PRICE_TIE))


def pick(names: list[str], table: dict[str, dict[int, Figures]], timeouts: dict[str, float],
         prices: dict[str, Any], attr: str) -> dict[str, Pick]:
    """The cheapest usable size per function that meets its goal, cold starts read by ``attr``;
    the functions with a goal of their own first, then the sync for the chain's limit."""
    picks: dict[str, Pick] = {}
    order = sorted(names, key=lambda n: (n not in GOALS, n == "sync"))
    for n in order:
        usable = [mb for mb, fig in sorted(table[n].items()) if not fits(fig, mb, timeouts[n])]
        price = {mb: invocation_price(table[n][mb].warm, mb, prices) for mb in usable}
        goal = GOALS.get(n)
        if n == "sync" and all(picks.get(m, Pick(None, "")).mb for m in ("callback", "route") if m in names) \
                and {"callback", "route"} <= set(names):
            others = sum(getattr(table[m][picks[m].mb or 0], attr) for m in ("callback", "route"))
            goal = (CHAIN_LIMIT_MS - others, f"the whole chain all cold (callback + sync + route) < "
                                              f"{CHAIN_LIMIT_MS / 1000:.0f} s, half a welcome code's 20 s life, "
                                              f"with the callback and route at their sizes ({others:.0f} ms)")
        meets = [mb for mb in usable if goal is None or getattr(table[n][mb], attr) < goal[0]]
        if not meets:
            tried = ", ".join(f"{mb} MB {getattr(fig, attr):.0f} ms" for mb, fig in sorted(table[n].items()) if fig.measured)
            picks[n] = Pick(None, f"no size meets {goal[1] if goal else 'the usability checks'} ({tried})")
            continue
        mb = cheapest(meets, price)
        fig = table[n][mb]
        shown = getattr(fig, attr) if n != "sync" or goal is None else getattr(fig, attr) + (CHAIN_LIMIT_MS - goal[0])
        why = (f"{goal[1]}: {shown:.0f} ms" if goal else "no latency goal of its own") + (
            f"; ${price[mb] * 1e6:.3f} per million warm invocations, the lowest among the usable sizes that meet it"
            if goal else f"; the lowest price per warm invocation among the usable sizes (${price[mb] * 1e6:.3f} per million)")
        picks[n] = Pick(mb, why if fig.measured else why + f" [{mb} MB ESTIMATED by the corrected model, not measured]")
    return {n: picks[n] for n in names}


# -- the run --------------------------------------------------------------------------------------

# Where the goals need more than the sizes asked for: the sizes the model is asked about.
EXTRA_SIZES = (640, 768, 896, 1024, 1152, 1280, 1408, 1536, 1664, 1769, 2048, 2560, 3008)


def build_table(names: list[str], samples: dict[str, dict[int | None, Sample]], sizes: list[int],
                extra: bool) -> dict[str, dict[int, Figures]]:
    table = {}
    for n in names:
        wanted = set(sizes) | {mb for mb in samples[n] if mb is not None}
        if extra and n in GOALS:
            wanted |= set(EXTRA_SIZES)
        table[n] = {mb: figures(samples[n], mb) for mb in sorted(wanted)}
    return table


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="128,256,512")
    parser.add_argument("--runs", type=int, default=2, help="fresh processes per function and size")
    parser.add_argument("--warm", type=int, default=3, help="warm events per process")
    parser.add_argument("--functions", default=",".join(f.name for f in COLD_FUNCTIONS if f.name != "route_ai"))
    parser.add_argument("--mode", choices=("auto", "scaled"), default="auto")
    parser.add_argument("--prices", default=str(ROOT / "config" / "prices.yaml"))
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    prices = yaml.safe_load(Path(args.prices).read_text(encoding="utf-8"))
    python = LAMBDA_VENV / "bin" / "python"
    if not python.exists() or not LAYER.is_dir():
        raise SystemExit(f"{LAMBDA_VENV} with its layer/ is missing: run `make bench` (it creates it)")
    wanted = [f for f in COLD_FUNCTIONS if f.name in args.functions.split(",")]
    wanted.sort(key=lambda f: f.name != "route")  # conversations and stats read what route leaves
    names = [f.name for f in wanted]
    by_name = {f.name: f for f in wanted}
    limit = CpuLimit(args.mode)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # the clean-up below runs on a plain kill too
    workdir = Path(tempfile.mkdtemp(prefix="kefu-mem-"))
    fixture = ColdFixture()
    runner = ColdRunner(fixture, workdir, python)
    samples: dict[str, dict[int | None, Sample]] = {n: {} for n in names}
    calibration: dict[int, float] = {}
    timeouts = {f.name: float(fixture.functions[f.logical_id].timeout) for f in wanted}
    started = time.monotonic()
    rounds: list[str] = []

    def measure(pairs: list[tuple[str, int | None]]) -> None:
        for _ in range(args.runs):
            for name, mb in pairs:
                result = runner.run(by_name[name], pyc=True, warm=args.warm, memory=mb or FULL_VCPU_MB,
                                    wrap=limit.wrap(mb))
                samples[name].setdefault(mb, Sample()).add(result)

    try:
        if limit.mode != "scaled":
            for mb in sizes:
                calibration[mb] = limit.calibrate(python, mb)
        for fn in wanted:  # warm-up (the steady state every later run meets) and the .pyc, not counted
            runner.run(fn, pyc=True, prime=True)
        measure([(n, mb) for mb in [None, *([] if limit.mode == "scaled" else sizes)] for n in names])
        # Where no size asked for meets the goals: the model (corrected by what was measured) names
        # the sizes that would; measure those, choose again, at most three times.
        for _ in range(3 if limit.mode != "scaled" else 0):
            table = build_table(names, samples, sizes, extra=True)
            for n, goal in GOALS.items():  # below the smallest measured size that meets it, not above
                met = [mb for mb, fig in table.get(n, {}).items() if fig.measured and fig.cold < goal[0]]
                if met:
                    table[n] = {mb: fig for mb, fig in table[n].items() if fig.measured or mb < min(met)}
            picks = pick(names, table, timeouts, prices, "cold")
            missing = sorted({(n, p.mb) for n, p in picks.items() if p.mb is not None and p.mb not in samples[n]},
                             key=lambda pair: (names.index(pair[0]), pair[1]))
            if not missing:
                break
            rounds.append(", ".join(f"{n} at {mb} MB" for n, mb in missing))
            measure(missing)  # type: ignore[arg-type]
    finally:
        fixture.close()
        limit.close()
        shutil.rmtree(workdir, ignore_errors=True)
    report(args, wanted, sizes, samples, calibration, limit, prices, fixture, timeouts, rounds,
           time.monotonic() - started)


def report(args: argparse.Namespace, wanted: list[ColdFunction], sizes: list[int],
           samples: dict[str, dict[int | None, Sample]], calibration: dict[int, float], limit: CpuLimit,
           prices: dict[str, Any], fixture: ColdFixture, timeouts: dict[str, float], rounds: list[str],
           seconds: float) -> None:
    names = [f.name for f in wanted]
    deployed = {f.name: fixture.functions[f.logical_id].memory for f in wanted}
    if limit.mode == "scaled":
        print(f"memory sizes: CPU share NOT limited on this machine ({limit.detail}); every figure at a size is an "
              f"ESTIMATE from the unlimited run: wall + CPU x (1769/MB - 1)")
    else:
        print(f"memory sizes: CPU share limited by {limit.mode} ({limit.detail}), {PERIOD_US // 1000} ms periods; "
              "calibration (a CPU-bound child's CPU time / wall time): "
              + ", ".join(f"{mb} MB {got:.3f} (target {share(mb):.3f})" for mb, got in calibration.items()))
    print(f"  {args.runs} fresh process(es) per function and size, each a cold start (layer .pyc shipped) then "
          f"{args.warm} warm events; medians; this machine ({os.cpu_count()} cores, shared), not Lambda arm64; "
          f"{seconds:.0f} s in all. Prices: arm64 ${prices['per_unit']['lambda_gb_second_arm64']}/GB-s, "
          f"${prices['per_request']['lambda_request'] * 1e6:.2f}/million requests ({prices['region']} {prices['as_of']}).")
    for line in rounds:
        print(f"  measured beyond the sizes asked for, because the model said the goals need it: {line}")
    shown = build_table(names, samples, sizes, extra=False)
    for fn in wanted:
        full = samples[fn.name][None]
        print(f"  {fn.name} ({fn.logical_id}, template MemorySize {deployed[fn.name]} MB, Timeout "
              f"{timeouts[fn.name]:.0f} s; event: {fn.first_event}):")
        print(f"    full vCPU (unlimited, ~{FULL_VCPU_MB} MB and up): cold start {med(full.cold_ms):.0f} ms "
              f"(CPU {med(full.cold_cpu_ms):.0f} ms), warm event {med(full.warm_ms):.1f} ms "
              f"(CPU {med(full.warm_cpu_ms):.1f} ms), peak RSS {max(full.rss_mb):.0f} MB")
        for mb, fig in shown[fn.name].items():
            kind = "measured" if fig.measured else "estimated"
            est = f" [plain scaling estimate: cold {fig.est_cold:.0f} ms, warm {fig.est_warm:.0f} ms]" if fig.measured else ""
            problems = fits(fig, mb, timeouts[fn.name])
            print(f"    {mb:>4} MB ({kind}): cold start {fig.cold:.0f} ms (init at full CPU: {fig.cold_init_boost:.0f} ms), "
                  f"warm event {fig.warm:.1f} ms, peak RSS {fig.rss:.0f} MB; "
                  f"${invocation_price(fig.warm, mb, prices) * 1e6:.3f} per million warm invocations, "
                  f"${cold_price(fig.cold, mb, prices) * 1e6:.2f} per million cold starts{est}"
                  + (f"; UNUSABLE: {', '.join(problems)}" if problems else ""))
            bench(f"memory.{fn.name}.{mb}.cold_ms", round(fig.cold), "ms", f"{kind}, CPU share {share(mb):.3f}")
            bench(f"memory.{fn.name}.{mb}.warm_ms", round(fig.warm, 1), "ms", f"{kind}, a warm event's handler time")
    table = build_table(names, samples, sizes, extra=True)
    recommended: dict[str, Pick] = {}
    for reading, attr in (("conservatively (the limit from the interpreter's first instruction)", "cold"),
                          ("with init at full CPU (if Lambda does not hold init to the share)", "cold_init_boost")):
        # Measured sizes first; a size only the model speaks for where no measured one meets the goal.
        picks = pick(names, shown, timeouts, prices, attr)
        modelled = pick(names, table, timeouts, prices, attr)
        picks.update({n: modelled[n] for n, p in picks.items() if p.mb is None})
        print(f"  cheapest MemorySize per function, cold starts read {reading}:")
        for n in names:
            print(f"    {n}: {picks[n].mb if picks[n].mb is not None else 'none'} MB (template today: "
                  f"{deployed[n]} MB) - {picks[n].why}")
        if attr == "cold":
            recommended = picks
    path = [n for n in WELCOME_PATH if n in names]
    if len(path) == len(WELCOME_PATH):
        unlimited = [samples[n][None] for n in path]
        print(f"  the whole chain a welcome waits for (callback -> sync -> route), SQS hops not counted: at full vCPU "
              f"{' + '.join(f'{med(u.cold_ms):.0f}' for u in unlimited)} = {sum(med(u.cold_ms) for u in unlimited):.0f} ms "
              f"with all three cold, {sum(med(u.warm_ms) for u in unlimited):.0f} ms warm")
        for label, sized in (("today", {n: deployed[n] for n in path}),
                             ("recommended", {n: recommended[n].mb for n in path})):
            where = "today's sizes (template.yaml)" if label == "today" else "the recommended sizes"
            if any(mb is None or mb not in table[n] for n, mb in sized.items()):
                continue
            figs = [table[n][sized[n] or 0] for n in path]
            pairs = list(zip(path, figs, strict=True))
            per_million = sum(PER_MESSAGE[n] * invocation_price(f.warm, sized[n] or 0, prices) for n, f in pairs) * 1e6
            all_cold = sum(cold_price(f.cold, sized[n] or 0, prices) for n, f in pairs)
            print(f"    {label} ({'/'.join(str(sized[n]) for n in path)} MB): all cold "
                  f"{' + '.join(f'{f.cold:.0f}' for f in figs)} = {sum(f.cold for f in figs):.0f} ms, warm "
                  f"{sum(f.warm for f in figs):.0f} ms; the three cost ${per_million:.2f} per million messages warm "
                  f"(invocations per message from the cost model) and ${all_cold * 1e6:.2f} "
                  "per million times all three start cold")
            bench(f"memory.welcome_chain.{label}.cold_ms", round(sum(f.cold for f in figs)), "ms",
                  f"callback + sync + route cold starts at {where}")
    for n in names:
        bench(f"memory.{n}.recommended_mb", recommended[n].mb or -1, "MB",
              "cheapest size meeting the goals, cold starts read conservatively (-1: none)")


if __name__ == "__main__":
    main()
