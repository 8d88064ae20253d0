"""The API docs page runs only the app's own, pinned Swagger UI: no CDN, works offline."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.staticfiles import finders
from django.test import Client


@pytest.mark.django_db
def test_the_docs_page_loads_swagger_ui_from_the_app_itself():
    page = Client().get("/api/v1/docs/").content.decode()
    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert any("swagger-ui-bundle.js" in s for s in sources), sources
    assert all(s.startswith("/") for s in sources), sources  # nothing from another origin
    assert "cdn" not in page.lower() and "@latest" not in page
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        url = next(s for s in sources if s.endswith(asset))
        found = finders.find(
            url.removeprefix(settings.STATIC_URL if settings.STATIC_URL.startswith("/") else "/static/")
        )
        assert found and Path(found).stat().st_size > 1000, (
            url
        )  # shipped with the app, collected with its static files
