"""Who may see and do what on the dashboard: viewers see, operators act, every form carries CSRF."""

from __future__ import annotations

import pytest
from django.test import Client

from jobs.models import Job

PAGES = ["/", "/fleet/rows", "/servers/fuseki-2/", "/publications/", "/objects/", "/jobs/"]
ACTIONS = [
    ("/servers/fuseki-2/update", {}),
    ("/servers/fuseki-2/rebuild", {"confirm": "yes"}),
    ("/jobs/gc/", {"dataset": "DATASET"}),
    ("/jobs/build-image/", {"dataset": "DATASET"}),
]


@pytest.mark.parametrize("url", PAGES + ["/audit/"])
def test_anonymous_visitors_are_sent_to_the_login_page(client, fleet, url):
    response = client.get(url)
    assert response.status_code == 302 and response["Location"].startswith("/login/?next=")


def test_a_polled_fragment_after_logout_sends_the_browser_to_login(client, fleet):
    response = client.get(
        "/fleet/rows", HTTP_HX_REQUEST="true", HTTP_HX_CURRENT_URL="http://testserver/?state=behind"
    )
    assert response.status_code == 204 and response["HX-Redirect"] == "/login/?next=/"


@pytest.mark.parametrize("url", PAGES)
def test_viewers_and_operators_see_every_page(viewer_client, operator_user, fleet, url):
    assert viewer_client.get(url).status_code == 200
    viewer_client.force_login(operator_user)
    assert viewer_client.get(url).status_code == 200


def test_the_audit_log_is_for_operators_as_in_the_api(viewer_client, operator_user, fleet):
    response = viewer_client.get("/audit/")
    assert response.status_code == 403 and b"operator" in response.content
    assert b'href="/audit/"' not in viewer_client.get("/").content
    viewer_client.force_login(operator_user)
    assert viewer_client.get("/audit/").status_code == 200


def test_an_account_without_a_role_is_refused_with_a_page(client, nobody, fleet):
    client.force_login(nobody)
    response = client.get("/")
    assert response.status_code == 403
    assert b"<html" in response.content and b"no dashboard role" in response.content


def test_viewers_do_not_see_action_buttons(viewer_client, fleet):
    server = viewer_client.get("/servers/fuseki-2/").content.decode()
    assert "Update now" not in server and "Rebuild" not in server
    jobs = viewer_client.get("/jobs/").content.decode()
    assert "GC dry run" not in jobs and "Build image" not in jobs


def test_operators_see_action_buttons(operator_client, fleet):
    server = operator_client.get("/servers/fuseki-2/").content.decode()
    assert "Update now" in server and "Rebuild" in server
    jobs = operator_client.get("/jobs/").content.decode()
    assert "GC dry run" in jobs and "Build image" in jobs


@pytest.mark.parametrize("url,data", ACTIONS)
def test_viewers_posting_an_action_get_403_and_nothing_starts(viewer_client, fleet, ui_dataset, url, data):
    data = {k: (ui_dataset.pk if v == "DATASET" else v) for k, v in data.items()}
    response = viewer_client.post(url, data)
    assert response.status_code == 403
    assert Job.objects.count() == 0


@pytest.mark.parametrize("url,data", ACTIONS)
def test_actions_without_a_csrf_token_are_refused(operator_user, fleet, ui_dataset, url, data):
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator_user)
    data = {k: (ui_dataset.pk if v == "DATASET" else v) for k, v in data.items()}
    response = client.post(url, data)
    assert response.status_code == 403 and b"CSRF" in response.content
    assert Job.objects.count() == 0


def test_actions_with_the_pages_csrf_token_are_accepted(operator_user, fleet):
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator_user)
    page = client.get("/servers/fuseki-2/")
    token = page.cookies["csrftoken"].value
    assert 'name="csrfmiddlewaretoken"' in page.content.decode()
    response = client.post("/servers/fuseki-2/update", {"csrfmiddlewaretoken": token})
    assert response.status_code == 302
    assert Job.objects.get().kind == "update"


@pytest.mark.parametrize("url", ["/servers/fuseki-2/update", "/jobs/gc/", "/jobs/build-image/"])
def test_actions_only_accept_post(operator_client, fleet, url):
    assert operator_client.get(url).status_code == 405
