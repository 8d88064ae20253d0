"""JSON shape of a background job (GET /api/v1/jobs/{id}/ and the 202 answers of triggers)."""

from __future__ import annotations

from rest_framework import serializers

from jobs.models import Job


class JobSerializer(serializers.ModelSerializer):
    """A job: what, for which dataset/server, how far along, and how it ended."""

    dataset = serializers.SlugRelatedField(slug_field="name", read_only=True)
    server = serializers.SlugRelatedField(slug_field="name", read_only=True)

    class Meta:
        model = Job
        fields = [
            "id",
            "kind",
            "status",
            "dataset",
            "server",
            "params",
            "progress",
            "progress_text",
            "result",
            "error",
            "actor",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields


class JobAcceptedSerializer(serializers.Serializer):
    """The 202 answer of a trigger: the job to follow."""

    job = JobSerializer()
