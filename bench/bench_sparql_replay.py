"""Agent replay of 200 updates through the SPARQL backend into the Oxigraph server (and Virtuoso) vs plain `requests`.

The workload is bench_agent_replay's (200 updates of ~1,000 triples: adds in
Turtle and gzip N-Triples, replaces, drops, SPARQL updates; 191 operations after
pruning), after an empty dump. Each side of each round gets its own fresh Oxigraph
server (a new `oxigraph serve` on an empty folder: the store's background work on an
earlier side's writes never lands in the next side's time), and runs in its own
subprocess against it after the agent's own bootstrap (untimed), timed from its first
operation to its last (imports and the bootstrap outside the clock), its peak
memory the process's own `VmHWM`. The raw side is a `requests` session sending
the same operations from the same files, each body read whole (gunzipped) and
sent with its `Content-Length`, and checking each answer's status. The agent
(`Runner.update()`) adds what it needs: listing and parsing the keys, verified
reads spooled to a temporary file, the SQLite ledger committed after each
operation, status.json rewritten after each. With `verify: counts` it also
parses each file for its distinct triples and a sample and asks the store one to
three small queries per operation; that cost is reported beside the 1.15× goal,
which is for `verify: off`. Sides alternate their order every round. Virtuoso
(a private `virtuoso-t`, digest auth on `/sparql-auth`; one instance for all its
rounds, as it takes long to start) gets the same replay, fewer rounds; its dump is
loaded graph by graph.

    python -m bench.bench_sparql_replay [--runs R] [--rounds N] [--virtuoso-rounds N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from bench.bench_agent_replay import build_workload
from bench.report import Outcome, Target, judged, run_standalone
from dmsupdate.agent.images import write_dump
from dmsupdate.state.keys import format_key

REPO = Path(__file__).resolve().parent.parent

AGENT = """
import json, sys, time
from bench.report import vmhwm_mb
from dmsupdate.agent.config import Config
from dmsupdate.agent.runner import Runner
data = json.loads(sys.argv[1])
boot = Runner(Config.from_dict(dict(data, s3root=data["boot_root"])))
assert boot.update()["lastSucceeded"]
if data.get("raw"):
    import gzip, requests
    from requests.auth import HTTPDigestAuth
    config = Config.from_dict(data)
    entries = [e for e in Runner(config).plan() if e.skip is None]
    q, u, g = config.endpoints()
    s = requests.Session()
    if config.auth is not None:
        s.auth = HTTPDigestAuth(config.auth.username, config.auth.secret)
    media = {"ttl": "text/turtle", "nt": "application/n-triples"}
    root = data["s3root"].removeprefix("file://")
    started = time.perf_counter()
    for e in entries:
        if e.op == "drop":
            r = s.delete(g, params={"graph": e.graph})
            assert r.status_code < 300 or r.status_code == 404, r.text
            continue
        with open(f"{root}/{e.key}", "rb") as f:
            body = f.read()
        if e.key.endswith(".gz"):
            body = gzip.decompress(body)
        if e.op == "update":
            r = s.post(u, data=body, headers={"Content-Type": "application/sparql-update"})
        else:
            fmt = media[e.format.removesuffix(".gz")]
            r = s.request("POST" if e.op == "add" else "PUT", g, params={"graph": e.graph}, data=body,
                          headers={"Content-Type": fmt})
        assert r.status_code < 300, (r.status_code, r.text[:200])
    seconds = time.perf_counter() - started
    ops = len(entries)
else:
    runner = Runner(Config.from_dict(data))
    started = time.perf_counter()
    status = runner.update()
    seconds = time.perf_counter() - started
    assert status["lastSucceeded"], status
    ops = status["applied"]
