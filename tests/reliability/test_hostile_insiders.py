"""Insiders and guessers: one login throttle for every way in; a token's scope never widens."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.test import Client

from accounts.models import ApiToken, Role
from audit.models import AuditEvent
from publications.models import Dataset
from tests.api.fixtures import make_caller

PASSWORD = "a-long-and-right-password-1"


@pytest.fixture
def admin_account(db, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast guesses
    cache.clear()
    return get_user_model().objects.create_superuser("root", "root@example.org", PASSWORD)


def admin_login(client: Client, password: str):
    return client.post("/admin/login/?next=/admin/", {"username": "root", "password": password})


def dashboard_login(client: Client, password: str):
    return client.post("/login/", {"username": "root", "password": password})


def logged_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


@pytest.mark.django_db
def test_admin_login_is_throttled_after_wrong_passwords_even_with_the_right_one(admin_account, settings):
    client = Client()
    for _ in range(40):
        admin_login(client, "wrong")
    response = admin_login(client, PASSWORD)
    assert response.status_code == 200 and not logged_in(client)
    assert AuditEvent.objects.filter(action="login.throttled", target="root").exists()


@pytest.mark.django_db
def test_failures_on_the_dashboard_count_for_the_admin_and_back(admin_account, settings):
    limit = settings.DMSUPDATE["LOGIN_FAILURE_LIMIT"]
    client = Client()
    for n in range(limit):
        (dashboard_login if n % 2 else admin_login)(client, "wrong")
    admin_login(client, PASSWORD)
    assert not logged_in(client)
    response = dashboard_login(client, PASSWORD)
    assert not logged_in(client) and b"Too many failed logins" in response.content


@pytest.mark.django_db
def test_each_failed_admin_login_is_audited_once_with_its_reason(admin_account):
    admin_login(Client(), "wrong")
    rows = list(AuditEvent.objects.filter(target="root").values_list("action", "details__reason"))
    assert rows == [("login.failed", "invalid_login")]


@pytest.mark.django_db
def test_admin_login_still_works_below_the_limit(admin_account):
    client = Client()
    admin_login(client, "wrong")
    admin_login(client, PASSWORD)
    assert logged_in(client)


@pytest.mark.django_db
def test_deleting_its_only_dataset_revokes_a_scoped_token_instead_of_widening_it(dataset, other_dataset):
    scoped = make_caller("sam", Role.PUBLISHER, datasets=[dataset])
    both = make_caller("bo", Role.PUBLISHER, datasets=[dataset, other_dataset])
    Dataset.objects.filter(pk=dataset.pk).delete()  # as the admin's delete action does
    response = scoped.client.post(
        "/api/v1/publications/?dataset=rivers&op=update&label=x",
        b"INSERT DATA { <http://a> <http://b> 1 }",
        content_type="application/sparql-update",
    )
    assert response.status_code == 401  # revoked: not a publisher of every dataset
    assert ApiToken.objects.get(pk=scoped.token.pk).revoked_at is not None
    assert AuditEvent.objects.filter(action="token.revoked", target=scoped.token.name).exists()
    assert list(both.token.datasets.all()) == [other_dataset]  # still limited: not revoked, not widened
    assert ApiToken.objects.get(pk=both.token.pk).revoked_at is None


@pytest.mark.django_db
def test_deleting_all_its_datasets_at_once_revokes_the_token(dataset, other_dataset):
    both = make_caller("bo", Role.PUBLISHER, datasets=[dataset, other_dataset])
    unscoped = make_caller("una", Role.PUBLISHER)
    Dataset.objects.all().delete()
    assert ApiToken.objects.get(pk=both.token.pk).revoked_at is not None
    assert ApiToken.objects.get(pk=unscoped.token.pk).revoked_at is None  # was never limited
