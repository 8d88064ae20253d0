"""The `dms-update` command line (DESIGN §5).

Exit codes: 0 ok, 1 the run failed, 2 bad usage or config, 75 another run holds the lock.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import sys
from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

from dmsupdate.agent import version
from dmsupdate.agent.config import Config, ConfigError
from dmsupdate.agent.errors import AgentError
from dmsupdate.agent.status import Busy
from dmsupdate.state.redact import redact
from dmsupdate.state.stores import StoreError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_BUSY = 0, 1, 2, 75
# The original tool's flags, kept so its cron lines work unchanged.
ALIASES = {"--plan": "plan", "--perform": "update"}

log = logging.getLogger("dmsupdate.agent")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="config file (default: $DMS_UPDATE_CONFIG or /opt/dms-update/config.json)",
    )
    parser = argparse.ArgumentParser(
        prog="dms-update",
        parents=[common],
        description="Initialise and catch up a triple store from the DMS state in S3.",
    )
    parser.add_argument("--version", action="version", version=f"dms-update {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    p = sub.add_parser("plan", parents=[common], help="what would be done, one line per op")
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p = sub.add_parser("update", parents=[common], help="do it; prints the status JSON")
    p.add_argument("--json", action="store_true", help="compact JSON, warnings only on stderr")
    p.add_argument("--full-scan", action="store_true", help="list the whole root and report late keys")
    sub.add_parser("rebuild", parents=[common], help="new database from the newest image/dump, then replay")
    sub.add_parser("status", parents=[common], help="print status.json")
    p = sub.add_parser("verify", parents=[common], help="compute the full fingerprint of the store now")
    p.add_argument("--json", action="store_true", help="print the fingerprint as JSON")
    p = sub.add_parser(
        "serve", parents=[common], help="HTTP: GET /status, POST /update, POST /rebuild, POST /verify"
    )
    p.add_argument("--bind", default="127.0.0.1:8586", metavar="HOST:PORT", help="default 127.0.0.1:8586")
    p = sub.add_parser("watch", parents=[common], help="poll and update forever (with jitter)")
    p.add_argument(
        "--interval", type=float, default=300.0, metavar="S", help="seconds between runs (default 300)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    args_in = [ALIASES.get(a, a) for a in (sys.argv[1:] if argv is None else argv)]
    parser = build_parser()
    try:
        args = parser.parse_args(args_in)
    except SystemExit as exc:
        return int(exc.code or 0) and EXIT_USAGE
    quiet = getattr(args, "json", False)
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="dms-update: %(message)s",
        stream=sys.stderr,
    )
    path = getattr(args, "config", None) or Config.default_path()
    try:
        config = Config.load(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(redact(f"dms-update: {exc.source}: {problem}"), file=sys.stderr)
        return EXIT_USAGE
    secrets = config.secrets
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactingFilter(secrets))
    try:
        return _dispatch(args, config)
    except Busy as exc:
        print(redact(f"dms-update: busy: {exc}", secrets), file=sys.stderr)
        return EXIT_BUSY
    except (AgentError, StoreError, OSError) as exc:
        print(redact(f"dms-update: error: {exc}", secrets), file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # never a traceback for an admin; the message names the cause
        print(redact(f"dms-update: internal error: {type(exc).__name__}: {exc}", secrets), file=sys.stderr)
        return EXIT_FAILED


class RedactingFilter(logging.Filter):
    """Every log line through dmsupdate.state.redact: no credential reaches stderr or a log file."""

    def __init__(self, secrets: tuple[str, ...]) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage(), self.secrets)
        record.args = None
        return True


def _loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _print_json(value: Any, compact: bool = False) -> None:
    print(redact(json.dumps(value) if compact else json.dumps(value, indent=2)))


def _dispatch(args: argparse.Namespace, config: Config) -> int:
    from dmsupdate.agent.runner import Runner

    runner = Runner(config)
    if args.command == "plan":
        plan = runner.plan_details()
        if args.json:
            _print_json([e.as_json() for e in plan.entries])
        else:
            for entry in plan.entries:
                print(entry.as_line())
            if not plan.entries:
                print("# nothing to do")
        for key in plan.invalid:
            log.warning("invalid key (never applied): %s", key)
        for key in plan.late:
            log.warning("late key older than the window (never applied): %s", key)
        for key in plan.deferred:
            log.warning("key dated ahead of this server's clock (deferred): %s", key)
        return EXIT_OK
    if args.command in ("update", "rebuild"):
        # A progress bar only for a person at a terminal; cron and pipes get the status alone.
        if sys.stderr.isatty():
            from tqdm.contrib.logging import logging_redirect_tqdm

            runner.progress_out = sys.stderr
        with logging_redirect_tqdm() if runner.progress_out else nullcontext():
            if args.command == "update":
                status = runner.update(full_scan=args.full_scan)
            else:
                status = runner.rebuild()
        _print_json(status, compact=getattr(args, "json", False))
        return EXIT_OK if status.get("lastSucceeded") else EXIT_FAILED
    if args.command == "status":
        _print_json(runner.status())
        return EXIT_OK
    if args.command == "verify":
        fingerprint = runner.verify()["fingerprint"]
        if args.json:
            _print_json(fingerprint)
            return EXIT_OK
        print(
            f"effective time {fingerprint['effectiveDate'] or '-'}, computed at {fingerprint['computedAt']}"
        )
        for graph, entry in fingerprint["graphs"].items():
            print(f"{entry['hash']}  {entry['triples']:>12}  {graph or '(default graph)'}")
        total = fingerprint["total"]
        print(f"total {total['triples']} triples, {total['hash']}")
        return EXIT_OK
    if args.command == "serve":
        from dmsupdate.agent.serve import parse_bind, serve_forever

        try:
            host, port = parse_bind(args.bind)
        except ValueError as exc:
            print(f"dms-update: --bind: {exc}", file=sys.stderr)
            return EXIT_USAGE
        if config.agent_token is None and not _loopback(host):
            # Anyone who can reach the address could trigger rebuilds: refuse rather than serve openly.
            print(
                f"dms-update: serve on {host} needs agent_token in the config "
                "(only loopback addresses are served without one)",
                file=sys.stderr,
            )
            return EXIT_USAGE
        serve_forever(runner, host, port)
        return EXIT_OK
    if args.command == "watch":
        from dmsupdate.agent.watch import Watcher

        if args.interval <= 0:
            print("dms-update: --interval must be a positive number of seconds", file=sys.stderr)
            return EXIT_USAGE
        Watcher(runner, args.interval).run_forever()
        return EXIT_OK
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