print(json.dumps({"seconds": seconds, "maxrss_mb": vmhwm_mb(), "ops": ops}))
"""


def measure(config: dict) -> dict[str, float]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    out = subprocess.run(
        [sys.executable, "-c", AGENT, json.dumps(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=3600,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip()[-1500:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def build_roots(base: Path) -> tuple[Path, Path]:
    """(the full root: empty dump + 200 updates, the dump-only root used to empty the store)."""
    import io

    import pyoxigraph as ox

    from bench.bench_agent_replay import at
    from dmsupdate.state.stores import open_store

    root = base / "state"
    root.mkdir(parents=True)
    build_workload(root, base)
    shutil.rmtree(root / "images")
    buf = io.BytesIO()
    write_dump(ox.Store(), buf)
    store = open_store(f"file://{root}")
    store.put_new(
        format_key(at(0), "bench", "dump", None, "nq.gz"), io.BytesIO(buf.getvalue()), len(buf.getvalue())
    )
    boot = base / "boot"
    boot.mkdir()
    shutil.copytree(root / "images", boot / "images")
    return root, boot


SIDES = ("raw", "verify off", "verify counts")


@contextmanager
def fresh_oxigraph(folder: Path) -> Iterator[dict]:
    """A new Oxigraph server on an empty folder for one side of a round; its endpoints."""
    from tests.stores.instances import start_oxigraph

    folder.mkdir(parents=True, exist_ok=True)
    server = start_oxigraph(folder)
    try:
        yield {
            "query_endpoint": f"{server.base}/query",
            "update_endpoint": f"{server.base}/update",
            "gsp_endpoint": f"{server.base}/store",
        }
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


def one_round(
    base: Path, n: int, root: Path, boot: Path, store: Callable[[Path], AbstractContextManager[dict]]
) -> dict[str, dict]:
    figures = {}
    for side in SIDES if n % 2 == 0 else reversed(SIDES):
        home = base / f"home-{n}-{side.replace(' ', '-')}"
        with store(home / "store") as endpoints:
            config = {
                "s3root": f"file://{root}",
                "boot_root": f"file://{boot}",
                "logArea": str(home / "log"),
                "dblocation": str(home / "db"),
                "dbname": "db",
                "verify": "counts" if side == "verify counts" else "off",
                "raw": side == "raw",
                **endpoints,
            }
            figures[side] = measure(config)
        shutil.rmtree(home, ignore_errors=True)
    return figures


def summarise(name: str, rounds_per_run: list[list[dict]], details: list[str]) -> list[Target]:
    off_runs, counts_runs = [], []
    details += [
        f"**{name}**: per-round wall ratios to raw `requests`",
        "",
        "| run | verify off / raw | verify counts / raw | median raw | median off | median counts | peak MB raw / off / counts |",
        "|---|---|---|---|---|---|---|",
    ]
    for run, rounds in enumerate(rounds_per_run, 1):
        off = [r["verify off"]["seconds"] / r["raw"]["seconds"] for r in rounds]
        counts = [r["verify counts"]["seconds"] / r["raw"]["seconds"] for r in rounds]
        off_runs.append(statistics.median(off))
        counts_runs.append(statistics.median(counts))

        def med(side: str, key: str = "seconds", rounds=rounds) -> float:
            return statistics.median(r[side][key] for r in rounds)

        line = (
            f"| {run} | {', '.join(f'{x:.3f}' for x in off)} | {', '.join(f'{x:.3f}' for x in counts)} | "
            f"{med('raw'):.2f} s | {med('verify off'):.2f} s | {med('verify counts'):.2f} s | "
            f"{med('raw', 'maxrss_mb'):.0f} / {med('verify off', 'maxrss_mb'):.0f} / "
            f"{med('verify counts', 'maxrss_mb'):.0f} |"
        )
        details.append(line)
        print(line, flush=True)
    details.append("")
    ops = rounds_per_run[0][0]["raw"]["ops"]
    return [
        judged(
            f"SPARQL replay of {ops} operations into {name}, verify off, vs raw requests",
            "x",
            off_runs,
            "<= 1.15x",
            at_most=1.15,
            rule="worst",
        ),
        Target(
            f"SPARQL replay into {name} with verify: counts, vs raw requests",
            "x",
            counts_runs,
            "reported (the cost of verify)",
            None,
            note="verify parses each file and asks the store 1-3 queries per operation",
        ),
    ]


def main(argv: list[str] | None = None) -> Outcome:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--virtuoso-rounds", type=int, default=1, help="rounds per run on Virtuoso (0: none)")
    args = parser.parse_args(argv or [])
    sys.path.insert(0, str(REPO))
    from tests.stores.instances import SPARQL_PASSWORD, SPARQL_USER, start_virtuoso

    base = Path(tempfile.mkdtemp(prefix="bench-sparql-", dir=os.environ.get("BENCH_DIR")))
    details: list[str] = []
    targets: list[Target] = []
    try:
        root, boot = build_roots(base)
        one_round(base, -1, root, boot, fresh_oxigraph)  # warm-up
        runs = [
            [one_round(base, run * args.rounds + n, root, boot, fresh_oxigraph) for n in range(args.rounds)]
            for run in range(args.runs)
        ]
        targets += summarise("the Oxigraph server", runs, details)
        if args.virtuoso_rounds:
            virtuoso = start_virtuoso(base / "virtuoso")
            try:
                secret = base / "sparql-password"
                secret.write_text(SPARQL_PASSWORD)
                endpoints = {
                    "update_endpoint": f"{virtuoso.base}/sparql-auth",
                    "gsp_endpoint": f"{virtuoso.base}/sparql-graph-crud-auth",
                    "auth": {"scheme": "digest", "username": SPARQL_USER, "password_file": str(secret)},
                }

                @contextmanager
                def shared(_folder: Path) -> Iterator[dict]:
                    yield endpoints

                one_round(base, -1, root, boot, shared)
                runs = [
                    [
                        one_round(base, run * args.virtuoso_rounds + n, root, boot, shared)
                        for n in range(args.virtuoso_rounds)
                    ]
                    for run in range(args.runs)
                ]
            finally:
                virtuoso.stop()
            targets += summarise("Virtuoso 7 (digest auth)", runs, details)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return Outcome(targets, details, args.runs)


if __name__ == "__main__":
    raise SystemExit(run_standalone("bench_sparql_replay", main, sys.argv[1:]))
