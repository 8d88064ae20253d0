"""Readiness reported by agents shows beside each server's state: in the API and on the fleet page."""

from __future__ import annotations

from dmsupdate.state.status import InvalidStatus, parse_status
from servers.models import Server


def report(agent, ready):
    body = {"effectiveDate": "2026-12-01/09-00-00-000000000", "lastSucceeded": True, "applied": 0}
    if ready is not None:
        body["ready"] = ready
    answer = agent.client.post("/api/v1/servers/web1/report/", body, format="json")
    assert answer.status_code == 200, answer.content
    return answer.json()


def test_a_report_carries_readiness_to_the_api_and_the_fleet_page(agent, operator, client, two_servers):
    answer = report(agent, {"ready": False, "reason": "1200 s behind the newest update in the root"})
    assert answer["dataset"] == "flood"  # where a pull agent polls the head
    server = operator.client.get("/api/v1/servers/web1/").json()
    assert server["ready"] is False and "1200 s behind" in server["ready_reason"]
    listed = {s["name"]: s for s in operator.client.get("/api/v1/servers/").json()["results"]}
    assert listed["web1"]["ready"] is False and listed["web2"]["ready"] is None
    client.force_login(operator.user)
    operator.user.is_superuser = True
    operator.user.save()
    html = client.get("/").content.decode()
    row = html.split('id="server-web1"')[1].split("</tr>")[0]
    assert 'class="not-ready" title="1200 s behind the newest update in the root"' in row
    report(agent, {"ready": True, "reason": None})
    assert Server.objects.get(name="web1").ready is True
    html = client.get("/").content.decode()
    assert '<span class="ready"' in html.split('id="server-web1"')[1].split("</tr>")[0]


def test_a_wrong_readiness_is_refused():
    for wrong in ("yes", {"ready": "yes"}, {"ready": True, "reason": 3}):
        try:
            parse_status({"ready": wrong})
        except InvalidStatus:
            continue
        raise AssertionError(f"accepted {wrong!r}")
    assert parse_status({}).ready is None
