"""`dms-update watch`: poll and update forever.

Each pause is the interval with random jitter (±20 %) so a fleet does not poll
in lockstep. When anything the run called answered 429/503, the next pause is
at least its Retry-After and doubles on each consecutive throttled run (capped).
Once a day the run is a full scan, which reports late keys, and its fingerprint
is the full one from a scan of the whole store (a hand edit shows there). When the control
plane answers a report with a rebuild request, the next run is a rebuild.

With `controlplane` set, each round first polls the dataset's head
(dmsupdate.agent.poll): while it has not moved since the last successful run,
the round lists nothing; a throttled poll (429/503) skips the round and waits at
least its Retry-After; a control plane that does not answer means listing S3 as
before. With `update_on_start` (the default) the first run is at once.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable

from dmsupdate.agent.poll import MOVED, THROTTLED, UNCHANGED, HeadAnswer, HeadPoller
from dmsupdate.agent.ready import note_seen
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
        cp = runner.config.controlplane
        self.poller: HeadPoller | None = HeadPoller(cp) if cp is not None else None
        # Whether the last run succeeded: until one does, every round runs (a head that did not move is no excuse).
        self.caught_up = False
        self.runs = 0

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

    def poll(self) -> HeadAnswer | None:
        """Ask the control plane whether the head moved (None: no control plane, or its dataset is not known yet)."""
        if self.poller is None or not self.runner.dataset:
            return None
        answer = self.poller.poll(self.runner.dataset)
        if answer.outcome in (MOVED, UNCHANGED):
            note_seen(self.runner.config.root_head_path, answer.newest_ns)
        return answer

    def run_once(self) -> float:
        """One round: poll the head, and run (a full scan once a day) unless nothing moved; the pause before the next."""
        now = self.clock()
        full = self.last_full_scan is None or now - self.last_full_scan >= FULL_SCAN_EVERY
        answer = self.poll()
        if answer is not None and answer.outcome == THROTTLED and not self.runner.rebuild_requested:
            self.runner.throttled, self.runner.retry_after = True, answer.retry_after
            return self.pause()
        quiet = answer is not None and answer.outcome == UNCHANGED
        if quiet and self.caught_up and not full and not self.runner.rebuild_requested:
            self.runner.throttled = False
            log.debug("the head has not moved: nothing to list")
            return self.pause()
        try:
            self.runs += 1
            if self.runner.rebuild_requested:
                log.info("the control plane asked for a rebuild")
                status = self.runner.rebuild()
            else:
                status = self.runner.update(full_scan=full, verify=full)
            self.caught_up = bool(status.get("lastSucceeded"))
            if self.caught_up and self.poller is not None and answer is not None and answer.etag:
                self.poller.etag = answer.etag
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
        if not self.runner.config.update_on_start:
            self.sleep(self.pause())
        while rounds is None or done < rounds:
            wait = self.run_once()
            done += 1
            if rounds is not None and done >= rounds:
                return
            log.info("next run in %.0f s", wait)
            self.sleep(wait)
