"""`manage.py demo`: a populated, idempotent demo whose servers stand at different points of the replay."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from accounts.models import ApiToken, Role, hash_token
from publications.models import Dataset, ObjectState, StateObject

pytestmark = pytest.mark.django_db


@pytest.fixture
def demo_var(settings, tmp_path):
    """The demo's var/ directory, private to the test."""
    settings.VAR_DIR = tmp_path / "var"
    # Fast hashing: the demo sets two passwords per build.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return settings.VAR_DIR


def build(capsys) -> tuple[str, str]:
    call_command("demo", "--days", "3", "--stations", "3", "--port", "18000")
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("login: admin / "))
    return out, line.removeprefix("login: admin / ")


def test_demo_builds_a_dataset_whose_servers_show_three_different_lags(demo_var, capsys):
    from servers.lag import lag_for
    from servers.models import Server

    out, password = build(capsys)

    dataset = Dataset.objects.get(name="flood-demo")
    state = demo_var / "demo" / "state"
    files = sorted(str(p.relative_to(state)) for p in state.rglob("*") if p.is_file())
    assert len(files) >= 20
    registered = sorted(StateObject.objects.filter(dataset=dataset).values_list("key", flat=True))
    assert registered == files
    assert not StateObject.objects.exclude(state=ObjectState.PUBLISHED).exists()
    assert any("%2E" in key and "_drop_" in key for key in files)
    assert any(key.endswith("_update.ru.gz") for key in files)
    assert any("_postproc_" in key for key in files)
    assert files[0].startswith("images/") and files[0].endswith("demo_dump.nq.gz")

    lags = {s.name: lag_for(s) for s in Server.objects.filter(dataset=dataset)}
    assert lags["flood-a"].pending_updates == 0 and lags["flood-a"].state == "ok"
    assert 0 < lags["flood-b"].pending_updates < lags["flood-c"].pending_updates
    assert 0 < lags["flood-b"].lag_seconds < lags["flood-c"].lag_seconds
    assert {lag.state for name, lag in lags.items() if name != "flood-a"} == {"behind"}

    assert (demo_var / "demo" / "login.txt").read_text().startswith(f"login: admin / {password}\n")
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser and admin.check_password(password)
    viewer = get_user_model().objects.get(username="viewer")
    assert list(viewer.groups.values_list("name", flat=True)) == ["viewer"]
    assert "flood-c: replayed up to" in out


def test_each_demo_agent_has_its_own_config_with_working_tokens(demo_var, capsys):
    from servers.models import Server

    build(capsys)

    for server in Server.objects.all():
        config = json.loads((demo_var / "demo" / "agents" / server.name / "config.json").read_text())
        assert config["s3root"] == f"file://{demo_var / 'demo' / 'state'}"
        assert config["dblocation"] == str(demo_var / "demo" / "agents" / server.name)
        assert config["logArea"].startswith(config["dblocation"])
        assert config["agent_token"] == server.agent_token
        assert config["controlplane"]["url"] == "http://127.0.0.1:18000"
        assert config["controlplane"]["server"] == server.name
        token = ApiToken.objects.get(key_hash=hash_token(config["controlplane"]["token"]))
        assert (token.role, token.server) == (Role.AGENT, server)
        status = json.loads((demo_var / "demo" / "agents" / server.name / "log" / "status.json").read_text())
        assert status["effectiveDate"] == server.effective.path


def test_running_demo_again_starts_afresh(demo_var, capsys):
    from servers.models import Server

    build(capsys)
    first_keys = StateObject.objects.count()
    _, password = build(capsys)

    assert Dataset.objects.filter(name="flood-demo").count() == 1
    assert Server.objects.count() == 3
    assert StateObject.objects.count() == first_keys
    assert ApiToken.objects.filter(role=Role.AGENT).count() == 3
    assert get_user_model().objects.get(username="admin").check_password(password)


def test_a_rebuilt_demo_keeps_the_logins_of_the_last_one(demo_var, capsys):
    _, first = build(capsys)
    viewer = (demo_var / "demo" / "login.txt").read_text().splitlines()[1]

    out, second = build(capsys)

    assert second == first and f"login: admin / {first}" in out
    assert (demo_var / "demo" / "login.txt").read_text().splitlines()[1] == viewer
    users = get_user_model().objects
    assert users.get(username="admin").check_password(first)
    assert users.get(username="viewer").check_password(viewer.removeprefix("viewer: viewer / "))
