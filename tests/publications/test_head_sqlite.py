"""The demo's SQLite database: head/ polling authenticates, notes the use, throttles and answers 304 as on PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = """
import json, django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django.contrib.auth import get_user_model
from django.utils import timezone
from rest_framework.test import APIClient
from accounts.models import ApiToken, Role
from publications.models import Dataset
from servers.models import Server
flood = Dataset.objects.create(name="flood", s3root="file:///srv/flood")
Dataset.objects.create(name="rivers", s3root="file:///srv/rivers")
server = Server.objects.create(name="web1", dataset=flood)
token, key = ApiToken.issue(get_user_model().objects.create(username="agent"), Role.AGENT, server=server)
client = APIClient()
client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
first = client.get("/api/v1/datasets/flood/head/")
statuses = [first.status_code]
statuses += [client.get("/api/v1/datasets/flood/head/", HTTP_IF_NONE_MATCH=first["ETag"]).status_code]
statuses += [client.get("/api/v1/datasets/rivers/head/").status_code]
throttled = client.get("/api/v1/datasets/flood/head/")
noted = ApiToken.objects.get(pk=token.pk).last_used_at is not None
ApiToken.objects.filter(pk=token.pk).update(revoked_at=timezone.now())
print(json.dumps({
    "statuses": statuses,
    "throttled": [throttled.status_code, throttled["Retry-After"], throttled.json()["error"]],
    "noted": noted,
    "revoked": client.get("/api/v1/datasets/flood/head/").status_code,
}))
"""


def test_head_polling_works_on_sqlite(tmp_path):
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite3'}",
        "DJANGO_SETTINGS_MODULE": "dmsupdate.settings",
        "DMSUPDATE_THROTTLE_TOKEN": "3/min",
    }
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["statuses"] == [200, 304, 404]
    status, retry_after, error = answer["throttled"]
    assert (status, error) == (429, "throttled") and 1 <= int(retry_after) <= 20
    assert answer["noted"] is True
    assert answer["revoked"] == 401
