"""Readiness (`serve`'s GET /ready): what a load balancer needs to know before sending queries.

Ready means: the last run succeeded, and the store is within `ready_max_lag_seconds`
of the newest update the agent has seen in the root, seen at most
`ready_check_seconds` ago (or one `watch` interval, whichever checks more often).
What the agent saw is kept in `logArea/root-head.json` by every run (its listing),
every head poll of `watch`, and by `serve` itself when that knowledge is too old.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dmsupdate.agent.config import Config
from dmsupdate.state.keys import EffectiveTime, InvalidKey, parse_key


@dataclass(frozen=True)
class Seen:
    """The newest update effective time seen in the root (None: the root holds none), and when it was checked."""

    newest_ns: int | None
    checked_at: float


def read_seen(path: Path) -> Seen | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        newest = data.get("newest_ns")
        return Seen(int(newest) if newest is not None else None, float(data["checked_at"]))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def note_seen(path: Path, newest_ns: int | None, now: float | None = None) -> Seen:
    """Record a check of the root; the newest time never goes back (a head answer may lag a listing)."""
    before = read_seen(path)
    if before is not None and before.newest_ns is not None:
        newest_ns = max(newest_ns or 0, before.newest_ns)
    seen = Seen(newest_ns, time.time() if now is None else now)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".root-head-", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump({"newest_ns": seen.newest_ns, "checked_at": seen.checked_at}, out)
    os.replace(tmp, path)
    return seen


def _effective_ns(status: dict[str, Any]) -> int | None:
    value = status.get("effectiveDate")
    if not isinstance(value, str):
        return None
    try:
        return EffectiveTime.parse_text(value).nanos
    except InvalidKey:
        return None


def readiness(
    config: Config,
    status: dict[str, Any],
    refresh: Callable[[], int | None] | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """`{"ready", "reason", "lagSeconds", ...}`; `refresh()` checks the root again (the newest update's ns) when needed.

    A failing refresh makes the answer not ready (the agent cannot tell how far behind it is).
    """
    now = time.time() if now is None else now
    answer: dict[str, Any] = {"ready": False, "reason": None, "effectiveDate": status.get("effectiveDate")}
    if status.get("lastSucceeded") is not True:
        answer["reason"] = "the last run did not succeed" + (
            f": {status['error']}" if status.get("error") else ""
        )
        return answer
    effective = _effective_ns(status)
    if effective is None:
        answer["reason"] = "the store holds no data yet"
        return answer
    seen = read_seen(config.root_head_path)
    if refresh is not None and (seen is None or now - seen.checked_at > config.ready_check_seconds):
        try:
            seen = note_seen(config.root_head_path, refresh(), now)
        except Exception as exc:  # any failure to look: not ready, and say why
            answer["reason"] = f"cannot check the state root: {exc}"
            return answer
    if seen is None or now - seen.checked_at > config.ready_check_seconds:
        answer["reason"] = "the state root has not been checked recently"
        return answer
    lag = max(0.0, ((seen.newest_ns or 0) - effective) / 1e9)
    answer["lagSeconds"] = round(lag, 3)
    answer["checkedAt"] = seen.checked_at
    if lag > config.ready_max_lag_seconds:
        answer["reason"] = (
            f"{lag:.0f} s behind the newest update in the root (at most {config.ready_max_lag_seconds:g})"
        )
        return answer
    answer["ready"] = True
    return answer


def newest_update_ns(keys: Iterable[str]) -> int | None:
    """The newest effective time among listed update keys (others are ignored)."""
    newest = None
    for key in keys:
        try:
            effective = parse_key(key).effective
        except InvalidKey:
            continue
        if effective is not None and (newest is None or effective.nanos > newest):
            newest = effective.nanos
    return newest
