"""REST API v1: publications (publish, record, applied-on), datasets and the object registry."""

from __future__ import annotations

from django.conf import settings
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.parsers import BaseParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings

from accounts.permissions import (
    OPERATORS,
    PUBLISHERS,
    READERS,
    ApiViewSet,
    check_publish_scope,
    readable_dataset_ids,
    token_of,
)
from audit.services import actor_name, record
from dmsupdate.api import ApiError
from dmsupdate.state.keys import FORMATS_BY_OP, GRAPH_OPS, UPDATE_OPS
from jobs.api.serializers import JobAcceptedSerializer, JobSerializer
from jobs.models import JobKind
from jobs.services import start_job
from publications import services
from publications.api.filters import PublicationFilter, StateObjectFilter
from publications.api.serializers import (
    DatasetSerializer,
    PublicationDetailSerializer,
    PublicationSerializer,
    RecordRequestSerializer,
    StateObjectSerializer,
    UploadRequestSerializer,
)
from publications.models import Dataset, PublicationEvent, StateObject
from publications.validation import Upload, check_layout, infer_format, spool, too_large, validate_content
from servers.models import Server
from servers.services import lags_of

# Multipart framing around the file is small; a body this much over the limit is refused unread.
MULTIPART_ALLOWANCE = 64 * 1024


class RawBodyParser(BaseParser):
    """Any other media type is the object itself: spooled to a temporary file with its digests."""

    media_type = "*/*"

    def parse(self, stream, media_type=None, parser_context=None) -> dict:
        return {"upload": spool(stream)}


class _NoFormatOverride:
    """DRF settings, except that `?format=` does not pick a renderer."""

    URL_FORMAT_OVERRIDE = None

    def __getattr__(self, name: str):
        return getattr(api_settings, name)


class PublicationNegotiation(DefaultContentNegotiation):
    """`format` is a publication parameter here (`ttl`, `nt.gz`, ...), not DRF's renderer override."""

    settings = _NoFormatOverride()


def publisher_of(request: Request) -> services.Publisher:
    return services.Publisher(request.user, actor_name(request.user, token_of(request)))


def dataset_named(name: object) -> Dataset:
    """The dataset a request names; 400 when it does not exist."""
    dataset = Dataset.objects.filter(name=str(name or "")).first()
    if dataset is None:
        raise ApiError("unknown_dataset", f"no dataset named {name!r}")
    return dataset


class PublicationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ApiViewSet):
    """Publish updates and follow them until every server of the dataset applied them."""

    roles = {"list": READERS, "retrieve": READERS, "create": PUBLISHERS}
    filterset_class = PublicationFilter
    parser_classes = [JSONParser, MultiPartParser, RawBodyParser]
    content_negotiation_class = PublicationNegotiation

    def get_queryset(self) -> QuerySet[PublicationEvent]:
        rows = PublicationEvent.objects.select_related("dataset", "object").order_by("-effective_ns", "-id")
        scope = readable_dataset_ids(self.request)
        return rows.filter(dataset_id__in=scope) if scope is not None else rows

    def get_serializer_class(self):
        return PublicationDetailSerializer if self.action == "retrieve" else PublicationSerializer

    def retrieve(self, request: Request, *args, **kwargs) -> Response:
        event = self.get_object()
        servers = list(Server.objects.filter(dataset_id=event.dataset_id))
        states = {pk: lag.state for pk, lag in lags_of(servers).items()}
        serializer = PublicationDetailSerializer(event, context={"servers": servers, "states": states})
        return Response(serializer.data)

    @extend_schema(
        request={
            "multipart/form-data": UploadRequestSerializer,
            "application/json": RecordRequestSerializer,
            "text/turtle": bytes,
            "application/n-triples": bytes,
            "application/n-quads": bytes,
            "application/rdf+xml": bytes,
            "application/sparql-update": bytes,
            "application/gzip": bytes,
        },
        parameters=[
            OpenApiParameter("dataset", str, description="raw body: the dataset"),
            OpenApiParameter("op", str, description="raw body: add | replace | drop | update | postproc"),
            OpenApiParameter("label", str, description="raw body: the publishing system's label"),
            OpenApiParameter("graph", str, description="raw body: graph URI (add, replace, drop)"),
            OpenApiParameter("component", str, description="raw body: component (postproc)"),
            OpenApiParameter("format", str, description="raw body: ttl, nt, nq, rdf, ru (+ .gz)"),
            OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER),
        ],
        responses={
            201: PublicationSerializer,
            400: OpenApiResponse(description="invalid parameters or content"),
            409: OpenApiResponse(description="Idempotency-Key reused for a different request"),
            413: OpenApiResponse(description="body or decompressed content too large"),
            503: OpenApiResponse(description="the state root is unavailable; retry"),
        },
    )
    def create(self, request: Request, *args, **kwargs) -> Response:
        """Upload an object (multipart `file` or raw body), or record one already in S3 (JSON)."""
        limit = settings.DMSUPDATE["MAX_UPLOAD_BYTES"]
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError as exc:
            raise ApiError("invalid_length", "Content-Length is not a number") from exc
        if length > limit + MULTIPART_ALLOWANCE:
            raise too_large(limit)
        media = (request.content_type or "").split(";")[0].strip().lower()
        if media == "application/json":
            return self._record(request)
        return self._upload(request, media)

    def _upload(self, request: Request, media: str) -> Response:
        multipart = media == "multipart/form-data"
        params = {k: request.query_params.get(k, "") for k in UploadRequestSerializer().fields if k != "file"}
        if not multipart:
            self._precheck(request, params)
        data = request.data
        if multipart:
            for name in params:
                params[name] = str(data.get(name) or params[name])
        dataset = self._precheck(request, params)
        upload = self._body(data, multipart, params)
        try:
            op, label = params["op"], params["label"]
            arg = self._arg(params)
            fmt = infer_format(
                op,
                params["format"],
                upload.filename if upload else "",
                media,
                bool(upload and upload.size and upload.gzipped),
            )
            check_layout(label, op, arg, fmt)
            validate_content(upload, op, fmt)
            wanted = {"dataset": dataset.name, "op": op, "label": label, "arg": arg, "format": fmt}
            print_ = services.fingerprint(wanted, upload.sha256 if upload else "")
            key = request.headers.get("Idempotency-Key") or None
            publisher = publisher_of(request)
            with services.idempotent(publisher, key, print_) as earlier:
                if earlier is not None:
                    return Response(
                        earlier, status=status.HTTP_201_CREATED, headers={"Idempotent-Replayed": "true"}
                    )
                event = services.publish_upload(
                    dataset,
                    label=label,
                    op=op,
                    arg=arg,
                    fmt=fmt,
                    upload=upload,
                    publisher=publisher,
                    idempotency_key=key,
                    print_=print_,
                )
        finally:
            if upload is not None:
                upload.close()
        return Response(event.response, status=status.HTTP_201_CREATED)

    def _precheck(self, request: Request, params: dict) -> Dataset:
        """Check what needs no body first: the dataset, the caller's scope, label, op and graph."""
        for name in ("dataset", "op", "label"):
            if not params[name]:
                raise ApiError("missing_parameter", f"{name} is required")
        op = params["op"]
        if op not in UPDATE_OPS:
            raise ApiError("invalid_op", f"unknown op {op!r}; expected one of {', '.join(UPDATE_OPS)}")
        dataset = dataset_named(params["dataset"])
        check_publish_scope(request, dataset, params["label"])
        placeholder = FORMATS_BY_OP[op][0]
        check_layout(params["label"], op, self._arg(params), placeholder)
        return dataset

    @staticmethod
    def _arg(params: dict) -> str | None:
        """The key's argument: the graph for graph ops, the component for postproc."""
        op, graph, component = params["op"], params["graph"], params["component"]
        if op in GRAPH_OPS:
            if component:
                raise ApiError("invalid_key", f"{op} takes a graph, not a component")
            return graph or None
        if op == "postproc":
            if graph:
                raise ApiError("invalid_key", "postproc takes a component, not a graph")
            return component or None
        if graph or component:
            raise ApiError("invalid_key", f"{op} takes no graph or component")
        return None

    @staticmethod
    def _body(data, multipart: bool, params: dict) -> Upload | None:
        if multipart:
            file = data.get("file")
            if file is None:
                return None
            if not hasattr(file, "chunks"):
                raise ApiError("invalid_file", "the multipart `file` part must be a file")
            if file.size is not None and file.size > settings.DMSUPDATE["MAX_UPLOAD_BYTES"]:
                raise too_large(settings.DMSUPDATE["MAX_UPLOAD_BYTES"])
            return spool(file, filename=file.name or "")
        upload = data.get("upload") if hasattr(data, "get") else None
        if upload is not None and not upload.size:
            upload.close()
            return None
        return upload

    def _record(self, request: Request) -> Response:
        if not isinstance(request.data, dict):
            raise ApiError("invalid", "the JSON body must be an object {dataset, s3_url, ...}")
        given = RecordRequestSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        fields = given.validated_data
        dataset = dataset_named(fields["dataset"])
        check_publish_scope(request, dataset, None)
        publisher = publisher_of(request)
        key = request.headers.get("Idempotency-Key") or None
        print_ = services.fingerprint({k: fields.get(k) for k in sorted(fields)}, "")
        with services.idempotent(publisher, key, print_) as earlier:
            if earlier is not None:
                return Response(
                    earlier, status=status.HTTP_201_CREATED, headers={"Idempotent-Replayed": "true"}
                )
            event = services.record_external(
                dataset,
                s3_url=fields["s3_url"],
                publisher=publisher,
                size=fields.get("size"),
                md5=fields.get("md5"),
                sha256=(fields.get("sha256") or "").lower(),
                idempotency_key=key,
                print_=print_,
                check_label=lambda label: check_publish_scope(request, dataset, label),
            )
        return Response(event.response, status=status.HTTP_201_CREATED)


class DatasetViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, ApiViewSet):
    """Datasets (state roots); operators create them."""

    roles = {"list": READERS, "retrieve": READERS, "create": OPERATORS, "update_all": OPERATORS}
    serializer_class = DatasetSerializer
    queryset = Dataset.objects.order_by("name")
    lookup_field = "name"
    lookup_value_regex = "[^/]+"

    def perform_create(self, serializer: serializers.BaseSerializer) -> None:
        dataset = serializer.save()
        record(
            actor_name(self.request.user, token_of(self.request)),
            "dataset.created",
            dataset.name,
            {"s3root": dataset.s3root, "s3endpoint": dataset.s3endpoint},
        )

    @extend_schema(request=None, responses={202: JobAcceptedSerializer})
    @action(detail=True, methods=["post"], url_path="update-all", url_name="update-all")
    def update_all(self, request: Request, name: str | None = None) -> Response:
        """Trigger every enabled server of the dataset and wait for them (a background job)."""
        dataset = self.get_object()
        job = start_job(
            JobKind.UPDATE_ALL,
            dataset=dataset,
            params={"trigger": "api"},
            user=request.user,
            actor=actor_name(request.user, token_of(request)),
        )
        return Response({"job": JobSerializer(job).data}, status=status.HTTP_202_ACCEPTED)


class StateObjectViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ApiViewSet):
    """The registry of keys under every dataset's root."""

    roles = {"list": READERS, "retrieve": READERS}
    serializer_class = StateObjectSerializer
    filterset_class = StateObjectFilter
    queryset = StateObject.objects.select_related("dataset").order_by("dataset__name", "key")
