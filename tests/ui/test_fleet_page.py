"""The fleet page: heads, lags, badges, sparklines, filters, partial refresh, and a constant query count."""

from __future__ import annotations

import re

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext

from servers.models import Server


def row_of(html: str, name: str) -> str:
    match = re.search(rf'<tr id="server-{re.escape(name)}".*?</tr>', html, re.S)
    assert match, f"no row for {name}"
    return match.group(0)


def test_fleet_page_shows_each_server_with_its_state_and_lag(viewer_client, fleet, updates):
    from publications.models import PublicationEvent

    html = viewer_client.get("/").content.decode()
    head = PublicationEvent.objects.get(key=updates[-1].key)
    assert f'<a href="/publications/{head.pk}/"><code class="key">{updates[-1].key}</code></a>' in html
    fresh, lagging, broken = row_of(html, "fuseki-1"), row_of(html, "fuseki-2"), row_of(html, "fuseki-3")
    assert 'badge-good">ok<' in fresh and "up to date" in fresh
    assert 'badge-warn">behind<' in lagging
    assert "2 updates, 2 min behind" in lagging
    assert 'badge-bad">failing<' in broken
    assert updates[1].key[:60] in broken and "HTTP 500 from the store" in broken
    assert "4 updates, 4 min behind" in broken


def test_last_report_is_relative_with_the_exact_time_on_hover(viewer_client, fleet):
    row = row_of(viewer_client.get("/").content.decode(), "fuseki-1")
    exact = fleet["fresh"].last_report_at.isoformat(timespec="seconds")
    assert f'title="{exact}"' in row
    assert ">1 min ago<" in row


def spark_points(row: str) -> list[tuple[float, float]]:
    spark = re.search(r"<svg class=\"spark[^>]*>.*?<polyline[^>]*points=\"([^\"]+)\"", row, re.S)
    assert spark, row
    return [tuple(map(float, p.split(","))) for p in spark.group(1).split()]


def test_each_server_has_a_lag_sparkline_from_its_reports(viewer_client, fleet, ui_dataset):
    quiet = Server.objects.create(name="quiet", dataset=ui_dataset)
    html = viewer_client.get("/").content.decode()
    points = spark_points(row_of(html, "fuseki-2"))
    # Reports 5 h, 3 h and 1 h ago (10, 4 and 1 min behind), each held until the next (steps), then now.
    xs, heights = [x for x, _ in points], [y for _, y in points]
    assert xs == sorted(xs) and xs[0] < 120 * 20 / 24 and xs[-1] == 120.0
    assert heights[0] < heights[2] < heights[4]  # SVG y grows downwards: the lag shrank
    # It ends at the current value (2 updates, 2 min behind), not at the last report's 1 min.
    assert heights[-1] < heights[-2]
    assert "now 2 min behind, at most 10 min behind" in row_of(html, "fuseki-2")
    assert "no reports in 24 h" in row_of(html, quiet.name)


def test_sparklines_share_a_scale_so_one_day_behind_is_half_of_two(
    viewer_client, ui_dataset, publish_updates
):
    from datetime import timedelta

    from django.utils import timezone

    from dmsupdate.state.keys import EffectiveTime

    start = EffectiveTime.from_datetime(timezone.now() - timedelta(days=2, minutes=1))
    updates = publish_updates(ui_dataset, 3, start, step_seconds=86400)
    for name, index in (("two-days", 0), ("one-day", 1), ("current", 2)):
        Server.objects.create(
            name=name,
            dataset=ui_dataset,
            effective_ns=updates[index].effective_ns,
            last_report_at=timezone.now(),
            last_succeeded=True,
        )
    html = viewer_client.get("/").content.decode()
    bottom = 22.0  # the y of a lag of 0
    two, one = spark_points(row_of(html, "two-days"))[-1][1], spark_points(row_of(html, "one-day"))[-1][1]
    assert bottom - two == pytest.approx(2 * (bottom - one), rel=0.02)
    assert "spark-flat" in row_of(html, "current") and "spark-up" in row_of(html, "one-day")


def test_a_server_that_never_reported_is_behind_with_everything_pending(viewer_client, ui_dataset, updates):
    Server.objects.create(name="newcomer", dataset=ui_dataset)
    row = row_of(viewer_client.get("/").content.decode(), "newcomer")
    assert 'badge-warn">behind<' in row and "never reported, 5 updates to replay" in row


