"""What the notifications app does when servers and jobs change; a failure here never fails the sender."""

from __future__ import annotations

import logging

from jobs.models import Job, JobStatus
from notifications import services
from notifications.models import Webhook

log = logging.getLogger(__name__)


def server_changed(sender, server_ids: list[int], **kwargs) -> None:
    """Reports cost nothing more where no webhook is enabled (then there is nothing to tell)."""
    if not Webhook.objects.filter(enabled=True).exists():
        return
    try:
        services.observe(server_ids)
        datasets = services.Server.objects.filter(pk__in=server_ids).values_list("dataset_id", flat=True)
        for dataset_id in sorted(set(datasets)):
            services.check_applied(dataset_id)
    except Exception:  # noqa: BLE001 - the reports are recorded whatever happens here
        log.exception("notifications for servers %s failed", server_ids)


def job_finished(sender, job_id: int, status: str, **kwargs) -> None:
    if status != JobStatus.FAILED or not Webhook.objects.filter(enabled=True).exists():
        return
    try:
        job = Job.objects.select_related("dataset", "server__dataset").get(pk=job_id)
        services.job_failed(job)
    except Exception:  # noqa: BLE001
        log.exception("notification of failed job %s failed", job_id)
