"""Status reports with absurd values, and keys no time can hold: a 400/413 JSON answer or an `invalid` row, never a 500."""

from __future__ import annotations

import io
import json

import pytest

from publications.models import ObjectState, StateObject
from publications.sync import sync_dataset
from servers.models import Server, StatusReport

GOOD = {"effectiveDate": "2016-01-15/04-00-01-262711077", "lastSucceeded": True, "applied": 1}
ABSURD = {
    "effectiveDate year 9999": {"effectiveDate": "9999-12-31/23-59-59-999999999"},
    "effectiveDate year 0001": {"effectiveDate": "0001-01-01T00:00:00Z"},
    "effectiveDate offset +99:00": {"effectiveDate": "2016-01-15T04:00:01+99:00"},
    "lastUpdate year 9999": {"lastUpdate": "9999-12-31T23:59:59.999999Z"},
    "lastUpdate offset +99:00": {"lastUpdate": "2016-01-15T04:00:01+99:00"},
    "lastUpdate offset -23:59 at year 1": {"lastUpdate": "0001-01-01T00:00:00-23:59"},
    "effectiveDate as a number": {"effectiveDate": 1e308},
    "applied past 32 bits": {"applied": 2**40},
    "store quads past 64 bits": {"store": {"kind": "embedded", "quads": 2**70}},
    "progress as a list": {"progress": [1, 2]},
    "NUL in the error": {"error": "a\x00b \\u0000", "failedKey": "k\x00", "extra": {"k\x00": ["\x00"]}},
    "a list, not an object": [1, 2, 3],
}


def report(agent, body, server: str = "web1"):
    return agent.client.post(f"/api/v1/servers/{server}/report/", body, format="json")


@pytest.mark.parametrize("case", ABSURD, ids=list(ABSURD))
@pytest.mark.django_db
def test_an_absurd_report_is_a_400_and_changes_nothing(case, agent):
    before = Server.objects.get(name="web1")
    body = ABSURD[case] if isinstance(ABSURD[case], list) else {**GOOD, **ABSURD[case]}
    response = report(agent, body)
    if response.status_code == 200:
        # Only what can be stored harmlessly may be accepted (NULs dropped).
        assert case == "NUL in the error", response.json()
        assert "\x00" not in Server.objects.get(name="web1").last_error
        return
    assert response.status_code == 400, response.content[:300]
    assert response.json()["error"] == "invalid_report"
    after = Server.objects.get(name="web1")
    assert (after.effective_ns, after.last_report_at) == (before.effective_ns, before.last_report_at)
    assert StatusReport.objects.count() == 0
    assert report(agent, GOOD).status_code == 200  # the agent's next honest report is taken


@pytest.mark.django_db
def test_a_20_mb_report_is_a_413_before_it_is_parsed(agent, settings):
    body = json.dumps({**GOOD, "recent": ["updates/x" * 10] * 230_000}).encode()
    assert len(body) > 20_000_000
    response = agent.client.generic(
        "POST", "/api/v1/servers/web1/report/", body, content_type="application/json"
    )
    assert response.status_code == 413, response.content[:300]
    assert response.json()["error"] == "too_large"
    assert StatusReport.objects.count() == 0


@pytest.mark.django_db
def test_a_report_that_is_not_json_is_a_400(agent):
    response = agent.client.generic(
        "POST", "/api/v1/servers/web1/report/", b"{not json", content_type="application/json"
    )
    assert response.status_code == 400 and response.json()["error"] == "parse_error"


@pytest.mark.django_db
def test_sync_state_records_keys_no_time_can_hold_as_invalid(dataset):
    store = dataset.open_store()
    keys = [
        "updates/2016-01-15/04-00-01-0/x_update.ru",
        "updates/2300-01-01/00-00-00-0/x_update.ru",
        "updates/9999-12-31/23-59-59-999999999/x_add_http:%2F%2Fe%2Fg.ttl",
        "images/9999-12-31/23-59-59-9/x_image.tgz",
    ]
    for key in keys:
        store.put_new(key, io.BytesIO(b"x"), 1)
    sync_dataset(dataset, full=True)
    rows = {o.key: o for o in StateObject.objects.filter(dataset=dataset)}
    assert rows[keys[0]].state == ObjectState.PUBLISHED
    for key in keys[1:]:
        assert rows[key].state == ObjectState.INVALID and "2262" in rows[key].error, key
        assert rows[key].effective_ns is None
    sync_dataset(dataset, full=False)  # and the next incremental run is not wedged either
