"""What a publisher token may publish to: its datasets and labels (empty: any). A scope never widens."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dmsupdate.errors import Forbidden


@dataclass(frozen=True)
class PublishScope:
    """The datasets (ids) and labels a publisher is limited to; None or empty means unlimited."""

    dataset_ids: frozenset[int] = frozenset()
    labels: tuple[str, ...] = ()

    def check(self, dataset: Any, label: str | None = None) -> None:
        """Raise Forbidden for a dataset or label outside the scope (`label=None`: the dataset only)."""
        if self.dataset_ids and dataset.pk not in self.dataset_ids:
            raise Forbidden("forbidden", f"this token may not publish to dataset {dataset.name!r}")
        if label is not None and self.labels and label not in self.labels:
            raise Forbidden(
                "forbidden",
                f"this token may publish only with the labels {', '.join(self.labels)}, not {label!r}",
            )


UNLIMITED = PublishScope()
