"""Where and how the SPARQL backend talks to a store: the three URLs, credentials, system graphs.

The three URLs:
- with `service` (with or without its trailing slash): `{service}query`,
  `{service}update`, `{service}data` (Fuseki's layout), each replaced by its
  `*_endpoint` key when that is given;
- without `service`: `update_endpoint` and `gsp_endpoint` are required; a
  missing `query_endpoint` is derived from `update_endpoint`: `…/update` →
  `…/query` (Oxigraph server, Fuseki), `…/statements` → the repository URL
  (GraphDB, RDF4J), anything else → the update URL itself (Virtuoso's
  `/sparql` and `/sparql-auth` answer queries and updates alike).

Credentials (`auth`): basic, digest or bearer; the password or token inline or
read from a file (`password_file`, `token_file`: first line, relative to the
config file's folder). `user:password@` in an endpoint URL means basic; it is
taken out of the URL, so no URL the agent prints, writes or reports holds it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.auth import AuthBase, HTTPBasicAuth, HTTPDigestAuth

AUTH_SCHEMES = ("basic", "digest", "bearer")
# Graphs a store keeps for itself: never dropped when a dump empties the store, never compared.
# Virtuoso 7: its schema graphs, the LDP vocabulary, and the service description and DAV graphs
# it names after its default host (`system_graphs` in the config adds others, e.g. another host).
SYSTEM_GRAPHS: tuple[str, ...] = (
    "http://www.openlinksw.com/",
    "http://www.w3.org/ns/ldp#",
    "virtrdf:",
    "http://localhost:8890/sparql",
    "http://localhost:8890/DAV/",
    "urn:x-dms-update:",
)


@dataclass(frozen=True)
class Auth:
    """Credentials for the SPARQL endpoints; `secret` is the password or token (never shown)."""

    scheme: str
    username: str = ""
    secret: str = field(default="", repr=False)

    def requests_auth(self) -> AuthBase:
        if self.scheme == "digest":
            return HTTPDigestAuth(self.username, self.secret)
        if self.scheme == "bearer":
            return BearerAuth(self.secret)
        return HTTPBasicAuth(self.username, self.secret)


class BearerAuth(AuthBase):
    """`Authorization: Bearer TOKEN` on every request."""

    def __init__(self, token: str) -> None:
        self.token = token

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = f"Bearer {self.token}"
        return r


def _read_secret(name: str, value: Any, folder: Path | None, problems: list[str]) -> str | None:
    if not isinstance(value, str) or not value.strip():
        problems.append(f"auth.{name}: must be a non-empty string")
        return None
    path = Path(value.strip())
    if not path.is_absolute() and folder is not None:
        path = folder / path
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"auth.{name}: cannot read {path}: {getattr(exc, 'strerror', None) or exc}")
        return None
    secret = lines[0].strip() if lines else ""
    if not secret:
        problems.append(f"auth.{name}: {path} is empty")
        return None
    return secret


def parse_auth(raw: Any, folder: Path | None, problems: list[str]) -> Auth | None:
    """Check the `auth` object; add one line per fault to `problems` (never echoing a secret)."""
    if not isinstance(raw, dict):
        problems.append('auth: must be an object {"scheme", "username", "password" or "password_file"}')
        return None
    scheme = raw.get("scheme", "basic")
    if scheme not in AUTH_SCHEMES:
        problems.append(f"auth.scheme: must be one of {', '.join(AUTH_SCHEMES)}, not {json.dumps(scheme)}")
        return None
    inline, from_file = ("token", "token_file") if scheme == "bearer" else ("password", "password_file")
    if (raw.get(inline) is None) == (raw.get(from_file) is None):
        problems.append(f"auth: give exactly one of {inline} and {from_file} for {scheme}")
        return None
    if raw.get(inline) is not None:
        secret = raw[inline]
        if not isinstance(secret, str) or not secret:
            problems.append(f"auth.{inline}: must be a non-empty string")
            return None
    else:
        secret = _read_secret(from_file, raw[from_file], folder, problems)
        if secret is None:
            return None
    username: Any = ""
    if scheme != "bearer":
        username = raw.get("username")
        if not isinstance(username, str) or not username.strip():
            problems.append(f"auth.username: missing or not a non-empty string ({scheme} needs one)")
            return None
    return Auth(scheme, str(username).strip(), secret)


def split_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """The URL without `user:password@`, and (user, password) when it held them (still %-escaped)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    userinfo, _, host = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    return urlunsplit(parts._replace(netloc=host)), (user, password)


def derive_endpoints(
    service: str | None, query: str | None, update: str | None, gsp: str | None
) -> tuple[str, str, str]:
    """The query, update and Graph Store Protocol URLs (module docstring)."""
    if service is not None:
        base = service if service.endswith("/") else service + "/"
        return query or f"{base}query", update or f"{base}update", gsp or f"{base}data"
    if update is None or gsp is None:
        raise ValueError("a SPARQL backend needs service, or update_endpoint and gsp_endpoint")
    if query is None:
        parts = urlsplit(update)
        path = parts.path.rstrip("/")
        head, _, last = path.rpartition("/")
        if last == "update":
            query = urlunsplit(parts._replace(path=f"{head}/query"))
        elif last == "statements":
            query = urlunsplit(parts._replace(path=head))
        else:
            query = update
    return query, update, gsp


def is_system_graph(iri: str, system_graphs: tuple[str, ...]) -> bool:
    """True for a graph the store keeps for itself (an IRI in, or starting with one of, `system_graphs`)."""
    return any(iri.startswith(prefix) for prefix in system_graphs)
