"""REST API v1: publications (publish, record, applied-on), datasets and the object registry."""

from __future__ import annotations

from django.conf import settings
from django.db.models import BigIntegerField, ExpressionWrapper, F, QuerySet
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.parsers import BaseParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings

from accounts.models import Role
from accounts.permissions import (
    AGENTS,
    OPERATORS,
    PUBLISHERS,
    READERS,
    ApiViewSet,
    publish_scope,
    readable_dataset_ids,
    token_of,
)
from audit.services import actor_name, record
from dmsupdate.api import ApiError
from dmsupdate.postgres import planned_for_values
from jobs.api.serializers import JobAcceptedSerializer, JobSerializer
from jobs.models import JobKind
from jobs.services import start_job
from publications import head, services
from publications.api.filters import PublicationFilter, StateObjectFilter
from publications.api.pagination import BoundedCountPagination
from publications.api.serializers import (
    DatasetSerializer,
    PublicationDetailSerializer,
    PublicationSerializer,
    RecordRequestSerializer,
    StateObjectSerializer,
    TagsRequestSerializer,
    UploadRequestSerializer,
)
from publications.idempotency import idempotent, remember_answer, request_fingerprint
from publications.models import Dataset, PublicationEvent, StateObject
from publications.replicas import applied_on, replicas_of
from publications.tagging import set_tags
from publications.tags import parse_tags
from publications.validation import Upload, spool, too_large

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
    return services.Publisher(
        request.user, actor_name(request.user, token_of(request)), publish_scope(request)
    )


# The parameters of an upload (multipart fields, or the query string of a raw body).
UPLOAD_PARAMS = [name for name in UploadRequestSerializer().fields if name != "file"]


def answered(event: PublicationEvent) -> Response:
    """201 with the publication; its answer is kept for a repeat of its Idempotency-Key."""
    answer = PublicationSerializer(event).data
    remember_answer(event, answer)
    return Response(answer, status=status.HTTP_201_CREATED)


def replayed(earlier: PublicationEvent) -> Response:
    """The first answer to this Idempotency-Key again (as the publication is now, if none was kept)."""
    answer = earlier.response or PublicationSerializer(earlier).data
    return Response(answer, status=status.HTTP_201_CREATED, headers={"Idempotent-Replayed": "true"})


class PublicationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ApiViewSet):
    """Publish updates and follow them until every server of the dataset applied them."""

    roles = {"list": READERS, "retrieve": READERS, "create": PUBLISHERS, "tags": PUBLISHERS}
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
        replicas = replicas_of([event.dataset_id], with_state=True)[event.dataset_id]
        serializer = PublicationDetailSerializer(
            event, context={"replicas": replicas, "applied_on": applied_on([event])[event.pk]}
        )
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
        publisher = publisher_of(request)
        params = {name: request.query_params.get(name, "") for name in UPLOAD_PARAMS}
        if media == "multipart/form-data":
            data = request.data
            params = {name: str(data.get(name) or value) for name, value in params.items()}
            target = services.check_target(params, publisher)
            upload = self._file(data)
        else:
            # A raw body is the object: the parameters are checked before it is read.
            target = services.check_target(params, publisher)
            upload = self._raw(request.data)
        try:
            content = services.check_content(target, upload, params["format"], media)
            wanted = {
                "dataset": target.dataset.name,
                "op": target.op,
                "label": target.label,
                "arg": target.arg,
                "format": content.format,
                "tags": list(target.tags),
            }
            fingerprint = request_fingerprint(wanted, content.sha256)
            key = request.headers.get("Idempotency-Key") or None
            with idempotent(publisher.user, key, fingerprint) as earlier:
                if earlier is not None:
                    return replayed(earlier)
                event = services.publish_upload(target, content, publisher, key, fingerprint)
                return answered(event)
        finally:
            if upload is not None:
                upload.close()

    @staticmethod
    def _file(data) -> Upload | None:
        file = data.get("file")
        if file is None:
            return None
        if not hasattr(file, "chunks"):
            raise ApiError("invalid_file", "the multipart `file` part must be a file")
        if file.size is not None and file.size > settings.DMSUPDATE["MAX_UPLOAD_BYTES"]:
            raise too_large(settings.DMSUPDATE["MAX_UPLOAD_BYTES"])
        return spool(file, filename=file.name or "")

    @staticmethod
    def _raw(data) -> Upload | None:
        upload = data.get("upload") if hasattr(data, "get") else None
        if upload is not None and not upload.size:
            upload.close()
            return None
        return upload

    @extend_schema(request=TagsRequestSerializer, responses={200: PublicationSerializer})
    @action(detail=True, methods=["put"])
    def tags(self, request: Request, pk: str | None = None) -> Response:
        """Replace the tags given to a publication (and its object); its date tags stay."""
        event = self.get_object()
        if not isinstance(request.data, dict) or "tags" not in request.data:
            raise ApiError("invalid", "the JSON body must be an object {tags: [...]}")
        event = set_tags(event, request.data["tags"], publisher_of(request))
        return Response(PublicationSerializer(event).data)

    def _record(self, request: Request) -> Response:
        if not isinstance(request.data, dict):
            raise ApiError("invalid", "the JSON body must be an object {dataset, s3_url, ...}")
        given = RecordRequestSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        fields = given.validated_data
        dataset = services.dataset_named(fields["dataset"])
        publisher = publisher_of(request)
        key = request.headers.get("Idempotency-Key") or None
        fingerprint = request_fingerprint({k: fields.get(k) for k in sorted(fields)}, "")
        with idempotent(publisher.user, key, fingerprint) as earlier:
            if earlier is not None:
                return replayed(earlier)
            event = services.record_external(
                dataset,
                s3_url=fields["s3_url"],
                publisher=publisher,
                size=fields.get("size"),
                md5=fields.get("md5"),
                sha256=(fields.get("sha256") or "").lower(),
                idempotency_key=key,
                fingerprint=fingerprint,
                tags=parse_tags(fields.get("tags")),
            )
            return answered(event)


class DatasetViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, ApiViewSet):
    """Datasets (state roots); operators create them."""

    roles = {
        "list": READERS,
        "retrieve": READERS,
        "create": OPERATORS,
        "update_all": OPERATORS,
        "head_of_dataset": READERS | AGENTS,
    }
    serializer_class = DatasetSerializer
    queryset = Dataset.objects.order_by("name")
    lookup_field = "name"
    lookup_value_regex = "[^/]+"

    def get_queryset(self) -> QuerySet[Dataset]:
        """A publisher token limited to datasets sees those only."""
        scope = readable_dataset_ids(self.request)
        rows = super().get_queryset()
        return rows.filter(pk__in=scope) if scope is not None else rows

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

    def check_throttles(self, request: Request) -> None:
        # head/ takes the caller's share in the statement that finds the dataset (see head_of_dataset).
        if self.action != "head_of_dataset":
            super().check_throttles(request)

    @extend_schema(
        responses={
            200: OpenApiResponse(description="{dataset, update: {key, time, effective_ns}|null, image: ...}"),
            304: OpenApiResponse(description="the head has not moved since the ETag in If-None-Match"),
            429: OpenApiResponse(description="the control plane is loaded: come back after Retry-After"),
        },
        parameters=[OpenApiParameter("If-None-Match", str, OpenApiParameter.HEADER)],
    )
    @action(detail=True, methods=["get"], url_path="head", url_name="head")
    def head_of_dataset(self, request: Request, name: str | None = None) -> Response:
        """The newest published update and image (key, time), with an ETag; 304 when it has not moved."""
        if not head.GATE.enter():
            retry = settings.DMSUPDATE.get("HEAD_RETRY_AFTER_SECONDS", 30)
            raise ApiError(
                "loaded", "the control plane is busy; poll again later", 429, {"Retry-After": str(retry)}
            )
        try:
            token = token_of(request)
            server_id = token.server_id if token is not None and token.role == Role.AGENT else None
            (throttle,) = self.get_throttles()
            taken, found = head.find_dataset(
                str(name), readable_dataset_ids(request), server_id, throttle.spending(request, self)
            )
            if not taken:
                throttle.refused(request, self)
                self.throttled(request, throttle.wait())
            if found is None:
                raise ApiError("not_found", f"no dataset named {name!r} that this token may read", 404)
            etag = head.etag_of(*found)
            headers = {"ETag": etag, "Cache-Control": "no-cache"}
            if etag in [t.strip() for t in request.headers.get("If-None-Match", "").split(",")]:
                return Response(status=status.HTTP_304_NOT_MODIFIED, headers=headers)
            dataset = Dataset.objects.get(pk=found[0])
            return Response(head.head_of(dataset), headers=headers)
        finally:
            head.GATE.leave()


TAG_FILTERS = ("tags_any", "tags_all", "tags_exclude")
# With a tag filter the count is exact up to this many objects (else up to COUNT_LIMIT).
TAGGED_COUNT_LIMIT = 1_000


class RegistryPagination(BoundedCountPagination):
    """Tag-filtered pages: a smaller count bound, and few matches sorted rather than walked.

    Counting tens of thousands of objects carrying two common tags means visiting
    each of their rows (GIN answers are rechecked on the heap): with a tag filter
    `count` is exact up to 1,000 (then null, `count_more_than` 1,000). PostgreSQL
    assumes tags independent of each other and of the key: for a rare combination
    it would walk the (dataset, key) index through every row looking for 51
    matches; when the count found few, ordering by `dataset_id + 0` (the same order)
    makes it read the matches from the GIN index and sort them instead.
    """

    def paginate_queryset(self, queryset, request, view=None):
        tagged = any(request.query_params.get(name) for name in TAG_FILTERS)
        self.count_limit = TAGGED_COUNT_LIMIT if tagged else BoundedCountPagination.count_limit
        return super().paginate_queryset(queryset, request, view)

    def few_rows(self, queryset, request):
        if not any(request.query_params.get(name) for name in ("tags_any", "tags_all")):
            return queryset
        same_dataset = ExpressionWrapper(F("dataset_id") + 0, output_field=BigIntegerField())
        return queryset.order_by(same_dataset, "key")


class StateObjectViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ApiViewSet):
    """The registry of keys under every dataset's root."""

    roles = {"list": READERS, "retrieve": READERS}
    serializer_class = StateObjectSerializer
    filterset_class = StateObjectFilter
    pagination_class = RegistryPagination
    # Ordered as the (dataset, key) unique index holds the rows, so a page is a walk of that
    # index that stops after the page, not a sort of every matching row (millions at scale).
    queryset = StateObject.objects.select_related("dataset").order_by("dataset_id", "key")

    def list(self, request: Request, *args, **kwargs) -> Response:
        # Ranges of times, tags and states over millions of rows: a generic plan can cost 100x.
        with planned_for_values():
            return super().list(request, *args, **kwargs)

    def get_queryset(self) -> QuerySet[StateObject]:
        """A publisher token limited to datasets reads their objects only."""
        scope = readable_dataset_ids(self.request)
        rows = super().get_queryset()
        return rows.filter(dataset_id__in=scope) if scope is not None else rows
