"""Prometheus `/metrics`: replay lag per server, pending updates, jobs, publications, S3 requests.

Values are read from the registry at scrape time in a fixed number of queries,
so every web process answers the same whatever served the last request.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator

from django.conf import settings
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from dmsupdate.api import json_error


class RegistryCollector:
    """Collects fleet and registry figures from the database on each scrape."""

    def collect(self) -> Iterator[Metric]:
        from jobs.models import Job
        from publications.models import Dataset, PublicationEvent, StateObject
        from servers.lag import lags_of
        from servers.models import Agreement, Server

        lag = GaugeMetricFamily(
            "dmsupdate_server_lag_seconds",
            "Newest published update time minus the server's effective time",
            labels=["dataset", "server"],
        )
        pending = GaugeMetricFamily(
            "dmsupdate_server_pending_updates",
            "Published updates later than the server's effective time",
            labels=["dataset", "server"],
        )
        state = GaugeMetricFamily(
            "dmsupdate_server_state",
            "1 for the server's current state",
            labels=["dataset", "server", "state"],
        )
        missing = GaugeMetricFamily(
            "dmsupdate_server_missing_updates",
            "Updates the server still needs that are gone from the bucket (a gap: restore or rebuild)",
            labels=["dataset", "server"],
        )
        diverged = GaugeMetricFamily(
            "dmsupdate_server_diverged_graphs",
            "Graphs whose fingerprint differs from the other servers' (or the image's) at the same effective time",
            labels=["dataset", "server"],
        )
        servers = list(Server.objects.select_related("dataset"))
        lags = lags_of(servers)
        for server in servers:
            figures = lags[server.pk]
            labels = [server.dataset.name, server.name]
            if figures.lag_seconds is not None:
                lag.add_metric(labels, figures.lag_seconds)
            pending.add_metric(labels, figures.pending_updates)
            state.add_metric([*labels, figures.state], 1)
            missing.add_metric(labels, figures.missing_updates)
            differing = (
                (server.divergence or {}).get("graphs_differing", 0) if server.diverged_ns is not None else 0
            )
            diverged.add_metric(labels, differing)
        yield from (lag, pending, state, missing, diverged)

        agreeing = GaugeMetricFamily(
            "dmsupdate_dataset_servers_agreeing",
            "Servers whose fingerprints agree at the dataset's newest comparable effective time",
            labels=["dataset"],
        )
        compared = GaugeMetricFamily(
            "dmsupdate_dataset_servers_compared",
            "Servers compared at the dataset's newest comparable effective time",
            labels=["dataset"],
        )
        for agreement in Agreement.objects.select_related("dataset"):
            agreeing.add_metric([agreement.dataset.name], agreement.agreeing)
            compared.add_metric([agreement.dataset.name], agreement.compared)
        yield from (agreeing, compared)

        jobs = CounterMetricFamily(
            "dmsupdate_jobs", "Background jobs by kind and status", labels=["kind", "status"]
        )
        for row in Job.objects.values("kind", "status").annotate(n=Count("id")).order_by():
            jobs.add_metric([row["kind"], row["status"]], row["n"])
        yield jobs

        pubs = CounterMetricFamily(
            "dmsupdate_publications", "Publication events by dataset", labels=["dataset"]
        )
        for row in PublicationEvent.objects.values("dataset__name").annotate(n=Count("id")).order_by():
            pubs.add_metric([row["dataset__name"]], row["n"])
        yield pubs

        objects = GaugeMetricFamily(
            "dmsupdate_objects", "Registry objects by dataset and state", labels=["dataset", "state"]
        )
        # Grouped on (dataset_id, state) alone, an index-only scan of object_state_idx; names after.
        names = dict(Dataset.objects.values_list("pk", "name"))
        counts = StateObject.objects.values_list("dataset_id", "state").annotate(n=Count("*")).order_by()
        for dataset_id, state_name, n in counts:
            objects.add_metric([names.get(dataset_id, str(dataset_id)), state_name], n)
        yield objects

        from dmsupdate.state.stores import REQUESTS

        s3 = CounterMetricFamily(
            "dmsupdate_store_requests",
            "Object-store requests made by this process",
            labels=["scheme", "kind"],
        )
        for (scheme, kind), n in sorted(REQUESTS.items()):
            s3.add_metric([scheme, kind], n)
        yield s3


def metrics(request: HttpRequest) -> HttpResponse:
    """The Prometheus text exposition of the registry's figures.

    When `DMSUPDATE_METRICS_TOKEN` is set, scrapers must send it as a bearer token.
    """
    expected = settings.DMSUPDATE["METRICS_TOKEN"]
    if expected:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), expected.encode()):
            return json_error(
                "unauthenticated", "send the metrics token as 'Authorization: Bearer TOKEN'", 401
            )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RegistryCollector())  # type: ignore[arg-type]
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
