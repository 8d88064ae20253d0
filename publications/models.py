"""Datasets, the registry of objects under their state roots, and publication events."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models

from dmsupdate.choices import ColouredChoices
from dmsupdate.state.keys import EffectiveTime, StateKey, parse_key
from publications.tags import TagsField, date_tags


class Dataset(models.Model):
    """A state root (S3 or a directory) replayed by a fleet of data servers."""

    name = models.CharField(
        max_length=64,
        unique=True,
        validators=[RegexValidator(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", "letters, digits, . _ - only")],
    )
    s3root = models.CharField("state root", max_length=1024, help_text="s3://bucket/prefix or file:///path")
    s3endpoint = models.CharField("S3 endpoint", max_length=512, blank=True)
    description = models.TextField(blank=True)
    # GC policy (used by the fleet-operations GC job).
    gc_keep_images = models.PositiveIntegerField(default=2, help_text="images kept, newest first")
    gc_min_age_hours = models.PositiveIntegerField(
        default=168, help_text="updates younger than this are kept"
    )
    gc_grace_hours = models.PositiveIntegerField(default=48, help_text="expired/unpublished kept this long")
    # DESIGN §6: SPARQL updates may DROP/CLEAR ALL, NAMED or DEFAULT only where this is set.
    allow_drop_all = models.BooleanField(
        "allow DROP/CLEAR ALL", default=False, help_text="updates may drop or clear ALL, NAMED or DEFAULT"
    )
    # Incremental reconcile cursor (sync_state): the greatest key listed so far.
    sync_cursor = models.CharField(max_length=1024, blank=True)
    last_sync_at = models.DateTimeField(null=True, blank=True)
    last_full_sync_at = models.DateTimeField(null=True, blank=True)
    last_sync_error = models.TextField(blank=True)
    # Serialises effective-time allocation for publications (strictly increasing per dataset).
    last_effective_ns = models.BigIntegerField(default=0)
    # Moves whenever a published update or image is registered: the head's ETag (publications.head).
    head_changed_ns = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def open_store(self):
        """The dataset's object store (`dmsupdate.state.stores.open_store`)."""
        from dmsupdate.state.stores import open_store

        return open_store(self.s3root, self.s3endpoint or None)


class ObjectState(ColouredChoices):
    """An object's life in the registry (DESIGN §6)."""

    UNPUBLISHED = "unpublished", "info", "unpublished"
    PUBLISHED = "published", "good", "published"
    EXPIRED = "expired", "mute", "expired"
    DELETED = "deleted", "mute", "deleted"
    INVALID = "invalid", "bad", "invalid"
    MISSING = "missing", "bad", "missing"


class ObjectFlag(ColouredChoices):
    """Marks shown beside an object's state (not stored)."""

    LATE = "late", "bad", "late"


class ObjectKind(models.TextChoices):
    UPDATE = "update"
    IMAGE = "image"
    EXTRA = "extra"
    OTHER = "other"


