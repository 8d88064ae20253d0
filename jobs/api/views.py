"""REST API v1: follow a background job."""

from __future__ import annotations

from rest_framework import mixins

from accounts.permissions import READERS, ApiViewSet
from jobs.api.serializers import JobSerializer
from jobs.models import Job


class JobViewSet(mixins.RetrieveModelMixin, ApiViewSet):
    """GET /api/v1/jobs/{id}/: progress and result of a job started by a trigger."""

    roles = {"retrieve": READERS}
    serializer_class = JobSerializer
    queryset = Job.objects.select_related("dataset", "server")
