"""Replica fingerprints of a 1,000,000-quad embedded store: the full scan vs a bare pyoxigraph iteration, `counts` per run, the update after a replace.

Full: each side runs in its own subprocess over the same store (opened read-only),
timed from its first read to its end, peak memory its own `VmHWM`: the raw side
iterates every quad (`for quad in store`, nothing else); the agent side computes
the full fingerprint (every graph through Oxigraph's N-Triples serializer, each
line hashed, blank nodes rewritten, the total). `counts` per run: what an update
run with nothing to apply adds for its fingerprint (read the kept state and check
the store's file signature, build the fingerprint, write the kept state back).
Incremental: a 1,000-triple `replace` of a graph applied by the embedded backend,
then the kept fingerprint brought up to date (a scan of that graph alone).
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.bench_agent_bootstrap import CACHE, make_dump
from bench.harness import measure_in_subprocess
from bench.report import Outcome, judged, run_standalone

QUADS = 1_000_000
ROUNDS = 3

RAW = """
import json, sys, time
import pyoxigraph as ox
from bench.report import vmhwm_mb
store = ox.Store.read_only(sys.argv[1])
started = time.perf_counter()
n = 0
for quad in store:
    n += 1
print(json.dumps({"seconds": time.perf_counter() - started, "maxrss_mb": vmhwm_mb(), "quads": n}))
"""

FULL = """
import json, sys, time
import pyoxigraph as ox
from bench.report import vmhwm_mb
from dmsupdate.agent.fingerprint_scan import scan_store
from dmsupdate.state.fingerprint import build_fingerprint
store = ox.Store.read_only(sys.argv[1])
started = time.perf_counter()
graphs = {g: (s.triples, s.hash) for g, s in scan_store(store).items()}
fp = build_fingerprint(graphs, "full", None, "now")
print(json.dumps({"seconds": time.perf_counter() - started, "maxrss_mb": vmhwm_mb(),
                  "quads": fp["total"]["triples"]}))
"""


def build_store(db_dir: Path) -> None:
    import pyoxigraph as ox

    dump = CACHE / "dump-1m.nq.gz"
    if not dump.exists():
        print("generating the 1,000,000-quad dump (cached in bench/results/)", flush=True)
        make_dump(dump)
    store = ox.Store(str(db_dir))
    with gzip.open(dump, "rb") as stream:
        store.bulk_load(input=stream, format=ox.RdfFormat.N_QUADS)
    store.flush()
    store.optimize()
    del store


def counts_per_run(db_dir: Path, log: Path, runs: int) -> list[float]:
    """Milliseconds a run with nothing applied spends on its `counts` fingerprint (the store itself opened outside)."""
    import gc

    import pyoxigraph as ox

    from dmsupdate.agent.kept_fingerprint import Changes, KeptFingerprint

    kept = KeptFingerprint(log / "fingerprint.json", db_dir)
    store = ox.Store(str(db_dir))
    kept.rescan(store)
    del store
    gc.collect()
    kept.save()
    figures = []
    for _ in range(runs):
        started = time.perf_counter()
        kept.take()
        spent = time.perf_counter() - started
        store = ox.Store(str(db_dir))
        started = time.perf_counter()
        kept.refresh(store, Changes(), "counts")
        fingerprint = kept.fingerprint("counts", None)
        spent += time.perf_counter() - started
        del store
        gc.collect()
        started = time.perf_counter()
        kept.save()
        figures.append((spent + time.perf_counter() - started) * 1000)
        assert fingerprint is not None and fingerprint["total"]["triples"] == QUADS
    return figures


def replace_rounds(db_dir: Path, base: Path, runs: int) -> tuple[list[float], list[float]]:
    """Seconds of a 1,000-triple replace by the embedded backend, and of the kept fingerprint's update after it."""
    from dmsupdate.agent.embedded import EmbeddedBackend
    from dmsupdate.agent.kept_fingerprint import KeptFingerprint
    from dmsupdate.state.keys import EffectiveTime, format_key
    from dmsupdate.state.plan import LedgerState, build_plan
    from dmsupdate.state.stores import open_store

    graph = "http://example.org/graph/7"
    root = open_store(f"file://{base / 'updates-root'}")
    kept = KeptFingerprint(base / "kept.json", db_dir)
    applied, updated = [], []
    for n in range(runs + 1):  # the first round warms the caches and is not counted
        body = "".join(
            f'<http://example.org/r{n}/{i}> <http://example.org/p> "{n} {i}" .\n' for i in range(1000)
        )
        key = format_key(EffectiveTime(10**18 + n), "bench", "replace", graph, "nt")
        root.put_new(key, io.BytesIO(body.encode()), len(body))
        (entry,) = [
            e
            for e in build_plan(
                root.list("updates/"), LedgerState(baseline=EffectiveTime(10**18 + n - 1)), 24
            ).entries
            if e.key == key
        ]
        backend = EmbeddedBackend(db_dir)
        if kept.graphs is None:
            kept.rescan(backend.store)
        started = time.perf_counter()
        backend.apply(entry, root)
        took = time.perf_counter() - started
        started = time.perf_counter()
        kept.refresh(backend.store, backend.changes, "full")
        refreshed = time.perf_counter() - started
        assert kept.graphs is not None and kept.graphs[graph].triples == 1000
        backend.close()
        if n:
            applied.append(took)
            updated.append(refreshed)
    return applied, updated


