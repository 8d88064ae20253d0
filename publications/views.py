"""Dashboard pages of the registry: publications (who published what) and the objects under each state root."""

from __future__ import annotations

from collections import defaultdict
from functools import cache

from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect

from accounts.access import operator_action, page, viewer_required
from audit.services import actor_name
from dmsupdate.errors import Invalid
from dmsupdate.web import day_range, int_param, keyset_page, text_param
from jobs.models import Job, JobKind, JobStatus
from jobs.services import start_job
from publications.models import Dataset, ObjectKind, ObjectState, PublicationEvent, StateObject
from publications.replicas import applied_on, replicas_of
from publications.tags import filter_by_tags

TAG_FILTERS = ("tags_any", "tags_all", "tags_exclude")


def tag_filtered(rows, params) -> tuple:
    """Rows filtered by the page's tag fields, the fields' clean values, and a notice when one is wrong."""
    given = {name: text_param(params, name, 2000) for name in TAG_FILTERS}
    try:
        rows = filter_by_tags(rows, given["tags_any"], given["tags_all"], given["tags_exclude"])
    except Invalid as exc:
        return rows, dict.fromkeys(TAG_FILTERS, ""), f"Tag filter ignored: {exc.detail}"
    return rows, given, ""


OPS = ["add", "replace", "drop", "update", "postproc", "image", "dump"]
# Object states worth an admin's attention, highlighted on the objects page.
PROBLEM_STATES = {ObjectState.INVALID, ObjectState.MISSING}


@cache
def keys_sort_by_code_point() -> bool:
    """Whether the database orders text by code point (C collations), so a key prefix is a key range."""
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cur:
        cur.execute("SELECT datcollate FROM pg_database WHERE datname = current_database()")
        (collation,) = cur.fetchone()
    return collation in {"C", "POSIX", "C.UTF-8", "C.utf8"}


@viewer_required
def publications_page(request: HttpRequest) -> HttpResponse:
    """Publications, newest first, filtered by dataset, label, op and date, each with "applied on k of N"."""
    params = request.GET
    rows = PublicationEvent.objects.select_related("dataset", "user")
    dataset = text_param(params, "dataset", 64)
    label = text_param(params, "label", 64)
    op = params.get("op", "") if params.get("op", "") in OPS else ""
    if dataset:
        rows = rows.filter(dataset__name=dataset)
    if label:
        rows = rows.filter(source=label)
    if op:
        rows = rows.filter(op=op)
    lookups, days = day_range(params, "created_at")
    rows = rows.filter(**lookups)
    rows, tags, notice = tag_filtered(rows, params)
    publications, next_query = keyset_page(rows, params)
    counts = applied_on(publications)
    for p in publications:
        p.applied_on, p.server_count = counts[p.pk].applied, counts[p.pk].total
    return page(
        request,
        "publications/publications.html",
        {
            "publications": publications,
            "next_query": next_query,
            "datasets": Dataset.objects.order_by("name").values_list("name", flat=True),
            "ops": OPS,
            "filters": {"dataset": dataset, "label": label, "op": op, **days, **tags},
            "notice": notice,
            "filtered": bool(dataset or label or op or lookups or any(tags.values()) or params.get("before")),
        },
    )


