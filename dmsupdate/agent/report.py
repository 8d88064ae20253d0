"""Reporting status to the control plane after each run; a failed report never fails the run."""

from __future__ import annotations

import logging
from typing import Any

import requests

from dmsupdate.agent.config import ControlPlane
from dmsupdate.agent.errors import parse_retry_after

log = logging.getLogger("dmsupdate.agent")


def report_status(controlplane: ControlPlane, status: dict[str, Any]) -> float | None:
    """POST status.json to the control plane; log failures; return Retry-After seconds when throttled."""
    url = controlplane.report_url
    try:
        response = requests.post(
            url,
            json=status,
            headers={"Authorization": f"Token {controlplane.token}"},
            timeout=(5, 20),
        )
    except requests.RequestException as exc:
        log.warning("status report to %s failed: %s", url, exc)
        return None
    if response.status_code in (429, 503):
        retry = parse_retry_after(response.headers.get("Retry-After"))
        log.warning("status report to %s throttled (HTTP %s)", url, response.status_code)
        return retry
    if response.status_code >= 400:
        log.warning("status report to %s refused: HTTP %s %s", url, response.status_code, response.text[:200])
    return None
