"""Dashboard pages of the registry: publications (who published what) and the objects under each state root."""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from functools import cache

from django.db import connection
from django.http import HttpRequest, HttpResponse

from dmsupdate.web import day_range, keyset_page, page, text_param, viewer_required
from publications.models import Dataset, ObjectKind, ObjectState, PublicationEvent, StateObject
from servers.models import Server

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


def applied_counts(publications: list[PublicationEvent]) -> dict[int, tuple[int, int]]:
    """For each publication, (k, N): servers of its dataset whose effective time has reached it, of N enabled.

    One query for the servers of all datasets on the page, then a binary search per row.
    """
    dataset_ids = {p.dataset_id for p in publications}
    reached: dict[int, list[int]] = defaultdict(list)
    totals: dict[int, int] = defaultdict(int)
    rows = Server.objects.filter(dataset_id__in=dataset_ids, enabled=True).values_list(
        "dataset_id", "effective_ns"
    )
    for dataset_id, effective_ns in rows:
        totals[dataset_id] += 1
        if effective_ns is not None:
            reached[dataset_id].append(effective_ns)
    for values in reached.values():
        values.sort()
    counts = {}
    for p in publications:
        values = reached[p.dataset_id]
        counts[p.pk] = (len(values) - bisect_left(values, p.effective_ns), totals[p.dataset_id])
    return counts


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
    publications, next_query = keyset_page(rows, params)
    counts = applied_counts(publications)
    for p in publications:
        p.applied_on, p.server_count = counts[p.pk]
    return page(
        request,
        "publications/publications.html",
        {
            "publications": publications,
            "next_query": next_query,
            "datasets": Dataset.objects.order_by("name").values_list("name", flat=True),
            "ops": OPS,
            "filters": {"dataset": dataset, "label": label, "op": op, **days},
            "filtered": bool(dataset or label or op or lookups or params.get("before")),
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
    late_servers = Server.objects.exclude(late_keys=[])
    if dataset:
        late_servers = late_servers.filter(dataset__name=dataset)
    # Keys some server reported as late (older than its window, never applied): per dataset.
    late: dict[int, set[str]] = defaultdict(set)
    for dataset_id, keys in late_servers.values_list("dataset_id", "late_keys"):
        late[dataset_id].update(k for k in keys if isinstance(k, str))
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
    notice = ""
    if prefix and not dataset:
        names = list(Dataset.objects.values_list("name", flat=True)[:2])
        if len(names) == 1:
            dataset = names[0]
        else:
            notice = "Choose a dataset to search keys by prefix: keys are unique within a dataset."
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
            "filters": {"dataset": dataset, "state": state, "kind": kind, "label": label, "prefix": prefix},
            "notice": notice,
            "filtered": bool(dataset or state or kind or label or prefix or params.get("before")),
        },
    )
