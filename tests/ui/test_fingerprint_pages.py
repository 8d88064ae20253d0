"""Replica agreement on the dashboard, in headless Chromium: the fleet's agreement line, a diverged badge, the differing graphs."""

from __future__ import annotations

import pytest

from dmsupdate.state.fingerprint import build_fingerprint
from dmsupdate.state.keys import EffectiveTime
from publications.models import Dataset
from servers.models import Server
from servers.services import record_report
from tests.ui.browser import log_in, make_user, shoot

pytestmark = [pytest.mark.browser]

AT = EffectiveTime.parse_text("2026-12-01T09:00:00Z")
READINGS = "http://environment.data.gov.uk/flood-monitoring/graph/readings-2026-12-01"
STATIONS = "http://environment.data.gov.uk/flood-monitoring/graph/stations"


def report(server: Server, readings: tuple[int, str]) -> None:
    graphs = {STATIONS: (120, "a1" * 16), READINGS: readings}
    record_report(
        server,
        {
            "effectiveDate": AT.path,
            "lastSucceeded": True,
            "lastUpdate": "2026-12-01T09:00:05Z",
            "fingerprint": build_fingerprint(graphs, "full", AT.path, "2026-12-01T09:00:05Z"),
        },
    )


@pytest.fixture
def diverged_fleet(transactional_db, tmp_path):
    dataset = Dataset.objects.create(name="flood", s3root=f"file://{tmp_path}/flood")
    for name in ("fuseki-1", "fuseki-2"):
        report(Server.objects.create(name=name, dataset=dataset), (5000, "b2" * 16))
    report(Server.objects.create(name="fuseki-3", dataset=dataset), (4999, "c3" * 16))
    make_user("olivia", "operator")


def test_the_fleet_shows_agreement_and_the_diverged_server_shows_its_graphs(
    browser_page, live_server, diverged_fleet
):
    page = browser_page
    log_in(page, live_server, "olivia")
    agreement = page.locator("#dataset-flood .agreement")
    assert agreement.inner_text().startswith("2 of 3 servers agree at 2026-12-01 09:00:00")
    assert page.locator("#server-fuseki-3 .badge").inner_text() == "diverged"
    assert page.locator("#server-fuseki-1 .badge").inner_text() == "ok"
    shoot(page, "fleet-diverged")

    page.click("#server-fuseki-3 a")
    page.wait_for_url(f"{live_server.url}/servers/fuseki-3/")
    divergence = page.locator("#divergence")
    assert "differs from the other servers' (2 of 3 agree)" in divergence.inner_text()
    rows = divergence.locator("tbody tr")
    assert rows.count() == 1
    cells = rows.first.locator("td").all_inner_texts()
    assert cells[:3] == [READINGS, "4,999", "5,000"]
    assert divergence.locator("a", has_text="Rebuild").get_attribute("href") == "/servers/fuseki-3/rebuild"
    shoot(page, "server-diverged")


def test_a_dataset_whose_servers_share_no_time_is_not_comparable_yet(
    browser_page, live_server, transactional_db, tmp_path
):
    dataset = Dataset.objects.create(name="bathing", s3root=f"file://{tmp_path}/bathing")
    report(Server.objects.create(name="solo", dataset=dataset), (10, "d4" * 16))
    make_user("victor", "viewer")
    page = browser_page
    log_in(page, live_server, "victor")
    assert page.locator("#dataset-bathing .agreement").inner_text() == "Fingerprints: not comparable yet"
