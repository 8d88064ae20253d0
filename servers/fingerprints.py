"""Replica agreement (DESIGN §6): servers of a dataset compared by their fingerprints at equal effective times.

Every report carrying a fingerprint stores it as the server's newest and compares
the enabled servers whose newest fingerprints describe the same effective time.
When `build_image` recorded the image's fingerprint for that time, the image is
the reference; otherwise the largest group of servers that agree, if it is larger
than every other group. A server that disagrees with the reference is `diverged`
and keeps the differing graphs (its counts and hashes beside the reference's)
until a later comparison finds it in agreement, or it reports a rebuild. With no
strict majority and no image, every server compared is diverged: nobody can tell
which holds the right data. A server alone at its time keeps its last verdict.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import connection
from django.utils import timezone

from dmsupdate.state.fingerprint import differing_graphs
from dmsupdate.state.keys import EffectiveTime
from dmsupdate.state.status import AgentStatus, InvalidStatus, parse_effective
from publications.models import ObjectKind, ObjectState, StateObject
from servers.models import Agreement, Server

_AGREEMENT_LOCK = 0x646D7366  # advisory lock class: one comparison per dataset at a time
# Graphs kept in a server's divergence (the page and the API show them; the count says if more differ).
GRAPHS_KEPT = 200


def note_fingerprint(server: Server, status: AgentStatus) -> None:
    """Set a report's fingerprint as the server's newest (a rebuild also clears its divergence); not saved.

    Called by record_reports before it saves the server; `compare_after_reports` follows the save.
    """
    if status.rebuilt:
        server.diverged_ns = None
        server.divergence = {}
    fingerprint = status.fingerprint
    if fingerprint is None:
        return
    try:
        effective = parse_effective(fingerprint.get("effectiveDate"))
    except InvalidStatus:
        return
    if effective is not None:
        server.fingerprint = fingerprint
        server.fingerprint_ns = effective.nanos


def compare_after_reports(reports: Iterable[tuple[Server, AgentStatus]]) -> None:
    """Compare the servers at each reported fingerprint's time, once per dataset and time.

    Called by record_reports in its transaction, after the servers' rows are saved.
    """
    times = {
        (server.dataset_id, server.fingerprint_ns)
        for server, status in reports
        if status.fingerprint is not None and server.fingerprint_ns is not None and server.enabled
    }
    for dataset_id, effective_ns in sorted(times):
        compare_at(dataset_id, effective_ns)


def image_fingerprint(dataset_id: int, effective_ns: int) -> dict[str, Any] | None:
    """The fingerprint build_image recorded for an image of this dataset at this time, if any."""
    return (
        StateObject.objects.filter(
            dataset_id=dataset_id,
            kind=ObjectKind.IMAGE,
            effective_ns=effective_ns,
            state=ObjectState.PUBLISHED,
            fingerprint__isnull=False,
        )
        .values_list("fingerprint", flat=True)
        .first()
    )


def _groups(fingerprints: dict[int, dict]) -> list[list[int]]:
    """Servers grouped by agreement, largest group first (each joins the first group it agrees with)."""
    groups: list[list[int]] = []
    for pk, fingerprint in fingerprints.items():
        for group in groups:
            if not differing_graphs(fingerprint, fingerprints[group[0]]):
                group.append(pk)
                break
        else:
            groups.append([pk])
    return sorted(groups, key=len, reverse=True)


def _reference(fingerprints: dict[int, dict], group: list[int]) -> dict:
    """The group's best witness: a full fingerprint when one has hashes."""
    full = [pk for pk in group if fingerprints[pk].get("mode") == "full"]
    return fingerprints[(full or group)[0]]


def compare_at(dataset_id: int, effective_ns: int) -> Agreement | None:
    """Compare the servers of a dataset at one effective time; mark each agreeing or diverged."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_AGREEMENT_LOCK, dataset_id])
    rows = Server.objects.filter(dataset_id=dataset_id, enabled=True, fingerprint_ns=effective_ns)
    fingerprints = {pk: fp for pk, fp in rows.values_list("pk", "fingerprint") if isinstance(fp, dict)}
    image = image_fingerprint(dataset_id, effective_ns)
    if len(fingerprints) < 2 and image is None:
        return None
    if image is not None:
        reference, source = image, "image"
        agreeing = [pk for pk, fp in fingerprints.items() if not differing_graphs(fp, image)]
    else:
        groups = _groups(fingerprints)
        strict = len(groups) == 1 or len(groups[0]) > len(groups[1])
        reference, source = _reference(fingerprints, groups[0]), "majority"
        agreeing = groups[0] if strict else []
    now = timezone.now()
    Server.objects.filter(pk__in=agreeing).update(diverged_ns=None, divergence={})
    for pk, fingerprint in fingerprints.items():
        if pk in agreeing:
            continue
        differences = differing_graphs(fingerprint, reference)
        Server.objects.filter(pk=pk).update(
            diverged_ns=effective_ns,
            divergence={
                "effective": EffectiveTime(effective_ns).path,
                "reference": source,
                "agreeing": len(agreeing),
                "compared": len(fingerprints),
                "graphs": [d.as_json() for d in differences[:GRAPHS_KEPT]],
                "graphs_differing": len(differences),
                "checked_at": now.isoformat(),
            },
        )
    current = Agreement.objects.filter(dataset_id=dataset_id).first()
    if current is not None and current.effective_ns > effective_ns:
        return current
    agreement, _ = Agreement.objects.update_or_create(
        dataset_id=dataset_id,
        defaults={
            "effective_ns": effective_ns,
            "agreeing": len(agreeing),
            "compared": len(fingerprints),
            "with_image": image is not None,
            "checked_at": now,
        },
    )
    return agreement
