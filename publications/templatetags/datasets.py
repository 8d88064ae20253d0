"""Template tags of the registry shown on other apps' pages (the jobs page's dataset operations)."""

from __future__ import annotations

from django import template

from publications.models import Dataset

register = template.Library()


@register.inclusion_tag("publications/_dataset_actions.html")
def dataset_actions() -> dict:
    """Per dataset, the GC dry run and the image build an operator may start."""
    return {"datasets": list(Dataset.objects.order_by("name"))}
