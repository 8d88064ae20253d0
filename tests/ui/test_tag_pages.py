"""The publications and objects pages filter by tags (any, all, none) and show the tags given."""

from __future__ import annotations

from publications.models import PublicationEvent, StateObject


def tag(rows, *tags):
    for row in rows:
        row.tags = sorted({*row.tags, *tags})
        row.save(update_fields=["tags"])


def test_the_objects_page_filters_by_tags_and_shows_given_tags(viewer_client, updates):
    first, second, *rest = updates
    tag([first], "red", "big")
    tag([second], "red")
    html = viewer_client.get("/objects/", {"tags_all": "red,big"}).content.decode()
    assert first.key in html and second.key not in html
    assert '<span class="tag">big</span>' in html
    html = viewer_client.get("/objects/", {"tags_any": "red", "tags_exclude": "big"}).content.decode()
    assert second.key in html and first.key not in html
    day = next(t for t in first.tags if t.startswith("day:"))
    html = viewer_client.get("/objects/", {"tags_all": f"{day},red"}).content.decode()
    assert first.key in html and all(u.key not in html for u in rest)


def test_a_wrong_tag_on_a_page_is_a_notice_not_an_error(viewer_client, updates):
    answer = viewer_client.get("/objects/", {"tags_all": "Not A Tag"})
    assert answer.status_code == 200
    assert "Tag filter ignored" in answer.content.decode()
    answer = viewer_client.get("/publications/", {"tags_exclude": "%%%"})
    assert answer.status_code == 200
    assert "Tag filter ignored" in answer.content.decode()


def test_the_publications_page_filters_by_tags(viewer_client, fleet, updates):
    events = list(PublicationEvent.objects.order_by("effective_ns"))
    tag(events[:1], "flood-alert")
    html = viewer_client.get("/publications/", {"tags_any": "flood-alert"}).content.decode()
    assert events[0].key in html and events[1].key not in html
    assert (
        StateObject.objects.filter(tags__has_any=["flood-alert"]).count() == 0
    )  # only the event was tagged here