class StateObject(models.Model):
    """One key under a dataset's state root, parsed, with its checksums and lifecycle state."""

    # No index of its own: every query by dataset uses one of the indexes below, which start with it.
    dataset = models.ForeignKey(
        Dataset, on_delete=models.CASCADE, related_name="state_objects", db_index=False
    )
    # Compared in byte order, as S3 lists keys (on PostgreSQL, `COLLATE "C"` set by migration 0003):
    # sync_state reconciles each listed page with the registry rows of the same key range.
    key = models.CharField(max_length=1024)
    kind = models.CharField(max_length=16, choices=ObjectKind.choices)
    op = models.CharField(max_length=16, blank=True)
    label = models.CharField(max_length=128, blank=True)
    effective_ns = models.BigIntegerField(null=True, blank=True)
    effective_at = models.DateTimeField(null=True, blank=True)
    arg = models.TextField(blank=True, help_text="graph URI or component name")
    format = models.CharField(max_length=16, blank=True)
    size = models.BigIntegerField(null=True, blank=True)
    etag = models.CharField(max_length=128, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    state = models.CharField(max_length=16, choices=ObjectState.choices, default=ObjectState.PUBLISHED)
    error = models.TextField(blank=True, help_text="why the key is invalid")
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    state_changed_at = models.DateTimeField(null=True, blank=True)
    # An image's fingerprint (DESIGN §5b), recorded by build_image: what servers at its time must hold.
    fingerprint = models.JSONField(null=True, blank=True)
    # Its date tags and its publication's tags (publications.tags); GIN-indexed on PostgreSQL (migration 0009).
    tags = TagsField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["dataset", "key"], name="unique_key_per_dataset")]
        indexes = [
            # The lag query: published updates of a dataset after an effective time.
            models.Index(fields=["dataset", "kind", "state", "effective_ns"], name="object_lag_idx"),
            # Rows in the rarer states (missing, invalid, expired, unpublished: the objects page's
            # filters, GC): most rows are published, and not indexing them keeps inserts cheap.
            models.Index(
                fields=["dataset", "state"],
                name="object_state_idx",
                condition=~models.Q(state=ObjectState.PUBLISHED),
            ),
        ]
        ordering = ["dataset", "key"]

    def __str__(self) -> str:
        return self.key

    @classmethod
    def fields_from_key(cls, parsed: StateKey) -> dict:
        """Model fields derived from a parsed key (used by sync_state and publishing)."""
        eff = parsed.effective
        return {
            "kind": parsed.kind,
            "op": parsed.op or "",
            "label": parsed.label or "",
            "effective_ns": eff.nanos if eff else None,
            "effective_at": eff.to_datetime() if eff else None,
            "arg": parsed.arg or "",
            "format": parsed.format or "",
            "tags": date_tags(eff.nanos if eff else None),
        }

    @classmethod
    def for_key(cls, dataset: Dataset, key: str, state: str, when: datetime, **fields) -> StateObject:
        """An unsaved row of a well-formed key (raises InvalidKey), first seen and in `state` at `when`."""
        return cls(
            dataset=dataset,
            key=key,
            **cls.fields_from_key(parse_key(key)),
            state=state,
            first_seen=when,
            last_seen=when,
            state_changed_at=when,
            **fields,
        )

    @property
    def effective(self) -> EffectiveTime | None:
        return EffectiveTime(self.effective_ns) if self.effective_ns is not None else None

    @property
    def seen_at(self) -> datetime:
        """When a listing or a publication last saw the key (the objects page's "Last seen", the API's `last_seen`).

        A full sync confirms every key it lists without rewriting its row:
        a key that is neither missing nor deleted was seen by the dataset's
        last full sync, if that is later than the row's own `last_seen`.
        """
        if self.state in (ObjectState.MISSING, ObjectState.DELETED):
            return self.last_seen
        full = self.dataset.last_full_sync_at
        return max(self.last_seen, full) if full else self.last_seen

    @property
    def url(self) -> str:
        return self.dataset.open_store().url(self.key)


class PublicationEvent(models.Model):
    """A publication: who put which object into a dataset, from which system, and when."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="publications")
    # SET NULL is done by the database (migration 0007): Django would gather every deleted object's id
    # into one statement, past PostgreSQL's 65,535 parameters for a dataset of 100,000 objects.
    object = models.ForeignKey(
        StateObject, on_delete=models.DO_NOTHING, null=True, related_name="publications"
    )
    key = models.CharField(max_length=1024)
    source = models.CharField("source label", max_length=64)
    op = models.CharField(max_length=16)
    effective_ns = models.BigIntegerField()
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    actor = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    s3_url = models.CharField(max_length=2048)
    size = models.BigIntegerField(null=True)
    sha256 = models.CharField(max_length=64, blank=True)
    uploaded = models.BooleanField(default=True, help_text="false when the publisher put the object itself")
    # NULL (not "") so the unique constraint only covers publications that sent a key.
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001
    request_fingerprint = models.CharField(max_length=64, blank=True)
    # The first answer, replayed for a repeated Idempotency-Key; {} when no key was sent.
    response = models.JSONField(default=dict, blank=True)
    # The publisher's tags and the date tags of the effective time (publications.tags).
    tags = TagsField()

    class Meta:
        ordering = ["-effective_ns"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "idempotency_key"],
                condition=models.Q(idempotency_key__isnull=False),
                name="unique_idempotency_key_per_user",
            )
        ]
        indexes = [models.Index(fields=["dataset", "effective_ns"], name="publication_time_idx")]

    def __str__(self) -> str:
        return self.key

    @property
    def effective(self) -> EffectiveTime:
        return EffectiveTime(self.effective_ns)

    @property
    def effective_at(self) -> datetime:
        return self.effective.to_datetime()

    @property
    def given_tags(self) -> list[str]:
        """The tags its publisher gave (without the date tags)."""
        return [t for t in self.tags if ":" not in t]
