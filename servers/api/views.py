"""REST API v1: data servers (list with lag, register, trigger, report) and dataset-wide updates."""

from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import F, QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, mixins, status
from rest_framework.decorators import action
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.models import ApiToken, Role
from accounts.permissions import AGENTS, OPERATORS, READERS, ApiViewSet, token_of
from audit.services import actor_name, record
from dmsupdate.api import ApiError
from dmsupdate.state.status import InvalidStatus
from jobs.api.serializers import JobAcceptedSerializer, JobSerializer
from jobs.models import JobKind
from servers.api.filters import ServerFilter
from servers.api.serializers import (
    LIST_COLUMNS,
    ListedServer,
    ReportAcceptedSerializer,
    ServerRegisteredSerializer,
    ServerSerializer,
    StatusReportSerializer,
)
from servers.lag import lags_of, rebuild_pending
from servers.models import RunTrigger, Server
from servers.services import record_report, request_run


def lag_context(view, servers: list[Server]) -> dict:
    """Serializer context with every server's lag, in a number of queries that does not grow with the list."""
    return {**view.get_serializer_context(), "lags": lags_of(servers)}


def accepted(job) -> Response:
    return Response({"job": JobSerializer(job).data}, status=status.HTTP_202_ACCEPTED)


class ServerViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ApiViewSet):
    """Data servers with their replay lag; operators register and trigger them, agents report."""

    roles = {
        "list": READERS,
        "retrieve": READERS,
        "create": OPERATORS,
        "update_server": OPERATORS,
        "rebuild": OPERATORS,
        "report": AGENTS,
    }
    serializer_class = ServerSerializer
    parser_classes = [JSONParser]
    lookup_field = "name"
    lookup_value_regex = "[^/]+"
    filterset_class = ServerFilter

    def get_queryset(self) -> QuerySet[Server]:
        return Server.objects.annotate(
            dataset_name=F("dataset__name"),
            fingerprint_mode=F("fingerprint__mode"),
            fingerprint_total=F("fingerprint__total"),
        ).order_by("dataset__name", "name")

    def list(self, request: Request, *args, **kwargs) -> Response:
        listed = self.filter_queryset(self.get_queryset()).values_list(*LIST_COLUMNS)
        page = self.paginate_queryset(listed)
        rows = [ListedServer._make(row) for row in (page if page is not None else listed)]
        data = ServerSerializer(rows, many=True, context=lag_context(self, rows)).data
        return self.get_paginated_response(data) if page is not None else Response(data)

    def retrieve(self, request: Request, *args, **kwargs) -> Response:
        server = self.get_object()
        return Response(ServerSerializer(server, context=lag_context(self, [server])).data)

    @extend_schema(request=ServerSerializer, responses={201: ServerRegisteredSerializer})
    def create(self, request: Request, *args, **kwargs) -> Response:
        """Register a server; the answer holds its report token and serve token, shown only once."""
        given = ServerSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        actor = actor_name(request.user, token_of(request))
        with transaction.atomic():
            server = given.save(agent_token=secrets.token_urlsafe(32))
            agent_user, _ = get_user_model().objects.get_or_create(
                username=f"agent.{server.name}"[:150], defaults={"is_active": True}
            )
            if agent_user.has_usable_password():
                agent_user.set_unusable_password()
                agent_user.save(update_fields=["password"])
            token, key = ApiToken.issue(agent_user, Role.AGENT, name=f"agent-{server.name}", server=server)
            record(
                actor,
                "server.registered",
                server.name,
                {"dataset": server.dataset.name, "agent_url": server.agent_url, "token": token.name},
            )
            record(
                actor, "token.issued", agent_user.get_username(), {"token": token.name, "role": Role.AGENT}
            )
        server = self.get_queryset().get(pk=server.pk)
        data = ServerRegisteredSerializer(server, context=lag_context(self, [server])).data
        data["token"] = key
        data["agent_token"] = server.agent_token
        return Response(data, status=status.HTTP_201_CREATED)

    def _trigger(self, request: Request, kind: str) -> Response:
        server = self.get_object()
        actor = actor_name(request.user, token_of(request))
        return accepted(request_run(server, kind, request.user, actor, RunTrigger.API))

    @extend_schema(request=None, responses={202: JobAcceptedSerializer})
    @action(detail=True, methods=["post"], url_path="update", url_name="update")
    def update_server(self, request: Request, name: str | None = None) -> Response:
        """Ask the server's agent to update now (a background job)."""
        return self._trigger(request, JobKind.UPDATE)

    @extend_schema(request=None, responses={202: JobAcceptedSerializer})
    @action(detail=True, methods=["post"])
    def rebuild(self, request: Request, name: str | None = None) -> Response:
        """Ask the server's agent to rebuild from the newest image (a background job)."""
        return self._trigger(request, JobKind.REBUILD)

    @extend_schema(
        request=StatusReportSerializer,
        responses={200: ReportAcceptedSerializer, 400: OpenApiResponse(description="malformed report")},
    )
    @action(detail=True, methods=["post"])
    def report(self, request: Request, name: str | None = None) -> Response:
        """An agent's status.json after a run; only that server's agent token may send it."""
        server = self.get_object()
        token = token_of(request)
        if token is None or token.server_id != server.pk:
            raise exceptions.PermissionDenied(f"this token does not report for {server.name}")
        try:
            report = record_report(server, request.data)
        except InvalidStatus as exc:
            raise ApiError("invalid_report", str(exc)) from exc
        return Response(
            {
                "server": server.name,
                # Where a pull agent polls the head (GET /api/v1/datasets/{name}/head/).
                "dataset": server.dataset.name,
                "received_at": report.received_at,
                "pending_updates": report.pending_updates,
                "lag_seconds": report.lag_seconds,
                # Read by pull agents (`watch`): the admin asked for a rebuild.
                "rebuild": not report.server.agent_url and rebuild_pending(report.server),
            }
        )
