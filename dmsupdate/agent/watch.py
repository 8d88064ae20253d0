"""`dms-update watch`: poll and update forever.

Each pause is the interval with random jitter (±20 %) so a fleet does not poll
in lockstep. When anything the run called answered 429/503, the next pause is
at least its Retry-After and doubles on each consecutive throttled run (capped).
Once a day the run is a full scan, which reports late keys, and its fingerprint
is the full one from a scan of the whole store (a hand edit shows there). When the control
plane answers a report with a rebuild request, the next run is a rebuild.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable

from dmsupdate.agent.runner import Runner
from dmsupdate.agent.status import Busy

log = logging.getLogger("dmsupdate.agent")
JITTER = 0.2
FULL_SCAN_EVERY = 24 * 3600.0
MAX_BACKOFF = 3600.0


class Watcher:
    """The polling loop; `sleep`, `clock` and `rand` are injectable so tests need not wait."""

    def __init__(
        self,
        runner: Runner,
        interval: float,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.runner = runner
        self.interval = interval
        self.sleep = sleep
        self.clock = clock
        self.rand = rand
        self.last_full_scan: float | None = None
        self.backoff = 0.0

    def pause(self) -> float:
        """Seconds to wait before the next run."""
        base = self.interval * (1 + JITTER * (2 * self.rand() - 1))
        if not self.runner.throttled:
            self.backoff = 0.0
            return base
        retry = self.runner.retry_after or 0.0
        self.backoff = min(
            MAX_BACKOFF, max(self.interval, self.backoff * 2 if self.backoff else self.interval)
        )
        return max(base, retry, self.backoff)

    def run_once(self) -> float:
        """One run (a full scan once a day); return the pause before the next."""
        now = self.clock()
        full = self.last_full_scan is None or now - self.last_full_scan >= FULL_SCAN_EVERY
        try:
            if self.runner.rebuild_requested:
                log.info("the control plane asked for a rebuild")
                status = self.runner.rebuild()
            else:
                status = self.runner.update(full_scan=full, verify=full)
            if full and status.get("lastSucceeded"):
                self.last_full_scan = now
        except Busy as exc:
            log.info("skipping this round: %s", exc)
            self.runner.throttled = False
        except Exception as exc:  # a watch loop keeps going whatever one run does
            log.error("run failed: %s", exc)
        return self.pause()

    def run_forever(self, rounds: int | None = None) -> None:
        """Loop until interrupted (or for `rounds` runs)."""
        done = 0
        while rounds is None or done < rounds:
            wait = self.run_once()
            done += 1
            if rounds is not None and done >= rounds:
                return
            log.info("next run in %.0f s", wait)
            self.sleep(wait)