def test_disabled_and_rebuilding_servers_show_their_own_badges(
    viewer_client, ui_dataset, updates, add_server
):
    from django.utils import timezone

    add_server(ui_dataset, "off", updates[-1].effective_ns, enabled=False)
    add_server(ui_dataset, "rebuilt", updates[-1].effective_ns, rebuild_requested_at=timezone.now())
    html = viewer_client.get("/").content.decode()
    assert ">disabled<" in row_of(html, "off")
    assert ">rebuilding<" in row_of(html, "rebuilt")


def test_the_state_filter_shows_only_matching_servers(viewer_client, fleet):
    html = viewer_client.get("/?state=failing").content.decode()
    assert "fuseki-3" in html and 'id="server-fuseki-1"' not in html


def test_the_fleet_refreshes_itself_from_a_partial(viewer_client, fleet):
    page = viewer_client.get("/").content.decode()
    assert 'hx-get="/fleet/rows"' in page and "every 5s" in page
    assert "/static/vendor/htmx.min.js" in page
    partial = viewer_client.get("/fleet/rows", HTTP_HX_REQUEST="true").content.decode()
    assert partial.lstrip().startswith('<div id="fleet"') and "<html" not in partial
    assert "fuseki-2" in partial


def test_empty_states_say_what_to_do(viewer_client, db):
    html = viewer_client.get("/").content.decode()
    assert "No datasets yet" in html and "manage.py demo" in html


def test_a_dataset_without_servers_explains_how_to_register_one(viewer_client, ui_dataset):
    assert "POST /api/v1/servers/" in viewer_client.get("/").content.decode()


def _count_queries(client, url: str) -> tuple[int, int]:
    """Queries of a first request (caches cold), then of a second one."""
    cache.clear()
    counts = []
    for _ in range(2):
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(url).status_code == 200
        counts.append(len(ctx.captured_queries))
    return counts[0], counts[1]


@pytest.mark.parametrize("url", ["/", "/fleet/rows"])
def test_fleet_query_count_does_not_grow_with_the_number_of_servers(
    viewer_client, ui_dataset, updates, url, add_server, publish_updates
):
    from dmsupdate.state.keys import EffectiveTime
    from publications.models import Dataset

    other = Dataset.objects.create(name="other", s3root="file:///nowhere")
    publish_updates(other, 3, EffectiveTime(updates[0].effective_ns))
    for i in range(3):
        add_server(ui_dataset if i % 2 else other, f"small-{i}", updates[i].effective_ns)
    small = _count_queries(viewer_client, url)
    for i in range(3, 30):
        add_server(ui_dataset if i % 2 else other, f"big-{i}", updates[i % 5].effective_ns)
    big = _count_queries(viewer_client, url)
    assert Server.objects.count() == 30
    assert small == big
    _, warm = big
    # Session, user, role, datasets and heads, servers, newest update times, missing update
    # times (gap detection), the shown rows' hourly lags (sparklines), the datasets' jobs,
    # the heads' publications.
    assert warm <= 10


def test_pending_counts_beyond_the_cap_read_as_a_floor(viewer_client, ui_dataset, updates, monkeypatch):
    import servers.dashboard
    import servers.templatetags.fleet as tags

    monkeypatch.setattr(servers.dashboard, "PENDING_CAP", 3)
    monkeypatch.setattr(tags, "PENDING_CAP", 3)
    Server.objects.create(name="newcomer", dataset=ui_dataset)
    row = row_of(viewer_client.get("/").content.decode(), "newcomer")
    assert ">3+<" in row and "never reported, 3+ updates to replay" in row


def test_fleet_pending_counts_match_the_lag_service(fleet, ui_dataset, updates, add_server):
    from servers.dashboard import fleet as fleet_sections
    from servers.lag import lag_for

    Server.objects.create(name="newcomer", dataset=ui_dataset)
    add_server(ui_dataset, "between", updates[2].effective_ns + 1)
    rows = {row.server.name: row.lag.pending_updates for s in fleet_sections() for row in s.rows}
    assert rows == {s.name: lag_for(s).pending_updates for s in Server.objects.all()}
    assert rows["between"] == 2 and rows["newcomer"] == 5
