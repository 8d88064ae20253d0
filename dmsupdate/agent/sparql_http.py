"""HTTP to a SPARQL store: one session with the configured credentials, and what counts as an answer.

- every request carries the `auth` credentials (basic, digest, bearer); bodies
  are files on disk sent with a `Content-Length` (some stores answer a chunked
  body 2xx and read nothing) and can be sent again, as digest auth needs;
- an answer is checked beyond its status: a 2xx HTML page to a Graph Store
  write is a failure (Virtuoso answers a POST it does not understand with an
  upload form and stores nothing), as is a query answer that is not SPARQL
  results;
- every message names the URL without credentials and passes through
  `dmsupdate.state.redact`.
"""

from __future__ import annotations

import json
from typing import IO, Any

import pyoxigraph as ox
import requests

from dmsupdate.agent.config import Config
from dmsupdate.agent.errors import OperationFailed, Throttled, parse_retry_after
from dmsupdate.state.redact import redact

TIMEOUT = (10, 3600)  # connect, read: a big replace may take a while to be acknowledged
QUERY_TIMEOUT = (10, 600)
RESULTS_JSON = "application/sparql-results+json"


def iri(value: str) -> str:
    """An IRI as a SPARQL term (`<…>`); OperationFailed when it is not a valid IRI."""
    try:
        return str(ox.NamedNode(value))
    except ValueError as exc:
        raise OperationFailed(f"{value!r} is not a valid IRI: {exc}") from exc


def check_response(response: requests.Response, what: str, secrets: tuple[str, ...] = ()) -> None:
    """Raise Throttled for 429/503, OperationFailed for any other error status."""
    if response.status_code in (429, 503):
        retry = parse_retry_after(response.headers.get("Retry-After"))
        hint = f", retry after {retry:g} s" if retry is not None else ""
        raise Throttled(
            redact(f"{what}: HTTP {response.status_code} from {response.url}{hint}", secrets), retry
        )
    if response.status_code >= 400:
        detail = response.text[:300].strip()
        raise OperationFailed(
            redact(f"{what}: HTTP {response.status_code} from {response.url}: {detail}", secrets)
        )


def is_html_page(response: requests.Response) -> bool:
    """A non-empty HTML body (Virtuoso's empty `text/html` 201 to a PUT is an acknowledgement, not a page)."""
    media = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    return media in ("text/html", "application/xhtml+xml") and bool(response.content.strip())


