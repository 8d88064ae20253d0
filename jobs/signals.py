"""Signals of the jobs app."""

from django.dispatch import Signal

# Sent after a job ended (succeeded or failed): `job_id`, `status`.
job_finished = Signal()
