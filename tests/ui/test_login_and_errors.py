"""Login and logout, throttling of failed logins, and error pages (HTML for people, JSON for the API)."""

from __future__ import annotations

from django.test import Client

from audit.models import AuditEvent

# The database cache holding the failure counters is rolled back with each test.
PASSWORD = "correct horse battery staple"


def test_a_viewer_logs_in_and_lands_on_the_fleet(client, viewer_user, fleet):
    page = client.get("/login/")
    assert page.status_code == 200 and b'name="csrfmiddlewaretoken"' in page.content
    response = client.post("/login/", {"username": "victor", "password": PASSWORD}, follow=True)
    assert response.redirect_chain[-1][0] == "/" and b"fuseki-2" in response.content


def test_login_keeps_the_page_asked_for(client, viewer_user, fleet):
    response = client.post(
        "/login/?next=/jobs/", {"username": "victor", "password": PASSWORD, "next": "/jobs/"}
    )
    assert response["Location"] == "/jobs/"


def test_logout_is_a_post_and_ends_the_session(viewer_client, fleet):
    assert viewer_client.post("/logout/").status_code == 302
    assert viewer_client.get("/")["Location"].startswith("/login/")


def test_a_wrong_password_is_refused_and_audited(client, viewer_user):
    response = client.post("/login/", {"username": "victor", "password": "guess"}, REMOTE_ADDR="10.0.0.7")
    assert response.status_code == 200 and b"enter a correct username and password" in response.content
    event = AuditEvent.objects.get(action="login.failed")
    assert (event.actor, event.target, event.details["ip"]) == ("anonymous", "victor", "10.0.0.7")


def test_too_many_failures_for_a_username_lock_it_even_with_the_right_password(client, viewer_user, settings):
    settings.DMSUPDATE = {**settings.DMSUPDATE, "LOGIN_FAILURE_LIMIT": 3}
    for i in range(3):
        client.post("/login/", {"username": "victor", "password": "guess"}, REMOTE_ADDR=f"10.0.0.{i}")
    response = client.post("/login/", {"username": "victor", "password": PASSWORD}, REMOTE_ADDR="10.0.0.99")
    assert response.status_code == 200 and b"Too many failed logins" in response.content
    assert "_auth_user_id" not in client.session
    assert AuditEvent.objects.filter(action="login.throttled", target="victor").count() == 1


def test_too_many_failures_from_one_address_block_that_address(client, viewer_user, operator_user, settings):
    settings.DMSUPDATE = {**settings.DMSUPDATE, "LOGIN_FAILURE_LIMIT": 3}
    for name in ["a", "b", "c"]:
        client.post("/login/", {"username": name, "password": "x"}, REMOTE_ADDR="10.9.9.9")
    blocked = client.post("/login/", {"username": "olivia", "password": PASSWORD}, REMOTE_ADDR="10.9.9.9")
    assert b"Too many failed logins" in blocked.content
    elsewhere = Client().post("/login/", {"username": "olivia", "password": PASSWORD}, REMOTE_ADDR="10.1.1.1")
    assert elsewhere.status_code == 302


def test_login_without_csrf_is_refused(viewer_user):
    client = Client(enforce_csrf_checks=True)
    response = client.post("/login/", {"username": "victor", "password": PASSWORD})
    assert response.status_code == 403 and b"CSRF" in response.content


def test_unknown_pages_are_html_404s_and_unknown_api_paths_json(viewer_client):
    page = viewer_client.get("/no/such/page")
    assert page.status_code == 404 and page["Content-Type"].startswith("text/html")
    assert b"Back to the fleet" in page.content
    api = viewer_client.get("/api/v1/no/such/thing")
    assert api.status_code == 404 and api.json()["error"] == "not_found"


def test_a_crash_shows_a_plain_page_with_the_request_id_not_a_traceback(
    viewer_user, fleet, monkeypatch, settings
):
    import servers.views

    def broken(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(servers.views, "fleet", broken)
    settings.DEBUG = False
    client = Client(raise_request_exception=False)
    client.force_login(viewer_user)
    response = client.get("/", HTTP_X_REQUEST_ID="req-12345")
    assert response.status_code == 500 and response["Content-Type"].startswith("text/html")
    body = response.content.decode()
    assert "req-12345" in body and "secret internals" not in body and "Traceback" not in body
