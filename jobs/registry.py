"""Which function runs each kind of job: every app registers its own (in its `jobs.py`).

The jobs app knows no domain app: `publications.jobs` and `servers.jobs` register
their runners with `@runs(JobKind.X)`, and JobsConfig.ready() imports every
installed app's `jobs` module so the registry is complete before a job starts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Runner = Callable[[Any], dict]

_RUNNERS: dict[str, Runner] = {}


def runs(*kinds: str) -> Callable[[Runner], Runner]:
    """Register the decorated function as the runner of these job kinds: `run(job) -> result dict`."""

    def register(runner: Runner) -> Runner:
        for kind in kinds:
            if kind in _RUNNERS and _RUNNERS[kind] is not runner:
                raise RuntimeError(f"job kind {kind!r} already has a runner: {_RUNNERS[kind].__qualname__}")
            _RUNNERS[kind] = runner
        return runner

    return register


def runner_of(kind: str) -> Runner:
    """The runner registered for `kind`; KeyError when no app registered one."""
    return _RUNNERS[kind]


def registered(kind: str) -> bool:
    return kind in _RUNNERS
