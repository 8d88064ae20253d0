"""Real triple stores for tests and benchmarks: a private OpenLink Virtuoso 7 and `oxigraph serve`.

Each instance runs on free loopback ports with its own database folder and is
stopped by its process id. Virtuoso's first start of a new database takes about
20 s; callers start one per test session (per xdist worker) and share it.
"""

from __future__ import annotations

import configparser
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

SYSTEM_INI = Path("/etc/virtuoso-opensource-7/virtuoso.ini")
DBA_PASSWORD = "dbaTestSecret9"
SPARQL_USER = "dmsagent"
SPARQL_PASSWORD = "sparqlTestSecret7"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def virtuoso_missing() -> str | None:
    """Why Virtuoso cannot run here (None when it can)."""
    for tool in ("virtuoso-t", "isql-vt"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian package virtuoso-opensource)"
    if not SYSTEM_INI.is_file():
        return f"{SYSTEM_INI} is missing (Debian package virtuoso-opensource)"
    return None


@dataclass
class Virtuoso:
    """A running private Virtuoso: its HTTP base URL, SQL port, folders and process."""

    folder: Path
    http_port: int
    sql_port: int
    proc: subprocess.Popen | None = None
    load_dir: Path = field(default_factory=Path)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def isql(self, statements: str, timeout: float = 120) -> str:
        """Run SQL through isql-vt as dba; raise on an error in the output."""
        done = subprocess.run(
            ["isql-vt", f"127.0.0.1:{self.sql_port}", "dba", DBA_PASSWORD, f"exec={statements}"],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        out = done.stdout + done.stderr
        if done.returncode != 0 or "*** Error" in out:
            raise RuntimeError(f"isql-vt failed ({done.returncode}): {out[-2000:]}")
        return out

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def _write_ini(folder: Path, http_port: int, sql_port: int, load_dir: Path) -> Path:
    ini = configparser.RawConfigParser(strict=False, inline_comment_prefixes=(";",))
    ini.optionxform = str  # type: ignore[assignment,method-assign]
    ini.read(SYSTEM_INI)
    system_db = "/var/lib/virtuoso-opensource-7/db/"
    for section in ini.sections():
        for key, value in ini.items(section):
            if system_db in value:
                ini.set(section, key, value.replace(system_db, f"{folder}/"))
    ini.set("Parameters", "ServerPort", f"127.0.0.1:{sql_port}")
    ini.set("HTTPServer", "ServerPort", f"127.0.0.1:{http_port}")
    ini.set("Parameters", "DirsAllowed", f"., /usr/share/virtuoso-opensource-7/vad, {load_dir}")
    ini.set("Parameters", "NumberOfBuffers", "20000")
    ini.set("Parameters", "MaxDirtyBuffers", "15000")
    ini.set("Parameters", "CheckpointInterval", "0")
    path = folder / "virtuoso.ini"
    with path.open("w") as out:
        ini.write(out)
    return path


def start_virtuoso(folder: Path, timeout: float = 120) -> Virtuoso:
    """Start a private Virtuoso with a new database in `folder`, SPARQL Update granted, digest users set."""
    folder.mkdir(parents=True, exist_ok=True)
    load_dir = folder / "load"
    load_dir.mkdir(exist_ok=True)
    inst = Virtuoso(folder, free_port(), free_port(), load_dir=load_dir)
    ini = _write_ini(folder, inst.http_port, inst.sql_port, load_dir)
    log = (folder / "virtuoso.out").open("ab")
    inst.proc = subprocess.Popen(
        ["virtuoso-t", "+foreground", "+configfile", str(ini)],
        cwd=folder,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    while True:
        if inst.proc.poll() is not None:
            raise RuntimeError(f"virtuoso-t exited with {inst.proc.returncode}: see {folder}/virtuoso.log")
        try:
            r = requests.get(f"{inst.base}/sparql", params={"query": "ASK {}"}, timeout=5)
            if r.status_code == 200:
                break
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            inst.stop()
            raise RuntimeError(f"Virtuoso did not answer on {inst.base} within {timeout:g} s")
        time.sleep(0.3)
    # The default dba password is `dba`: change it, then give a SPARQL user digest access
    # to /sparql-auth and /sparql-graph-crud-auth with the right to update.
    done = subprocess.run(
        ["isql-vt", f"127.0.0.1:{inst.sql_port}", "dba", "dba", f"exec=SET PASSWORD dba {DBA_PASSWORD};"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode != 0:
        inst.stop()
        raise RuntimeError(f"isql-vt could not set the dba password: {done.stdout}{done.stderr}")
    inst.isql(
        f"DB.DBA.USER_CREATE('{SPARQL_USER}', '{SPARQL_PASSWORD}'); "
        f'GRANT SPARQL_UPDATE TO "{SPARQL_USER}"; '
        f'GRANT SPARQL_SELECT TO "{SPARQL_USER}"; '
        'GRANT SPARQL_UPDATE TO "SPARQL";'
    )
    return inst


@dataclass
class OxigraphServer:
    """A running `oxigraph serve`: its base URL (/query, /update, /store) and process."""

    folder: Path
    port: int
    proc: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def start_oxigraph(folder: Path, timeout: float = 20) -> OxigraphServer:
    exe = shutil.which("oxigraph") or str(Path(sys.executable).parent / "oxigraph")
    inst = OxigraphServer(folder, free_port())
    inst.proc = subprocess.Popen(
        [exe, "serve", "--location", str(folder), "--bind", f"127.0.0.1:{inst.port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{inst.base}/query", params={"query": "ASK {}"}, timeout=5).ok:
                return inst
        except requests.RequestException:
            time.sleep(0.05)
    inst.stop()
    raise RuntimeError(f"oxigraph serve did not answer on {inst.base}")
