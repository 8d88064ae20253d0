"""Run the benchmarks: `python -m bench [--scale] [NAME ...]` (names without the `bench_` prefix; default all).

Each module `bench/bench_*.py` has `main(argv) -> Outcome` (bench/report.py).
The run ends with one summary table of every target (figure, spread, goal,
met or not), keeps each benchmark's outcome in var/bench/results/ and writes
docs/benchmarks.md from the kept outcomes (`python -m bench --docs` rewrites
the document alone). Benchmarks whose module sets `SCALE = True` (the fleet at
10x: a data set that takes long to build the first time) run only with
`--scale` (`make bench SCALE=1`) or when named.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import io
import pkgutil
import sys
import time
import traceback
from pathlib import Path


def discover() -> list[str]:
    """Names of the benchmark modules, sorted."""
    folder = Path(__file__).resolve().parent
    return sorted(m.name for m in pkgutil.iter_modules([str(folder)]) if m.name.startswith("bench_"))


class _Tee(io.TextIOBase):
    """Writes to the terminal and keeps a copy (the figures of a benchmark that reports no Outcome)."""

    def __init__(self, out) -> None:
        self.out, self.kept = out, io.StringIO()

    def write(self, text: str) -> int:
        self.kept.write(text)
        return self.out.write(text)

    def flush(self) -> None:
        self.out.flush()


def run_main(module, report):
    """`module.main([])`, or `main()` for one without arguments; an Outcome even from a benchmark
    that only prints (its printed figures become its section, as a block, and it has no targets)."""
    tee = _Tee(sys.stdout)
    with contextlib.redirect_stdout(tee):
        result = module.main([]) if inspect.signature(module.main).parameters else module.main()
    if isinstance(result, report.Outcome):
        return result
    lines = tee.kept.getvalue().rstrip().splitlines()[-80:]
    return report.Outcome(
        [],
        ["Printed figures (this benchmark reports no targets to bench/report.py):", "", "```", *lines, "```"],
        0,
    )


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench import docs, report

    if argv == ["--docs"]:
        print(f"wrote {docs.write()}")
        return 0
    scale = "--scale" in argv
    argv = [a for a in argv if a != "--scale"]
    names = discover()
    wanted = [a if a.startswith("bench_") else f"bench_{a}" for a in argv]
    unknown = [w for w in wanted if w not in names]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; available: {', '.join(names)}", file=sys.stderr)
        return 2
    records, failed = [], []
    for name in wanted or names:
        module = importlib.import_module(f"bench.{name}")
        if not wanted and getattr(module, "SCALE", False) and not scale:
            continue
        print(f"== {name}  (load average {report.load_average():.1f})", flush=True)
        started, load_start, clock = time.time(), report.load_average(), time.perf_counter()
        try:
            outcome = run_main(module, report)
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            failed.append(name)
            traceback.print_exc()
            print(f"!! {name} failed: {type(exc).__name__}: {exc}", flush=True)
            continue
        seconds = time.perf_counter() - clock
        records.append(
            report.save(name, outcome, f"python -m bench {name[6:]}", started, load_start, seconds)
        )
        print(f"== {name} done in {seconds:.0f} s\n", flush=True)
    print("Summary (medians; spread is the lowest and highest run):")
    report.print_table(report.SUMMARY_HEADER, report.summary_rows(records))
    for name in failed:
        print(f"FAILED: {name} (no figures)")
    print(f"\nwrote {docs.write()} from {report.RESULTS}")
    missed = [t.name for r in records for t in report.targets_of(r) if t.met is False]
    return 1 if failed or missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
