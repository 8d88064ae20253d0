"""Cheap polling (seed 003): `watch` asks the control plane for the dataset's head instead of listing S3.

GET /api/v1/datasets/{name}/head/ with `If-None-Match`: 304 while nothing new was
registered. The agent remembers the ETag of the head its last successful run saw, so
a failed run is retried at the next round whatever the head says. When the control
plane does not answer (down, 5xx, a wrong answer) the agent lists S3 as before; a
429 (or 503) with `Retry-After` is honoured: no run this round, and the next poll
waits at least that long.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import requests

from dmsupdate.agent.config import ControlPlane
from dmsupdate.agent.errors import parse_retry_after

log = logging.getLogger("dmsupdate.agent")
MOVED, UNCHANGED, THROTTLED, UNKNOWN = "moved", "unchanged", "throttled", "unknown"


@dataclass(frozen=True)
class HeadAnswer:
    """What one poll said: `moved`, `unchanged`, `throttled` (with Retry-After) or `unknown` (list S3)."""

    outcome: str
    etag: str | None = None
    newest_ns: int | None = None
    retry_after: float | None = None


class HeadPoller:
    """Polls one dataset's head; `etag` is the head the last successful run caught up with."""

    def __init__(self, controlplane: ControlPlane, session: requests.Session | None = None) -> None:
        self.controlplane = controlplane
        self.session = session or requests.Session()
        self.etag: str | None = None
        self.polls = 0

    def poll(self, dataset: str) -> HeadAnswer:
        self.polls += 1
        url = self.controlplane.head_url(dataset)
        headers = {"Authorization": f"Token {self.controlplane.token}"}
        if self.etag:
            headers["If-None-Match"] = self.etag
        try:
            response = self.session.get(url, headers=headers, timeout=(5, 15))
        except requests.RequestException as exc:
            log.warning("head poll %s failed (%s): listing the state root instead", url, exc)
            return HeadAnswer(UNKNOWN)
        etag = response.headers.get("ETag")
        if response.status_code == 304:
            return HeadAnswer(UNCHANGED, etag or self.etag)
        if response.status_code in (429, 503):
            retry = parse_retry_after(response.headers.get("Retry-After"))
            log.info("head poll throttled (HTTP %s, Retry-After %s)", response.status_code, retry)
            return HeadAnswer(THROTTLED, retry_after=retry)
        if response.status_code != 200 or not etag:
            log.warning(
                "head poll %s answered HTTP %s: listing the state root instead", url, response.status_code
            )
            return HeadAnswer(UNKNOWN)
        try:
            update = (response.json() or {}).get("update") or {}
            newest = update.get("effective_ns")
        except (ValueError, AttributeError):
            return HeadAnswer(UNKNOWN)
        return HeadAnswer(MOVED, etag, newest if isinstance(newest, int) else None)
