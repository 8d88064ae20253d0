"""Dashboard actions on servers: update now, rebuild, update all of a dataset, and actions on several servers.

Each action says what will happen before it acts when it is destructive or covers
several servers (a confirmation page naming the servers, and for a rebuild the
image and the updates that follow it), and shows the job it started, live.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.utils import timezone

from accounts.access import operator_action, operator_required, page
from audit.services import actor_name, record
from dmsupdate.errors import DomainError
from jobs.models import Job, JobKind
from jobs.services import start_job
from publications.models import Dataset, ObjectKind, ObjectState, StateObject
from servers.models import RunTrigger, Server
from servers.services import request_run

# Updates counted after the image on a rebuild confirmation; beyond this it reads "10,000+".
COUNT_CAP = 10_000
BULK_ACTIONS = {
    "update": "Update",
    "rebuild": "Rebuild",
    "enable": "Enable",
    "disable": "Disable",
}


@dataclass(frozen=True)
class RebuildSource:
    """What a rebuild of a dataset's servers would install, and how much it replays after."""

    image: StateObject | None
    updates_after: int

    @property
    def updates_text(self) -> str:
        n = self.updates_after
        return f"{COUNT_CAP:,}+" if n > COUNT_CAP else f"{n:,}"


def rebuild_source(dataset: Dataset) -> RebuildSource:
    """The newest published image or dump of the dataset, and the published updates later than it."""
    image = (
        StateObject.objects.filter(dataset=dataset, kind=ObjectKind.IMAGE, state=ObjectState.PUBLISHED)
        .exclude(effective_ns=None)
        .order_by("-effective_ns", "-key")
        .first()
    )
    updates = StateObject.objects.filter(dataset=dataset, kind=ObjectKind.UPDATE, state=ObjectState.PUBLISHED)
    if image is not None:
        updates = updates.filter(effective_ns__gt=image.effective_ns)
    return RebuildSource(image, updates[: COUNT_CAP + 1].count())


def _show_job(request: HttpRequest, job: Job) -> HttpResponse:
    """The started job: its live panel for an htmx request, else its page."""
    if request.headers.get("HX-Request"):
        return page(request, "jobs/_job.html", {"job": job, "watch": True, "compact": True})
    return redirect("job", pk=job.pk)


def _run(request: HttpRequest, server: Server, kind: str) -> HttpResponse:
    """Start the job (servers.services.request_run) and show it; a refusal is shown as the page's error."""
    try:
        job = request_run(server, kind, request.user, actor_name(request.user), RunTrigger.MANUAL)
    except DomainError as exc:
        return HttpResponse(exc.detail, status=409, content_type="text/plain; charset=utf-8")
    if request.headers.get("HX-Request"):
        return page(request, "jobs/_job.html", {"job": job, "watch": True, "compact": True})
    return redirect("server", name=server.name)


@operator_action
def server_update(request: HttpRequest, name: str) -> HttpResponse:
    """Update now: start an update job on the server's agent."""
    server = get_object_or_404(Server.objects.select_related("dataset"), name=name)
    return _run(request, server, JobKind.UPDATE)


def _confirm(request: HttpRequest, action: str, servers: list[Server], error: str = "", status: int = 200):
    datasets = {s.dataset_id: s.dataset for s in servers}
    return page(
        request,
        "servers/confirm.html",
        {
            "action": action,
            "label": BULK_ACTIONS[action],
            "servers": servers,
            "disabled": [s for s in servers if not s.enabled],
            "sources": [(d, rebuild_source(d)) for d in datasets.values()] if action == "rebuild" else [],
            "error": error,
        },
        status=status,
    )


@operator_required
def server_rebuild(request: HttpRequest, name: str) -> HttpResponse:
    """Rebuild: GET shows what will happen (the image, the updates after it) and asks to confirm; POST starts it."""
    server = get_object_or_404(Server.objects.select_related("dataset"), name=name)
    if request.method != "POST":
        return _confirm(request, "rebuild", [server])
    if request.POST.get("confirm") != "yes":
        return _confirm(request, "rebuild", [server], "tick the confirmation to rebuild", status=400)
    return _run(request, server, JobKind.REBUILD)


@operator_action
def dataset_update_all(request: HttpRequest, name: str) -> HttpResponse:
    """Update all: ask every enabled server of the dataset to catch up, and show the job."""
    dataset = get_object_or_404(Dataset, name=name)
    job = start_job(
        JobKind.UPDATE_ALL,
        dataset=dataset,
        params={"trigger": RunTrigger.MANUAL},
        user=request.user,
        actor=actor_name(request.user),
    )
    return _show_job(request, job)


@operator_action
def servers_action(request: HttpRequest) -> HttpResponse:
    """Several servers at once: a first POST asks to confirm (saying what will happen); the confirmed one acts.

    Update and rebuild start one job over the chosen enabled servers and show it;
    enable and disable take effect at once and are audited.
    """
    action = request.POST.get("action", "")
    names = sorted({n for n in request.POST.getlist("servers") if n})
    if action not in BULK_ACTIONS or not names:
        messages.error(request, "Choose servers with the boxes in the fleet table, then an action.")
        return redirect("fleet")
    servers = list(Server.objects.filter(name__in=names[:1000]).select_related("dataset").order_by("name"))
    if not servers:
        messages.error(request, "None of the chosen servers exists any more.")
        return redirect("fleet")
    if request.POST.get("confirm") != "yes":
        return _confirm(request, action, servers, status=200 if "confirm" not in request.POST else 400)
    actor = actor_name(request.user)
    if action in ("enable", "disable"):
        changed = Server.set_enabled([s.pk for s in servers], action == "enable")
        record(actor, f"server.{action}d", ", ".join(changed)[:1000], {"servers": changed})
        messages.success(
            request,
            f"{BULK_ACTIONS[action]}d {', '.join(changed)}."
            if changed
            else f"Nothing to {action}: no change.",
        )
        return redirect("fleet")
    enabled = [s for s in servers if s.enabled]
    if not enabled:
        return _confirm(request, action, servers, "every chosen server is disabled; enable it first", 409)
    kind = JobKind.REBUILD if action == "rebuild" else JobKind.UPDATE
    if len(enabled) == 1:
        job = request_run(enabled[0], kind, request.user, actor, RunTrigger.MANUAL)
    else:
        datasets = {s.dataset_id for s in enabled}
        if kind == JobKind.REBUILD:
            # As for one server (servers.services.request_run): `rebuilding` from this moment.
            Server.request_rebuild([s.pk for s in enabled], timezone.now())
        job = start_job(
            kind,
            dataset=enabled[0].dataset if len(datasets) == 1 else None,
            params={
                "trigger": RunTrigger.MANUAL,
                "servers": [s.pk for s in enabled],
                "names": [s.name for s in enabled],
            },
            user=request.user,
            actor=actor,
        )
    return redirect("job", pk=job.pk)
