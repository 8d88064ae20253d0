"""Choices carry their colour: a word shows in one colour wherever it appears."""

from __future__ import annotations

from collections import defaultdict

from dmsupdate.choices import TONES, all_choices, tone_of
from dmsupdate.templatetags.dashboard import badge
from jobs.models import JobStatus
from publications.models import ObjectFlag, ObjectState
from servers.models import RunResult, ServerState


def test_choices_that_share_a_value_share_its_tone():
    seen: dict[str, set[str]] = defaultdict(set)
    for choices in all_choices():
        for member in choices:
            seen[member.value].add(member.tone)
    assert {value: tones for value, tones in seen.items() if len(tones) > 1} == {}


def test_every_state_the_dashboard_shows_has_a_known_tone():
    for choices in (ServerState, RunResult, JobStatus, ObjectState, ObjectFlag):
        for member in choices:
            assert member.tone in TONES and tone_of(member.value) == member.tone


def test_the_badge_takes_its_colour_from_the_choice_even_for_a_stored_value():
    assert badge("failing") == '<span class="badge badge-bad">failing</span>'
    assert badge(JobStatus.SUCCEEDED) == '<span class="badge badge-good">succeeded</span>'
    assert badge("something-else") == '<span class="badge badge-mute">something-else</span>'