class SparqlClient:
    """Requests to the query, update and Graph Store Protocol endpoints of one store."""

    def __init__(self, config: Config) -> None:
        self.query_url, self.update_url, self.gsp_url = config.endpoints()
        self.secrets = config.secrets
        self.session = requests.Session()
        if config.auth is not None:
            self.session.auth = config.auth.requests_auth()
        # Proxies and CA bundle from the environment (HTTPS_PROXY, NO_PROXY, REQUESTS_CA_BUNDLE…),
        # read once per endpoint rather than on every request, as requests would.
        self._settings = {
            url: self.session.merge_environment_settings(url, {}, None, None, None)
            for url in {self.query_url, self.update_url, self.gsp_url}
        }
        self.session.trust_env = False

    def close(self) -> None:
        self.session.close()

    def environment(self, url: str) -> dict[str, Any]:
        """The proxies and TLS verification the environment sets for one of the endpoints."""
        settings = self._settings.get(url) or self.session.merge_environment_settings(
            url, {}, None, None, None
        )
        return {"proxies": settings["proxies"], "verify": settings["verify"]}

    def redact(self, text: str) -> str:
        return redact(text, self.secrets)

    def request(self, method: str, url: str, what: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", TIMEOUT)
        try:
            return self.session.request(method, url, **self.environment(url), **kwargs)
        except requests.RequestException as exc:
            raise OperationFailed(self.redact(f"{what}: cannot reach {url}: {exc}")) from exc

    def check(self, response: requests.Response, what: str) -> None:
        check_response(response, what, self.secrets)

    # Graph Store Protocol ----------------------------------------------------------------------

    def send(
        self, method: str, body: IO[bytes], media: str, params: dict[str, str] | None, what: str
    ) -> None:
        """PUT or POST a file (from its start) to the Graph Store endpoint, with its Content-Length."""
        size = body.seek(0, 2)
        body.seek(0)
        # requests sends a file it measures as empty chunked: send an empty body as bytes instead.
        data: IO[bytes] | bytes = body if size else b""
        response = self.request(
            method,
            self.gsp_url,
            what,
            params=params,
            data=data,
            headers={"Content-Type": media, "Content-Length": str(size)},
        )
        self.check(response, what)
        if is_html_page(response):
            raise OperationFailed(
                self.redact(
                    f"{what}: {self.gsp_url} answered HTTP {response.status_code} with an HTML page, "
                    "not a Graph Store Protocol result; nothing can be assumed stored "
                    f"({response.text[:200].strip()!r})"
                )
            )

    def delete_graph(self, graph: str, what: str) -> None:
        """DELETE one graph; a missing graph (404) is fine."""
        response = self.request("DELETE", self.gsp_url, what, params={"graph": graph})
        if response.status_code != 404:
            self.check(response, what)

    # SPARQL ------------------------------------------------------------------------------------

    def update(self, text: str, what: str) -> None:
        response = self.request(
            "POST",
            self.update_url,
            what,
            data=text.encode("utf-8"),
            headers={"Content-Type": "application/sparql-update; charset=utf-8"},
        )
        self.check(response, what)

    def _results(self, query: str, what: str) -> dict[str, Any]:
        response = self.request(
            "POST",
            self.query_url,
            what,
            data={"query": query},
            headers={"Accept": RESULTS_JSON},
            timeout=QUERY_TIMEOUT,
        )
        self.check(response, what)
        try:
            body = json.loads(response.content)
        except ValueError as exc:
            raise OperationFailed(
                self.redact(f"{what}: {self.query_url} did not answer SPARQL JSON results: {exc}")
            ) from exc
        if not isinstance(body, dict):
            raise OperationFailed(self.redact(f"{what}: {self.query_url} did not answer SPARQL results"))
        return body

    def select(self, query: str, what: str) -> list[dict[str, str]]:
        """The rows of a SELECT, each variable's value as text."""
        body = self._results(query, what)
        try:
            rows = body["results"]["bindings"]
            return [{name: cell["value"] for name, cell in row.items()} for row in rows]
        except (KeyError, TypeError) as exc:
            raise OperationFailed(self.redact(f"{what}: {self.query_url} answered no result rows")) from exc

    def ask(self, query: str, what: str) -> bool:
        value = self._results(query, what).get("boolean")
        if not isinstance(value, bool):
            raise OperationFailed(self.redact(f"{what}: {self.query_url} answered no ASK result"))
        return value

    def count(self, query: str, what: str) -> int:
        rows = self.select(query, what)
        try:
            return int(rows[0]["n"]) if rows else 0
        except (KeyError, ValueError) as exc:
            raise OperationFailed(self.redact(f"{what}: {self.query_url} answered no count")) from exc

    def graph_triples(self, graph: str, what: str) -> int:
        """How many triples the store holds in one named graph."""
        return self.count(f"SELECT (COUNT(*) AS ?n) WHERE {{ GRAPH {iri(graph)} {{ ?s ?p ?o }} }}", what)

    def graph_counts(self, what: str) -> dict[str, int]:
        """Every named graph the store holds, with its triple count."""
        rows = self.select("SELECT ?g (COUNT(*) AS ?n) WHERE { GRAPH ?g { ?s ?p ?o } } GROUP BY ?g", what)
        counts: dict[str, int] = {}
        for row in rows:
            try:
                counts[row["g"]] = int(row["n"])
            except (KeyError, ValueError) as exc:
                raise OperationFailed(self.redact(f"{what}: unreadable graph count {row!r}")) from exc
        return counts
