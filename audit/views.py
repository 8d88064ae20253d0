"""Dashboard page of the audit log (operators only, as in the API)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse

from accounts.access import operator_required, page
from audit.models import AuditEvent
from dmsupdate.web import day_range, keyset_page, text_param


@operator_required
def audit_page(request: HttpRequest) -> HttpResponse:
    """The audit log, newest first, filtered by actor, action (prefix), target and date."""
    params = request.GET
    rows = AuditEvent.objects.all()
    actor = text_param(params, "actor", 200)
    action = text_param(params, "action", 64)
    target = text_param(params, "target", 1024)
    if actor:
        rows = rows.filter(actor=actor)
    if action:
        # "job." matches every job event; "login.failed" exactly that action.
        rows = rows.filter(action__startswith=action)
    if target:
        rows = rows.filter(target=target)
    lookups, days = day_range(params, "at")
    rows = rows.filter(**lookups)
    events, next_query = keyset_page(rows, params)
    return page(
        request,
        "audit/audit.html",
        {
            "events": events,
            "next_query": next_query,
            "filters": {"actor": actor, "action": action, "target": target, **days},
            "filtered": bool(actor or action or target or lookups or params.get("before")),
        },
    )
