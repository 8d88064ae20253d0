"""Garbage collection of a dataset's state root, following its GC policy.

One function, `plan_gc`, decides everything; the dry run shows its plan and the
real run applies that same plan, so what a dry run lists is what a run deletes.

Lifecycle: updates at or before the oldest kept image, and images beyond the
kept count, go `published` → `expired` (a state change only: servers stop
counting them); after the grace period they are deleted from the store in
DeleteObjects batches and marked `deleted`. `unpublished` objects (failed
publications) older than the grace period are deleted directly. Never touched:
the newest image, extras (`.opt`, `config.ttl`), anything under `backups/`, and,
unless forced, any update an enabled server has not applied yet.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from audit.services import record
from dmsupdate.state.keys import BACKUPS_PREFIX as BACKUP_PREFIX
from dmsupdate.state.keys import EffectiveTime
from dmsupdate.state.stores import DELETE_BATCH, StoreError
from publications.models import Dataset, ObjectKind, ObjectState, StateObject
from publications.replicas import Replica, replicas_of

# How many keys a job result lists per category (the command prints them all).
RESULT_KEYS_LIMIT = 10_000


@dataclass(frozen=True)
class Planned:
    """One object the plan acts on, and why."""

    id: int
    key: str
    reason: str


@dataclass
class GcPlan:
    """What a GC run of one dataset will do; computed by `plan_gc`, applied by `apply_gc`."""

    dataset: Dataset
    now: datetime
    force: bool
    kept_images: list[str] = field(default_factory=list)
    expire: list[Planned] = field(default_factory=list)
    delete: list[Planned] = field(default_factory=list)
    # Without force: servers whose lag keeps updates alive, with how many they keep.
    held_for: dict[str, int] = field(default_factory=dict)
    # With force: servers that will miss updates and must be rebuilt from the newest image.
    rebuild_servers: list[str] = field(default_factory=list)

    @property
    def delete_keys(self) -> list[str]:
        return [p.key for p in self.delete]

    def as_dict(self, limit: int | None = RESULT_KEYS_LIMIT) -> dict[str, Any]:
        """The plan as JSON for the job result and the command (`limit` caps the key lists)."""
        expire = [p.key for p in self.expire]
        delete = self.delete_keys
        return {
            "force": self.force,
            "kept_images": self.kept_images,
            "expire_count": len(expire),
            "delete_count": len(delete),
            "expire": expire[:limit] if limit else expire,
            "delete": delete[:limit] if limit else delete,
            "held_for": self.held_for,
            "rebuild_servers": self.rebuild_servers,
        }


def _server_needs(servers: list[Replica]) -> tuple[bool, int | None]:
    """(does a never-reported enabled server exist, the lowest reported effective time)."""
    never = any(s.effective_ns is None for s in servers)
    reported = [s.effective_ns for s in servers if s.effective_ns is not None]
    return never, (min(reported) if reported else None)


def _held_per_server(candidates, servers: list[Replica]) -> dict[str, int]:
    """How many of `candidates` each server has not applied (servers with none left out).

    Counted by the database in one grouped scan (each candidate bucketed by how many
    of the servers' effective times it is later than), not row by row in Python: a
    dataset of a million updates and a thousand servers is planned in about a second
    (bench_fleet_scale). A server that never reported has applied none of them.
    """
    if not servers:
        return {}
    reported = sorted({s.effective_ns for s in servers if s.effective_ns is not None})
    later: list[int] = [0] * (len(reported) + 1)  # later[i]: candidates later than reported[i - 1]
    effs = candidates.order_by().values_list("effective_ns", flat=True)
    if connection.vendor == "postgresql" and reported:
        query, params = effs.query.sql_with_params()
        with connection.cursor() as cur:
            cur.execute(
                f"SELECT width_bucket(c.effective_ns, %s::bigint[]), count(*) FROM ({query}) c GROUP BY 1",
                [[t + 1 for t in reported], *params],
            )
            for bucket, n in cur.fetchall():
                later[bucket] += n
    else:
        for eff in effs.iterator(chunk_size=5000):
            later[bisect_left(reported, eff)] += 1
    # Suffix sums: after[i] = candidates later than reported[i]; total = every candidate.
    after = [0] * (len(reported) + 1)
    for i in range(len(reported) - 1, -1, -1):
        after[i] = after[i + 1] + later[i + 1]
    total = after[0] + later[0] if reported else later[0]
    position = {t: i for i, t in enumerate(reported)}
    held = {s.name: total if s.effective_ns is None else after[position[s.effective_ns]] for s in servers}
    return {name: n for name, n in held.items() if n}


def _needed(effective_ns: int, never: bool, lowest: int | None) -> bool:
    """An update is still needed when some enabled server has not applied it (or never reported)."""
    return never or (lowest is not None and effective_ns > lowest)


def plan_gc(dataset: Dataset, now: datetime | None = None, force: bool = False) -> GcPlan:
    """Decide what GC expires and deletes in `dataset` now (no side effects)."""
    now = now or timezone.now()
    plan = GcPlan(dataset=dataset, now=now, force=force)
    objects = StateObject.objects.filter(dataset=dataset).exclude(key__startswith=BACKUP_PREFIX)
    min_age = now - timedelta(hours=dataset.gc_min_age_hours)
    grace = now - timedelta(hours=dataset.gc_grace_hours)
    servers = [r for r in replicas_of([dataset.pk])[dataset.pk] if r.enabled]
    never, lowest = _server_needs(servers)

    # Images: grouped by effective time, so an image and its dump from one build count once.
    images = objects.filter(kind=ObjectKind.IMAGE, state=ObjectState.PUBLISHED, effective_ns__isnull=False)
    generations = sorted(set(images.values_list("effective_ns", flat=True)), reverse=True)
    kept = generations[: max(1, dataset.gc_keep_images)]
    plan.kept_images = list(
        images.filter(effective_ns__in=kept).order_by("-effective_ns", "key").values_list("key", flat=True)
    )
    old_enough = Q(effective_at__lte=min_age, first_seen__lte=min_age)
    for pk, key in (
        images.exclude(effective_ns__in=kept).filter(old_enough).order_by("key").values_list("id", "key")
    ):
        plan.expire.append(Planned(pk, key, f"beyond the {len(kept)} newest images"))

    # Updates at or before the oldest kept image are covered by every kept image.
    if kept:
        oldest_kept = kept[-1]
        candidates = objects.filter(
            kind=ObjectKind.UPDATE, state=ObjectState.PUBLISHED, effective_ns__lte=oldest_kept
        ).filter(old_enough)
        reason = f"covered by image {EffectiveTime(oldest_kept).path}"
        # A candidate is needed while an enabled server has not applied it (all are, while
        # one never reported): without force it stays, and counts for each server behind it.
        held = _held_per_server(candidates, servers)
        if force:
            plan.rebuild_servers = sorted(held)
            expiring = candidates
        else:
            plan.held_for = held
            if never:
                expiring = candidates.none()
            elif lowest is None:  # no enabled server: nothing holds an update back
                expiring = candidates
            else:
                expiring = candidates.filter(effective_ns__lte=lowest)
        for pk, key in (
            expiring.order_by("effective_ns", "key").values_list("id", "key").iterator(chunk_size=5000)
        ):
            plan.expire.append(Planned(pk, key, reason))

    # Deletions: expired past the grace period (still-needed updates only when forced),
    # objects expiring in this very run when the grace period is zero, and old unpublished objects.
    expired = objects.filter(state=ObjectState.EXPIRED, state_changed_at__lte=grace).exclude(
        kind=ObjectKind.EXTRA
    )
    for pk, key, kind, eff in expired.order_by("key").values_list("id", "key", "kind", "effective_ns"):
        if kind == ObjectKind.UPDATE and eff is not None and _needed(eff, never, lowest) and not force:
            continue
        plan.delete.append(Planned(pk, key, "expired longer than the grace period"))
    if now <= grace:
        plan.delete += [Planned(p.id, p.key, p.reason + ", no grace period") for p in plan.expire]
    unpublished = (
        objects.filter(state=ObjectState.UNPUBLISHED)
        .exclude(kind=ObjectKind.EXTRA)
        .annotate(since=Coalesce("state_changed_at", "first_seen"))
        .filter(since__lte=grace)
    )
    for pk, key in unpublished.order_by("key").values_list("id", "key"):
        plan.delete.append(Planned(pk, key, "unpublished longer than the grace period"))
    plan.delete.sort(key=lambda p: p.key)
    return plan


def _chunks(items: list[Planned], size: int) -> Iterable[list[Planned]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass
class GcOutcome:
    """What a run did: the keys it expired and deleted, and those the store refused."""

    expired: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    error: str = ""


def apply_gc(plan: GcPlan, on_batch=None) -> GcOutcome:
    """Carry out a plan: expire (state only), then delete in batches of 1,000 keys per DeleteObjects.

    Each batch is marked `deleted` right after the store confirms it, so a run cut short
    leaves the registry matching the store; keys the store refused stay as they were.
    """
    outcome = GcOutcome()
    now = plan.now
    with transaction.atomic():
        for chunk in _chunks(plan.expire, 5000):
            StateObject.objects.filter(pk__in=[p.id for p in chunk], state=ObjectState.PUBLISHED).update(
                state=ObjectState.EXPIRED, state_changed_at=now
            )
    outcome.expired = [p.key for p in plan.expire]
    store = plan.dataset.open_store() if plan.delete else None
    for i, chunk in enumerate(_chunks(plan.delete, DELETE_BATCH)):
        keys = [p.key for p in chunk]
        try:
            refused = set(store.delete_many(keys))
        except StoreError as exc:
            outcome.error = str(exc)
            outcome.failed += [p.key for p in plan.delete[i * DELETE_BATCH :]]
            break
        done = [p.id for p in chunk if p.key not in refused]
        StateObject.objects.filter(pk__in=done).update(
            state=ObjectState.DELETED, state_changed_at=timezone.now()
        )
        outcome.deleted += [k for k in keys if k not in refused]
        outcome.failed += sorted(refused)
        if on_batch:
            on_batch(len(outcome.deleted) + len(outcome.failed), len(plan.delete))
    return outcome


def collect(
    dataset: Dataset, *, dry_run: bool = False, force: bool = False, actor: str = "system", on_batch=None
) -> dict[str, Any]:
    """Plan and (unless `dry_run`) apply GC on one dataset; audited either way. Returns the job result entry."""
    plan = plan_gc(dataset, force=force)
    entry = plan.as_dict()
    entry["dry_run"] = dry_run
    if dry_run:
        record(actor, "gc.dry_run", dataset.name, _audit_details(entry))
        return entry
    outcome = apply_gc(plan, on_batch=on_batch)
    entry |= {
        "expired_count": len(outcome.expired),
        "deleted_count": len(outcome.deleted),
        "deleted": outcome.deleted[:RESULT_KEYS_LIMIT],
        "failed": outcome.failed[:RESULT_KEYS_LIMIT],
        "error": outcome.error,
    }
    record(
        actor,
        "gc.run" if not force else "gc.forced",
        dataset.name,
        _audit_details(entry) | {"failed": outcome.failed[:100], "error": outcome.error},
    )
    return entry


def _audit_details(entry: dict) -> dict:
    """Counts and the servers concerned; key lists stay in the job result, not the chain."""
    return {
        k: entry[k]
        for k in ("force", "expire_count", "delete_count", "held_for", "rebuild_servers", "kept_images")
        if k in entry
    } | {k: entry[k] for k in ("deleted_count", "expired_count") if k in entry}


def summarize(entries: dict[str, dict]) -> str:
    """`flood: 3 expired, 120 deleted; ...` (or `would expire`/`would delete` for a dry run)."""
    parts = []
    for name, e in entries.items():
        if e.get("dry_run"):
            text = f"{name}: would expire {e['expire_count']}, would delete {e['delete_count']}"
        else:
            text = f"{name}: {e['expired_count']} expired, {e['deleted_count']} deleted"
            if e.get("failed"):
                text += f", {len(e['failed'])} failed"
        if e.get("rebuild_servers"):
            text += f" (rebuild needed: {', '.join(e['rebuild_servers'])})"
        elif e.get("held_for"):
            text += f" (kept for {', '.join(sorted(e['held_for']))})"
        parts.append(text)
    return "; ".join(parts) or "no datasets"
