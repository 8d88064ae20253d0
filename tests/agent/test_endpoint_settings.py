"""Endpoint settings that cannot be misread: the three URLs, `auth`, `verify`, `hook_wait_seconds`, redaction."""

from __future__ import annotations

import pytest

from dmsupdate.agent.config import Config, ConfigError
from dmsupdate.agent.runner import Runner
from dmsupdate.state.redact import redact
from tests.agent.conftest import ttl
from tests.agent.httpfakes import SPARQL_OK, Recorded, local_server

ROOT = {"s3root": "file:///srv/state"}


def load(**data) -> Config:
    return Config.from_dict({**ROOT, **data})


@pytest.mark.parametrize("service", ["http://h:3030/ds", "http://h:3030/ds/"])
def test_service_with_or_without_its_slash_gives_fuseki_urls(service):
    assert load(service=service).endpoints() == (
        "http://h:3030/ds/query",
        "http://h:3030/ds/update",
        "http://h:3030/ds/data",
    )


@pytest.mark.parametrize(
    ("update", "gsp", "query"),
    [
        ("http://h:7878/update", "http://h:7878/store", "http://h:7878/query"),  # Oxigraph server
        ("http://h/sparql-auth", "http://h/sparql-graph-crud-auth", "http://h/sparql-auth"),  # Virtuoso
        (
            "http://h/repositories/r/statements",
            "http://h/repositories/r/rdf-graphs/service",
            "http://h/repositories/r",
        ),
    ],
)
def test_a_missing_query_endpoint_is_derived_from_the_update_endpoint(update, gsp, query):
    assert load(update_endpoint=update, gsp_endpoint=gsp).endpoints() == (query, update, gsp)


def test_an_explicit_endpoint_wins_over_the_service_layout():
    config = load(service="http://h/ds", gsp_endpoint="http://h/other")
    assert config.endpoints() == ("http://h/ds/query", "http://h/ds/update", "http://h/other")


def test_defaults_of_the_new_keys():
    config = load(service="http://h/ds/")
    assert (config.verify, config.hook_wait_seconds, config.auth) == ("counts", 120.0, None)


def test_user_and_password_in_a_url_mean_basic_and_leave_the_url():
    config = load(service="http://agent:p%40ss@h/ds")
    assert config.service == "http://h/ds/"
    assert (config.auth.scheme, config.auth.username, config.auth.secret) == ("basic", "agent", "p@ss")
    assert "p@ss" not in repr(config) and "p%40ss" not in repr(config)


def test_password_and_token_files_are_read_relative_to_the_config(tmp_path):
    (tmp_path / "pw").write_text("s3cretPw\nignored\n")
    (tmp_path / "tok").write_text("t0kenValue\n")
    source = str(tmp_path / "config.json")
    digest = Config.from_dict(
        {
            **ROOT,
            "service": "http://h/",
            "auth": {"scheme": "digest", "username": "u", "password_file": "pw"},
        },
        source,
    )
    bearer = Config.from_dict(
        {**ROOT, "service": "http://h/", "auth": {"scheme": "bearer", "token_file": str(tmp_path / "tok")}},
        source,
    )
    assert (digest.auth.scheme, digest.auth.secret) == ("digest", "s3cretPw")
    assert (bearer.auth.scheme, bearer.auth.secret) == ("bearer", "t0kenValue")
    assert "s3cretPw" in digest.secrets


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"verify": "sometimes"}, "verify: must be one of counts, off"),
        ({"hook_wait_seconds": -1}, "hook_wait_seconds: must be a number >= 0"),
        ({"auth": {"scheme": "ntlm", "username": "u", "password": "x"}}, "auth.scheme: must be one of"),
        (
            {"auth": {"scheme": "basic", "username": "u"}},
            "auth: give exactly one of password and password_file",
        ),
        ({"auth": {"scheme": "basic", "password": "hunter22x"}}, "auth.username: missing"),
        ({"auth": {"scheme": "bearer", "password": "x"}}, "auth: give exactly one of token and token_file"),
        ({"auth": {"scheme": "basic", "username": "u", "password_file": "/nonexistent/pw"}}, "cannot read"),
        (
            {"update_endpoint": "http://u:a@h/update", "gsp_endpoint": "http://u:b@h/store"},
            "different credentials",
        ),
    ],
)
def test_bad_settings_are_named_without_echoing_a_secret(extra, message):
    base = {} if "update_endpoint" in extra else {"service": "http://h/ds/"}
    with pytest.raises(ConfigError) as caught:
        load(**base, **extra)
    text = "; ".join(caught.value.problems)
    assert message in text
    assert "hunter22x" not in text


