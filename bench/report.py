"""What every benchmark reports, and how: targets with median and spread, the machine, memory, the results file.

A benchmark's `main(argv)` returns an `Outcome`: the targets it judged (each a
median over at least three runs, with every run's figure, so the spread is
shown) and the lines of its detail table. `python -m bench` prints one summary
table of every target, keeps each outcome in `var/bench/results/NAME.json`, and
`bench.docs` writes docs/benchmarks.md from those files, so no figure in the
document is copied by hand.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(os.environ.get("BENCH_RESULTS_DIR", ROOT / "var" / "bench" / "results"))
MIN_RUNS = 3


def vmhwm_mb() -> float:
    """This process's peak resident memory (VmHWM, /proc/self/status), in MB.

    Read inside the measured process: `ru_maxrss` of a child is not used, as on
    Linux a child inherits its parent's high-water mark across exec.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("VmHWM is not in /proc/self/status")


def reset_vmhwm() -> None:
    """Start a new high-water mark from the current RSS (writing 5 to clear_refs), where the kernel allows it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def load_average() -> float:
    return os.getloadavg()[0]


@dataclass
class Target:
    """One judged figure: its median over the runs, every run's figure, the goal and whether it holds.

    `rule` says how `met` was decided (the median, the worst run, every run): the
    issue states some goals for every run or for the worst one, not the median.
    """

    name: str
    unit: str  # "x" for a ratio, else the unit of the figure (ms, s, MB, calls)
    runs: list[float]
    goal: str  # e.g. "<= 1.5x", ">= 0.5x", "< 150 ms"
    met: bool | None
    rule: str = "median"
    note: str = ""  # what the figure is made of (the two sides' own medians), and why it misses if it does

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    @property
    def spread(self) -> str:
        low, high = min(self.runs), max(self.runs)
        return f"{fmt(low, self.unit)} – {fmt(high, self.unit)}" if len(self.runs) > 1 else "one run"


def judged(
    name: str,
    unit: str,
    runs: Sequence[float],
    goal: str,
    *,
    at_most: float | None = None,
    at_least: float | None = None,
    rule: str = "median",
    note: str = "",
) -> Target:
    """A Target whose `met` is computed from the runs by `rule`: `median`, `worst` (every run) ."""
    runs = list(runs)
    if rule == "median":
        picked = [statistics.median(runs)]
    elif rule == "worst":
        picked = runs
    else:
        raise ValueError(rule)
    met = all((at_most is None or x <= at_most) and (at_least is None or x >= at_least) for x in picked)
    if len(runs) < MIN_RUNS:
        note = (note + "; " if note else "") + f"only {len(runs)} run(s): not judged"
        met = None
    return Target(name, unit, runs, goal, met, "every run" if rule == "worst" else rule, note)


@dataclass
class Outcome:
    """What one benchmark run measured: its targets and the lines of its detail table (markdown)."""

    targets: list[Target]
    details: list[str] = field(default_factory=list)
    runs: int = MIN_RUNS


def fmt(value: float, unit: str) -> str:
    if unit == "x":
        return f"{value:.2f}×" if value >= 0.1 else f"{value:.3f}×"
    if unit in ("ms", "s"):
        return f"{value:,.1f} {unit}" if value < 1000 else f"{value:,.0f} {unit}"
    if unit in ("MB",):
        return f"{value:,.0f} {unit}"
    return f"{value:,.4g} {unit}".strip()


def alternated(sides: dict[str, Callable[[], float]], runs: int, warm: bool = True) -> dict[str, list[float]]:
    """Each side's figure over `runs` rounds, the order of the sides reversed every round.

    With `warm`, each side runs once untimed first, so neither side pays for the
    cold caches (inode cache, PostgreSQL buffers, imports) the other one filled.
    """
    names = list(sides)
    if warm:
        for name in names:
            sides[name]()
    figures: dict[str, list[float]] = {name: [] for name in names}
    for n in range(runs):
        for name in names if n % 2 == 0 else reversed(names):
            figures[name].append(sides[name]())
    return figures


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f"{kb / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpus": str(os.cpu_count()),
        "cpu": cpu,
        "memory": memory,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgresql": _postgres_version(),
        "commit": _git("rev-parse", "--short", "HEAD"),
        "reference_ms": f"{reference_ms():.0f}",
    }


def reference_ms() -> float:
    """This machine's speed at one core of plain Python: the best of five runs of a fixed loop.

    Hosts of the same kind differ (a neighbour's load, the CPU's clock): two sections
    measured days apart compare through this figure, not through their dates.
    """
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        total = 0
        for i in range(REFERENCE_LOOP):
            total += i
        best = min(best, time.perf_counter() - started)
    return best * 1000


# Additions in the reference loop (about 0.1 s on a 2020s server core).
REFERENCE_LOOP = 2_000_000


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _postgres_version() -> str:
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        return ""
    try:
        import psycopg

        with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", connect_timeout=5) as conn:
            return conn.execute("SHOW server_version").fetchone()[0]
    except Exception:  # the version is a label; a benchmark must not fail for it
        return ""


def save(
    name: str, outcome: Outcome, command: str, started: float, load_start: float, seconds: float
) -> dict:
    """Write one outcome with its context to var/bench/results/NAME.json; the record written."""
    record = {
        "bench": name,
        "command": command,
        "date": datetime.fromtimestamp(started, UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load_start": round(load_start, 2),
        "load_end": round(load_average(), 2),
        "seconds": round(seconds, 1),
        "machine": machine(),
        "runs": outcome.runs,
        "targets": [asdict(t) for t in outcome.targets],
        "details": outcome.details,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(record, indent=1))
    return record


def load_records() -> list[dict]:
    """Every kept result, by benchmark name."""
    if not RESULTS.is_dir():
        return []
    return [json.loads(p.read_text()) for p in sorted(RESULTS.glob("bench_*.json"))]


def targets_of(record: dict) -> list[Target]:
    return [Target(**t) for t in record["targets"]]


def verdict(target: Target) -> str:
    if target.met is None:
        return "not judged"
    return "met" if target.met else "**not met**"


def summary_rows(records: list[dict]) -> list[list[str]]:
    """The summary table: one row per target of every record."""
    rows = []
    for record in records:
        for t in targets_of(record):
            rows.append(
                [
                    t.name,
                    fmt(t.median, t.unit),
                    t.spread,
                    f"{len(t.runs)}",
                    f"{t.goal} ({t.rule})",
                    verdict(t),
                    f"{record['load_start']:.1f} → {record['load_end']:.1f}",
                ]
            )
    return rows


SUMMARY_HEADER = ["target", "figure (median)", "spread (min – max)", "runs", "goal", "verdict", "load avg"]


def print_table(header: list[str], rows: list[list[str]], out=sys.stdout) -> None:
    """A plain-text table for the terminal."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    print(line, file=out)
    print("-" * len(line), file=out)
    for row in rows:
        print(
            "  ".join(str(c).replace("**", "").ljust(w) for c, w in zip(row, widths, strict=True)), file=out
        )


def run_standalone(name: str, main: Callable[[list[str]], Outcome], argv: list[str]) -> int:
    """`python -m bench.bench_NAME`: run, print the summary of this benchmark and keep its result."""
    started, load_start, clock = time.time(), load_average(), time.perf_counter()
    outcome = main(argv)
    record = save(
        name,
        outcome,
        "python -m bench." + name + "".join(f" {a}" for a in argv),
        started,
        load_start,
        time.perf_counter() - clock,
    )
    print()
    print_table(SUMMARY_HEADER, summary_rows([record]))
    return 0 if all(t.met is not False for t in outcome.targets) else 1
