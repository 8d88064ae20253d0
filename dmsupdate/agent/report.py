"""Reporting status to the control plane after each run; a failed report never fails the run."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import requests

from dmsupdate.agent.config import ControlPlane
from dmsupdate.agent.errors import parse_retry_after
from dmsupdate.state.redact import redact

log = logging.getLogger("dmsupdate.agent")


@dataclass(frozen=True)
class ReportAnswer:
    """What the control plane said to a report: back off for `retry_after`, or rebuild next."""

    retry_after: float | None = None
    rebuild: bool = False
    dataset: str | None = None


def report_status(controlplane: ControlPlane, status: dict[str, Any]) -> ReportAnswer:
    """POST status.json to the control plane; log failures; never raise."""
    url = redact(controlplane.report_url)  # as shown in messages; the request goes to the real one
    try:
        response = requests.post(
            controlplane.report_url,
            json=status,
            headers={"Authorization": f"Token {controlplane.token}"},
            timeout=(5, 20),
        )
    except requests.RequestException as exc:
        log.warning("status report to %s failed: %s", url, redact(str(exc), (controlplane.token,)))
        return ReportAnswer()
    if response.status_code in (429, 503):
        retry = parse_retry_after(response.headers.get("Retry-After"))
        log.warning("status report to %s throttled (HTTP %s)", url, response.status_code)
        return ReportAnswer(retry_after=retry)
    if response.status_code >= 400:
        detail = redact(response.text[:200], (controlplane.token,))
        log.warning("status report to %s refused: HTTP %s %s", url, response.status_code, detail)
        return ReportAnswer()
    try:
        body = response.json()
    except ValueError:
        return ReportAnswer()
    if not isinstance(body, dict):
        return ReportAnswer()
    dataset = body.get("dataset")
    return ReportAnswer(
        rebuild=body.get("rebuild") is True, dataset=dataset if isinstance(dataset, str) else None
    )
