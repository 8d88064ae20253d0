"""Paths under /api/ that no route takes answer JSON 404, also with DMSUPDATE_DEBUG on (the demo's default)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize("path", ["/api/v1/nope/", "/api/v2/servers/", "/api/v1/jobs/"])
def test_an_unknown_api_path_is_a_json_404(client, settings, debug, path):
    settings.DEBUG = debug
    response = client.get(path)
    assert response.status_code == 404 and response["Content-Type"] == "application/json"
    assert response.json()["error"] == "not_found"


@pytest.mark.parametrize("debug", [False, True])
def test_a_post_without_the_trailing_slash_is_told_the_right_path(client, settings, debug):
    settings.DEBUG = debug
    response = client.post("/api/v1/publications", {"dataset": "x"})
    assert response.status_code == 404
    assert response.json()["detail"].endswith("did you mean /api/v1/publications/ ?")