def test_credentials_given_twice_are_refused():
    with pytest.raises(ConfigError, match="credentials are also given in service"):
        load(service="http://u:pw@h/ds", auth={"scheme": "basic", "username": "u", "password": "pw"})


def test_a_bad_url_with_a_password_is_reported_without_it():
    with pytest.raises(ConfigError) as caught:
        load(service="ftp://agent:hunter22x@h/ds")
    assert "hunter22x" not in str(caught.value.problems) and "ftp://***@h/ds" in caught.value.problems[0]


def test_redact_takes_out_userinfo_authorization_parameters_and_known_secrets():
    text = (
        "cannot reach http://agent:pw%21@h:8890/sparql?graph=http://e.org/g#x (Authorization: Basic YWdlbnQ6cHc=)"
        " token=abcdef123 and the secret s3cretPw in an echoed body; mailto:a@b.org stays"
    )
    out = redact(text, ["s3cretPw"])
    assert out == (
        "cannot reach http://***@h:8890/sparql?graph=http://e.org/g#x (Authorization: ***)"
        " token=*** and the secret *** in an echoed body; mailto:a@b.org stays"
    )


@pytest.mark.parametrize(
    ("auth", "header"),
    [
        ({"scheme": "bearer", "token": "t0kenValue"}, "Bearer t0kenValue"),
        ({"scheme": "basic", "username": "agent", "password": "pw"}, "Basic YWdlbnQ6cHc="),
    ],
)
def test_every_request_to_every_endpoint_carries_the_credentials(file_state, make_config, auth, header):
    file_state.publish_dump(0, [])
    file_state.publish(10, "add", ttl("ex:a ex:p ex:b ."), arg="http://example.org/g", fmt="ttl")
    file_state.publish(
        20, "update", "INSERT DATA { <http://example.org/a> <http://example.org/p> 1 }", fmt="ru"
    )
    store = Recorded(status=200, answer=SPARQL_OK)
    with local_server(store) as base:
        config = make_config(file_state, service=f"{base}/ds", auth=auth, verify="off")
        status = Runner(config).update()

    assert status["lastSucceeded"] is True, status
    paths = {r["path"].split("?")[0] for r in store.requests}
    assert {"/ds/query", "/ds/update", "/ds/data"} <= paths
    assert all(r["headers"].get("Authorization") == header for r in store.requests)
    uploads = [r for r in store.requests if r["path"].startswith("/ds/data?graph=")]
    assert uploads and all(r["headers"].get("Content-Length") == str(len(r["body"])) for r in uploads)
    assert all("Transfer-Encoding" not in r["headers"] for r in store.requests)


def test_after_a_hook_the_agent_waits_hook_wait_seconds_for_the_store_then_fails_clearly(
    file_state, make_config, tmp_path
):
    from tests.conftest import free_port

    dump = file_state.publish_dump(0, [])
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "install_dump").write_text("#!/bin/sh\nexit 0\n")
    (bindir / "install_dump").chmod(0o755)
    down = f"http://127.0.0.1:{free_port()}"
    config = make_config(file_state, service=f"{down}/ds", bindir=str(bindir), hook_wait_seconds=0.2)

    status = Runner(config).update()

    assert status["failedKey"] == dump
    assert (
        f"the SPARQL service at {down}/ds/query does not answer 0.2 s after the install hook"
        in status["error"]
    )


def test_the_environments_proxy_carries_every_request_and_no_proxy_is_honoured(monkeypatch):
    from dmsupdate.agent.sparql_http import SparqlClient

    proxy = Recorded(status=204)
    with local_server(proxy) as proxy_url:
        monkeypatch.setenv("HTTP_PROXY", proxy_url)
        monkeypatch.setenv("NO_PROXY", "direct.invalid")
        client = SparqlClient(load(service="http://store.invalid:3030/ds/"))
        client.update("INSERT DATA { <urn:a> <urn:b> <urn:c> }", "update")
        client.update("INSERT DATA { <urn:a> <urn:b> <urn:d> }", "update")
        assert [r["path"] for r in proxy.requests] == ["http://store.invalid:3030/ds/update"] * 2
        direct = SparqlClient(load(service="http://direct.invalid:3030/ds/"))
        with pytest.raises(Exception, match="cannot reach"):
            direct.update("INSERT DATA { <urn:a> <urn:b> <urn:c> }", "update")
        assert len(proxy.requests) == 2  # NO_PROXY: sent straight to the (unresolvable) host