def main(argv: list[str] | None = None) -> Outcome:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=ROUNDS)
    args = parser.parse_args(argv or [])
    base = Path(tempfile.mkdtemp(prefix="bench-fingerprint-", dir=os.environ.get("BENCH_DIR")))
    try:
        db_dir = base / "store"
        print("loading the 1,000,000-quad store", flush=True)
        build_store(db_dir)
        full: list[dict[str, float]] = []
        raw: list[dict[str, float]] = []
        details = [
            "| round | full fingerprint | bare iteration | VmHWM fingerprint / iteration |",
            "|---|---|---|---|",
        ]
        for n in range(args.runs):
            for side in ["raw", "full"] if n % 2 == 0 else ["full", "raw"]:
                (raw if side == "raw" else full).append(
                    measure_in_subprocess(RAW if side == "raw" else FULL, str(db_dir))
                )
            assert full[-1]["quads"] == raw[-1]["quads"] == QUADS
            line = (
                f"| {n + 1} | {full[-1]['seconds']:.1f} s | {raw[-1]['seconds']:.1f} s | "
                f"{full[-1]['maxrss_mb']:.0f} / {raw[-1]['maxrss_mb']:.0f} MB |"
            )
            details.append(line)
            print(line, flush=True)
        counts = counts_per_run(db_dir, base / "log", args.runs)
        applied, updated = replace_rounds(db_dir, base, args.runs)
        details += [
            "",
            f"`counts` per run: {', '.join(f'{x:.1f} ms' for x in counts)}.",
            f"1,000-triple replace: {', '.join(f'{x * 1000:.1f} ms' for x in applied)}; "
            f"fingerprint update after it: {', '.join(f'{x * 1000:.1f} ms' for x in updated)}.",
        ]
    finally:
        shutil.rmtree(base, ignore_errors=True)
    f = statistics.median(r["seconds"] for r in full)
    r = statistics.median(r["seconds"] for r in raw)
    return Outcome(
        [
            judged(
                f"full fingerprint of a {QUADS:,}-quad store vs a bare iteration",
                "x",
                [x["seconds"] / y["seconds"] for x, y in zip(full, raw, strict=True)],
                "<= 1.5x",
                at_most=1.5,
                note=f"fingerprint {f:.1f} s against {r:.1f} s",
            ),
            judged(
                "full fingerprint peak memory over the bare iteration's (VmHWM)",
                "MB",
                [x["maxrss_mb"] - y["maxrss_mb"] for x, y in zip(full, raw, strict=True)],
                "<= +50 MB",
                at_most=50,
            ),
            judged(f"`counts` per run on a {QUADS:,}-quad store", "ms", counts, "< 50 ms", at_most=50),
            judged(
                "fingerprint update after a 1,000-triple replace vs the replace",
                "x",
                [u / a for u, a in zip(updated, applied, strict=True)],
                "< 2x",
                at_most=2,
                note=f"update {statistics.median(updated) * 1000:.1f} ms against "
                f"{statistics.median(applied) * 1000:.1f} ms",
            ),
        ],
        details,
        args.runs,
    )


if __name__ == "__main__":
    raise SystemExit(run_standalone("bench_fingerprint", main, sys.argv[1:]))
