"""`manage.py issue_token`: prints a working key once, scopes it, audits it, refuses nonsense."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from accounts.models import ApiToken
from audit.models import AuditEvent


def issue(*args: str) -> str:
    out = io.StringIO()
    call_command("issue_token", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue().strip()


@pytest.mark.django_db
def test_issued_publisher_key_works_and_is_scoped_and_audited(dataset):
    get_user_model().objects.create_user("feed")
    key = issue(
        "--user", "feed", "--role", "publisher", "--dataset", "flood", "--labels", "readings,stations"
    )

    token = ApiToken.objects.get(user__username="feed")
    assert (token.role, token.labels, [d.name for d in token.datasets.all()]) == (
        "publisher",
        ["readings", "stations"],
        ["flood"],
    )
    row = AuditEvent.objects.get(action="token.issued")
    assert row.target == "feed" and row.details["labels"] == ["readings", "stations"]
    assert key not in str(row.details)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get("/api/v1/publications/").status_code == 200


@pytest.mark.django_db
def test_missing_user_is_created_only_when_asked(db):
    with pytest.raises(CommandError, match="--create-user"):
        issue("--user", "ghost", "--role", "viewer")
    issue("--user", "ghost", "--role", "viewer", "--create-user")
    ghost = get_user_model().objects.get(username="ghost")
    assert not ghost.has_usable_password()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--role", "agent"], "--server"),
        (["--role", "viewer", "--labels", "a"], "publisher tokens only"),
        (["--role", "publisher", "--dataset", "nowhere"], "no dataset"),
        (["--role", "operator", "--server", "web1"], "only for agent"),
    ],
)
def test_nonsense_is_refused_and_issues_nothing(db, args, words):
    get_user_model().objects.create_user("feed")
    with pytest.raises(CommandError, match=words):
        issue("--user", "feed", *args)
    assert not ApiToken.objects.exists()
    assert not AuditEvent.objects.filter(action="token.issued").exists()
