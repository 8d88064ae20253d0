"""The demo's SQLite database: the tags column migrates and the three tag filters answer as on PostgreSQL."""

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
from django.utils import timezone
from dmsupdate.state.keys import EffectiveTime, format_key
from publications.models import Dataset, ObjectState, StateObject
from publications.tags import filter_by_tags
dataset = Dataset.objects.create(name="x", s3root="file:///srv/x")
base = EffectiveTime.parse_text("2026-12-01T09:00:00Z").nanos
for n, tags in enumerate([["red", "big"], ["red"], ["blue"]]):
    key = format_key(EffectiveTime(base + n * 86_400 * 10**9), "f", "update", None, "ru")
    row = StateObject.for_key(dataset, key, ObjectState.PUBLISHED, timezone.now())
    row.tags = sorted(set(row.tags) | set(tags))
    row.save()
rows = StateObject.objects.order_by("key")
names = lambda q: [sorted(t for t in r.tags if ":" not in t) for r in q]
print(json.dumps({
    "all": names(filter_by_tags(rows, all_of="red,big")),
    "any": names(filter_by_tags(rows, any_of="blue,big")),
    "exclude": names(filter_by_tags(rows, exclude="red")),
    "day": names(filter_by_tags(rows, all_of="day:2026-12-02", exclude="blue")),
    "tags": rows.first().tags,
}))
"""


def test_tag_filters_work_on_sqlite(tmp_path):
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite3'}",
        "DJANGO_SETTINGS_MODULE": "dmsupdate.settings",
    }
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["all"] == [["big", "red"]]
    assert answer["any"] == [["big", "red"], ["blue"]]
    assert answer["exclude"] == [["blue"]]
    assert answer["day"] == [["red"]]
    assert answer["tags"] == [
        "big",
        "day:2026-12-01",
        "hour:2026-12-01T09",
        "month:2026-12",
        "red",
        "week:2026-W49",
    ]
