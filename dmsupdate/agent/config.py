"""The agent's config.json (DESIGN §5): the original tool's file works unchanged.

Unknown keys are ignored; every missing or wrong key is reported on its own line.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from dmsupdate.agent.endpoints import (
    SYSTEM_GRAPHS,
    Auth,
    derive_endpoints,
    parse_auth,
    split_credentials,
)
from dmsupdate.state.redact import redact

DEFAULT_CONFIG = "/opt/dms-update/config.json"
DEFAULT_LOG_AREA = "/var/opt/dms-update"
DEFAULT_BINDIR = "/opt/dms-update/bin"
DEFAULT_WINDOW_HOURS = 24.0
DEFAULT_LOCK_TIMEOUT = 30.0
FINGERPRINT_MODES = ("counts", "full", "off")
DEFAULT_HOOK_WAIT = 120.0
VERIFY_MODES = ("counts", "off")
DEFAULT_READY_MAX_LAG = 300.0
DEFAULT_READY_CHECK = 60.0
DEFAULT_CACHE_MAX_BYTES = 4 * 1024**3


class ConfigError(Exception):
    """The config file cannot be used; `problems` holds one line per faulty key."""

    def __init__(self, problems: list[str], source: str = "config") -> None:
        problems = [redact(p) for p in problems]  # a value echoed back may be a URL with a password
        self.problems = problems
        self.source = source
        super().__init__("; ".join(problems))


@dataclass(frozen=True)
class ControlPlane:
    """Where the agent reports its status after every run."""

    url: str
    server: str
    token: str = field(repr=False)
    # The server's dataset (its head is polled); learnt from the first report's answer when absent.
    dataset: str | None = None

    @property
    def report_url(self) -> str:
        return f"{self.url.rstrip('/')}/api/v1/servers/{self.server}/report/"

    def head_url(self, dataset: str) -> str:
        return f"{self.url.rstrip('/')}/api/v1/datasets/{dataset}/head/"


@dataclass(frozen=True)
class Config:
    """A validated agent configuration."""

    s3root: str
    s3endpoint: str | None = None
    dblocation: str | None = None
    dbname: str | None = None
    service: str | None = None
    query_endpoint: str | None = None
    update_endpoint: str | None = None
    gsp_endpoint: str | None = None
    log_area: str = DEFAULT_LOG_AREA
    bindir: str = DEFAULT_BINDIR
    window_hours: float = DEFAULT_WINDOW_HOURS
    controlplane: ControlPlane | None = None
    agent_token: str | None = None
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT
    fingerprint: str = "counts"
    auth: Auth | None = field(default=None, repr=False)
    verify: str = "counts"
    hook_wait_seconds: float = DEFAULT_HOOK_WAIT
    system_graphs: tuple[str, ...] = SYSTEM_GRAPHS
    # serve and watch run one update when they start.
    update_on_start: bool = True
    # GET /ready: the store is at most this far behind the newest update seen in the root...
    ready_max_lag_seconds: float = DEFAULT_READY_MAX_LAG
    # ...which serve checks again when its knowledge is older than this (watch: every poll).
    ready_check_seconds: float = DEFAULT_READY_CHECK
    # logArea/cache/ keeps the last installed image or dump, up to this many bytes (0: no cache).
    cache_max_bytes: int = DEFAULT_CACHE_MAX_BYTES

    @staticmethod
    def default_path() -> str:
        """`$DMS_UPDATE_CONFIG`, else `/opt/dms-update/config.json`."""
        return os.environ.get("DMS_UPDATE_CONFIG") or DEFAULT_CONFIG

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Config:
        """Read and validate a config file; raise ConfigError naming each problem."""
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError([f"cannot read {source}: {exc.strerror or exc}"], source) from exc
        except UnicodeDecodeError as exc:
            raise ConfigError([f"{source} is not UTF-8 text"], source) from exc
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                [f"{source} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"], source
            ) from exc
        return cls.from_dict(data, source)

    @classmethod
    def from_dict(cls, data: Any, source: str = "config") -> Config:
        """Validate a decoded config object; raise ConfigError naming each problem."""
        if not isinstance(data, dict):
            raise ConfigError([f"{source} must hold a JSON object, not {type(data).__name__}"], source)
        problems: list[str] = []

        def text(name: str, required: bool = False) -> str | None:
            value = data.get(name)
            if value is None:
                if required:
                    problems.append(f"{name}: missing (required)")
                return None
            if not isinstance(value, str) or not value.strip():
                problems.append(f"{name}: must be a non-empty string, not {json.dumps(value)}")
                return None
            return value.strip()

        def url(name: str) -> str | None:
            value = text(name)
            if value is not None and urlparse(value).scheme not in ("http", "https"):
                problems.append(f"{name}: must be an http:// or https:// URL, not {value!r}")
                return None
            return value

        def number(name: str, default: float, minimum: float, strict: bool) -> float:
            value = data.get(name)
            if value is None:
                return default
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            if ok and (value > minimum or (not strict and value == minimum)):
                return float(value)
            bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
            problems.append(f"{name}: must be a number {bound}, not {json.dumps(value)}")
            return default

        s3root = text("s3root", required=True)
        if s3root is not None:
            scheme = urlparse(s3root).scheme
            parsed = urlparse(s3root)
            if scheme == "s3" and not parsed.netloc:
                problems.append(f"s3root: s3:// roots need a bucket, got {s3root!r}")
            elif scheme == "file" and (
                parsed.netloc not in ("", "localhost") or not parsed.path.startswith("/")
            ):
                # file://data/state would name /state on host "data": refuse it rather than guess.
                problems.append(f"s3root: file:// roots need an absolute path, got {s3root!r}")
            elif scheme not in ("s3", "file"):
                problems.append(f"s3root: must be s3://BUCKET/PREFIX or file:///PATH, not {s3root!r}")
        s3endpoint = url("s3endpoint")
        url_credentials: dict[str, tuple[str, str]] = {}

        def endpoint(name: str) -> str | None:
            value = url(name)
            if value is None:
                return None
            bare, credentials = split_credentials(value)
            if credentials is not None:
                url_credentials[name] = credentials
            return bare

        service = endpoint("service")
        if service is not None and not service.endswith("/"):
            service += "/"  # `{service}query`: the base names a folder, with or without its slash
        embedded = service is None and data.get("update_endpoint") is None
        dblocation = text("dblocation", required=embedded)
        dbname = text("dbname", required=embedded)
        if dbname is not None and ("/" in dbname or dbname in (".", "..")):
            problems.append(f"dbname: must be a plain directory name, not {dbname!r}")
        query_endpoint = endpoint("query_endpoint")
        update_endpoint = endpoint("update_endpoint")
        gsp_endpoint = endpoint("gsp_endpoint")
        if service is None and update_endpoint is None and gsp_endpoint is not None:
            problems.append("gsp_endpoint: set service or update_endpoint too (a SPARQL backend needs both)")
        if service is None and update_endpoint is not None and gsp_endpoint is None:
            problems.append("update_endpoint: set service or gsp_endpoint too (a SPARQL backend needs both)")
        log_area = text("logArea") or DEFAULT_LOG_AREA
        bindir = text("bindir") or DEFAULT_BINDIR
        window_hours = number("window_hours", DEFAULT_WINDOW_HOURS, 0, strict=True)
        lock_timeout = number("lock_timeout", DEFAULT_LOCK_TIMEOUT, 0, strict=False)
        agent_token = text("agent_token")
        fingerprint = data.get("fingerprint", "counts")
        if fingerprint not in FINGERPRINT_MODES:
            problems.append(f"fingerprint: must be one of counts, full, off, not {json.dumps(fingerprint)}")
            fingerprint = "counts"
        hook_wait = number("hook_wait_seconds", DEFAULT_HOOK_WAIT, 0, strict=False)
        verify = data.get("verify", "counts")
        if verify not in VERIFY_MODES:
            problems.append(f"verify: must be one of {', '.join(VERIFY_MODES)}, not {json.dumps(verify)}")
            verify = "counts"
        auth = None
        if data.get("auth") is not None:
            auth = parse_auth(data["auth"], Path(source).parent if source != "config" else None, problems)
            if url_credentials:
                problems.append(
                    f"auth: credentials are also given in {', '.join(sorted(url_credentials))}; give them once"
                )
        elif url_credentials:
            pairs = set(url_credentials.values())
            if len(pairs) > 1:
                problems.append(
                    f"{', '.join(sorted(url_credentials))}: the URLs carry different credentials; "
                    "use one `auth` object instead"
                )
            else:
                user, password = pairs.pop()
                auth = Auth("basic", unquote(user), unquote(password))
        system_graphs = SYSTEM_GRAPHS
        extra_graphs = data.get("system_graphs")
        if extra_graphs is not None:
            if not isinstance(extra_graphs, list) or not all(isinstance(g, str) and g for g in extra_graphs):
                problems.append("system_graphs: must be a list of graph IRIs or IRI prefixes")
            else:
                system_graphs = SYSTEM_GRAPHS + tuple(extra_graphs)
        update_on_start = data.get("update_on_start", True)
        if not isinstance(update_on_start, bool):
            problems.append(f"update_on_start: must be true or false, not {json.dumps(update_on_start)}")
            update_on_start = True
        ready_max_lag = number("ready_max_lag_seconds", DEFAULT_READY_MAX_LAG, 0, strict=False)
        ready_check = number("ready_check_seconds", DEFAULT_READY_CHECK, 0, strict=True)
        cache_max_bytes = int(number("cache_max_bytes", DEFAULT_CACHE_MAX_BYTES, 0, strict=False))
        controlplane = None
        raw_cp = data.get("controlplane")
        if raw_cp is not None:
            if not isinstance(raw_cp, dict):
                problems.append(
                    f"controlplane: must be an object {{url, server, token}}, not {json.dumps(raw_cp)}"
                )
            else:
                cp_problems = []
                for field in ("url", "server", "token"):
                    value = raw_cp.get(field)
                    if not isinstance(value, str) or not value.strip():
                        cp_problems.append(f"controlplane.{field}: missing or not a non-empty string")
                if not cp_problems and urlparse(raw_cp["url"]).scheme not in ("http", "https"):
                    cp_problems.append(f"controlplane.url: must be an http(s) URL, not {raw_cp['url']!r}")
                cp_dataset = raw_cp.get("dataset")
                if cp_dataset is not None and (not isinstance(cp_dataset, str) or not cp_dataset.strip()):
                    cp_problems.append("controlplane.dataset: must be a non-empty string when given")
                problems.extend(cp_problems)
                if not cp_problems:
                    controlplane = ControlPlane(
                        raw_cp["url"].strip(),
                        raw_cp["server"].strip(),
                        raw_cp["token"].strip(),
                        cp_dataset.strip() if cp_dataset else None,
                    )
        if problems:
            raise ConfigError(problems, source)
        assert s3root is not None
        return cls(
            s3root=s3root,
            s3endpoint=s3endpoint,
            dblocation=dblocation,
            dbname=dbname,
            service=service,
            query_endpoint=query_endpoint,
            update_endpoint=update_endpoint,
            gsp_endpoint=gsp_endpoint,
            log_area=log_area,
            bindir=bindir,
            window_hours=window_hours,
            controlplane=controlplane,
            agent_token=agent_token,
            lock_timeout=lock_timeout,
            fingerprint=fingerprint,
            auth=auth,
            verify=verify,
            hook_wait_seconds=hook_wait,
            system_graphs=system_graphs,
            update_on_start=update_on_start,
            ready_max_lag_seconds=ready_max_lag,
            ready_check_seconds=ready_check,
            cache_max_bytes=cache_max_bytes,
        )

    @property
    def embedded(self) -> bool:
        """True when the store is the embedded Oxigraph one (no SPARQL service configured)."""
        return self.service is None and self.update_endpoint is None

    @property
    def db_dir(self) -> Path | None:
        if self.dblocation is None or self.dbname is None:
            return None
        return Path(self.dblocation) / self.dbname

    @property
    def status_path(self) -> Path:
        return Path(self.log_area) / "status.json"

    @property
    def lock_path(self) -> Path:
        return Path(self.log_area) / "lock"

    @property
    def fingerprint_path(self) -> Path:
        """The embedded store's kept fingerprint (dmsupdate.agent.kept_fingerprint)."""
        return Path(self.log_area) / "fingerprint.json"

    @property
    def ledger_path(self) -> Path:
        return Path(self.log_area) / "ledger.sqlite"

    @property
    def root_head_path(self) -> Path:
        """What the agent last saw of the root: its newest update and when (for GET /ready)."""
        return Path(self.log_area) / "root-head.json"

    @property
    def cache_dir(self) -> Path:
        return Path(self.log_area) / "cache"

    def endpoints(self) -> tuple[str, str, str]:
        """The query, update and Graph Store Protocol URLs (see dmsupdate.agent.endpoints)."""
        return derive_endpoints(self.service, self.query_endpoint, self.update_endpoint, self.gsp_endpoint)

    @property
    def secrets(self) -> tuple[str, ...]:
        """What must never be shown: the endpoint password or token, the tokens of this config."""
        found = [self.agent_token or ""]
        if self.controlplane is not None:
            found.append(self.controlplane.token)
        if self.auth is not None:
            found.append(self.auth.secret)
        return tuple(s for s in found if s)