@viewer_required
def objects_page(request: HttpRequest) -> HttpResponse:
    """The registry of objects under the state roots, filtered by state; late, invalid and missing stand out."""
    params = request.GET
    rows = StateObject.objects.select_related("dataset")
    dataset = text_param(params, "dataset", 64)
    state = params.get("state", "")
    kind = params.get("kind", "") if params.get("kind", "") in ObjectKind.values else ""
    label = text_param(params, "label", 128)
    prefix = text_param(params, "prefix", 1024)
    if dataset:
        rows = rows.filter(dataset__name=dataset)
    datasets = Dataset.objects.filter(name=dataset) if dataset else Dataset.objects.all()
    # Keys some server reported as late (older than its window, never applied): per dataset.
    late: dict[int, set[str]] = defaultdict(set)
    for dataset_id, replicas in replicas_of(datasets.values_list("pk", flat=True)).items():
        for replica in replicas:
            late[dataset_id].update(replica.late_keys)
    if state == "late":
        all_late = set().union(*late.values()) if late else set()
        rows = rows.filter(key__in=sorted(all_late)[:1000])
    elif state == "problems":
        rows = rows.filter(state__in=sorted(PROBLEM_STATES))
    elif state in ObjectState.values:
        rows = rows.filter(state=state)
    else:
        state = ""
    if kind:
        rows = rows.filter(kind=kind)
    if label:
        rows = rows.filter(label=label)
    rows, tags, notice = tag_filtered(rows, params)
    if prefix and not dataset:
        names = list(Dataset.objects.values_list("name", flat=True)[:2])
        if len(names) == 1:
            dataset = names[0]
        else:
            notice = notice or "Choose a dataset to search keys by prefix: keys are unique within a dataset."
            prefix = ""
    if prefix:
        # Within one dataset, listed by key: the (dataset, key) unique index serves
        # both the prefix range and the order, however large the registry.
        dataset_id = Dataset.objects.filter(name=dataset).values_list("pk", flat=True).first() or 0
        rows = rows.filter(dataset_id=dataset_id, key__startswith=prefix)
        if keys_sort_by_code_point() and ord(prefix[-1]) < 0x10FFFF:
            # LIKE cannot use the index under a C.UTF-8 database: say the same as a range.
            rows = rows.filter(key__gte=prefix, key__lt=prefix[:-1] + chr(ord(prefix[-1]) + 1))
    objects, next_query = keyset_page(rows, params, field="key" if prefix else "id")
    for obj in objects:
        obj.is_late = obj.key in late.get(obj.dataset_id, ())
        obj.is_problem = obj.is_late or obj.state in PROBLEM_STATES
    return page(
        request,
        "publications/objects.html",
        {
            "objects": objects,
            "next_query": next_query,
            "datasets": Dataset.objects.order_by("name").values_list("name", flat=True),
            "states": [*ObjectState.values, "problems", "late"],
            "kinds": ObjectKind.values,
            "filters": {
                "dataset": dataset,
                "state": state,
                "kind": kind,
                "label": label,
                "prefix": prefix,
                **tags,
            },
            "notice": notice,
            "filtered": bool(
                dataset or state or kind or label or prefix or any(tags.values()) or params.get("before")
            ),
        },
    )


@operator_action
def gc_start(request: HttpRequest) -> HttpResponse:
    """GC in two steps: without a dry-run job, start a dry run; with a succeeded one and confirmation, delete."""
    dataset = get_object_or_404(Dataset, pk=int_param(request.POST.get("dataset")) or 0)
    dry_run_id = request.POST.get("dry_run_job")
    if not dry_run_id:
        job = start_job(
            JobKind.GC,
            dataset=dataset,
            params={"dry_run": True},
            user=request.user,
            actor=actor_name(request.user),
        )
        return redirect("job", pk=job.pk)
    dry_run = Job.objects.filter(pk=int_param(dry_run_id) or 0).first()
    problem = ""
    if dry_run is None or not dry_run.is_gc_dry_run or dry_run.dataset_id != dataset.pk:
        problem = "the confirmation does not refer to a GC dry run of this dataset"
    elif dry_run.status != JobStatus.SUCCEEDED:
        problem = "the dry run has not succeeded; run a new one first"
    elif request.POST.get("confirm") != "yes":
        problem = "tick the confirmation to delete the objects listed by the dry run"
    if problem:
        context = {
            "job": dry_run,
            "offer_gc": dry_run is not None and dry_run.is_gc_dry_run,
            "error": problem,
        }
        if dry_run is None:
            return page(request, "jobs/gc_refused.html", {"error": problem, "dataset": dataset}, status=400)
        return page(request, "jobs/job.html", context, status=400)
    job = start_job(
        JobKind.GC,
        dataset=dataset,
        params={"dry_run": False, "dry_run_job": dry_run.pk},
        user=request.user,
        actor=actor_name(request.user),
    )
    return redirect("job", pk=job.pk)


@operator_action
def build_image_start(request: HttpRequest) -> HttpResponse:
    """Build a new image of a dataset from its newest image and the updates after it."""
    dataset = get_object_or_404(Dataset, pk=int_param(request.POST.get("dataset")) or 0)
    job = start_job(JobKind.BUILD_IMAGE, dataset=dataset, user=request.user, actor=actor_name(request.user))
    return redirect("job", pk=job.pk)
