"""Choices that carry their colour: one definition of a status, its label and how the dashboard shows it."""

from __future__ import annotations

from functools import cache

from django.db import models

# The tones a badge can take (static/dashboard.css: .badge-good, .badge-warn, ...).
TONES = ("good", "warn", "info", "bad", "mute")


class ColouredChoices(models.TextChoices):
    """TextChoices whose members are written `NAME = value, tone, label` (tone: one of TONES).

    Read by the `badge` template tag: a word has one colour wherever it shows
    (a test checks that choices sharing a value share its tone).
    """

    tone: str

    def __new__(cls, value: str, tone: str):
        if tone not in TONES:
            raise ValueError(f"{cls.__name__}: tone {tone!r} is not one of {TONES}")
        member = str.__new__(cls, value)
        member._value_ = value
        member.tone = tone
        return member


def all_choices(cls: type = ColouredChoices) -> list[type[ColouredChoices]]:
    found = []
    for sub in cls.__subclasses__():
        found.append(sub)
        found.extend(all_choices(sub))
    return found


@cache
def tones() -> dict[str, str]:
    """Every coloured value of every app's choices, to its tone (built once, after the apps loaded)."""
    return {member.value: member.tone for choices in all_choices() for member in choices}


def tone_of(value: object) -> str:
    """The tone of a choice member, or of a plain value stored in the database; `mute` when unknown."""
    tone = getattr(value, "tone", None)
    return tone if isinstance(tone, str) else tones().get(str(value), "mute")
