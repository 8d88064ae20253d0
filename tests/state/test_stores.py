"""Object stores: key-ordered listing, StartAfter, exclusive writes, batched deletes, verified reads."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import pytest

from dmsupdate.state.stores import (
    IntegrityError,
    ObjectExists,
    ObjectInfo,
    ObjectNotFound,
    StoreError,
    open_store,
    open_verified,
)

KEYS = [
    "images/2020-01-01-00-00-00-1_a_dump.nq.gz",
    "images/2020-01-01/00-00-00-1/a_image.tgz",
    "updates/2020-01-01/00-00-00-1/a_update.ru",
    "updates/2020-01-01/00-00-00-1/a-b_update.ru",
    "updates/2020-01-02/00-00-00-5/a_add_g.ttl",
]


def put(store, key: str, body: bytes) -> ObjectInfo:
    return store.put_new(key, io.BytesIO(body), len(body))


def test_listing_is_in_key_order_and_honours_start_after(any_root):
    store = open_store(*any_root)
    for key in reversed(KEYS):
        put(store, key, key.encode())
    assert [o.key for o in store.list()] == sorted(KEYS)
    assert [o.key for o in store.list("updates/")] == sorted(k for k in KEYS if k.startswith("updates/"))
    after = "updates/2020-01-01/00-00-00-1/a-b_update.ru"
    assert [o.key for o in store.list("updates/", start_after=after)] == [
        k for k in sorted(KEYS) if k.startswith("updates/") and k > after
    ]


def test_listing_reports_each_object_size_and_time_as_head_does(any_root):
    store = open_store(*any_root)
    for key in KEYS:
        put(store, key, key.encode() * 3)
    listed = {o.key: o for o in store.list()}
    for key in KEYS:
        head = store.head(key)
        assert listed[key].size == head.size == len(key) * 3
        assert listed[key].last_modified is not None
        assert abs((listed[key].last_modified - head.last_modified).total_seconds()) < 1


def test_exclusive_write_never_overwrites(any_root):
    store = open_store(*any_root)
    put(store, KEYS[2], b"first")
    with pytest.raises(ObjectExists):
        put(store, KEYS[2], b"second")
    with store.open(KEYS[2]) as f:
        assert f.read() == b"first"


def test_delete_many_uses_one_call_per_thousand_keys(any_root):
    store = open_store(*any_root)
    keys = [f"updates/2020-01-01/00-00-00-{i}/a_update.ru" for i in range(1, 1002)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda key: put(store, key, b"x"), keys))
    before = store.stats.delete_calls
    assert store.delete_many(keys) == []
    assert store.stats.delete_calls - before == 2
    assert list(store.list()) == []


def test_verified_read_decodes_gzip_and_checks_size(any_root):
    import gzip

    store = open_store(*any_root)
    body = gzip.compress(b"<a> <b> <c> .\n" * 1000)
    info = put(store, "updates/2020-01-01/00-00-00-1/a_add_g.nt.gz", body)
    listed = next(iter(store.list()))
    with open_verified(store, listed) as f:
        assert f.read() == b"<a> <b> <c> .\n" * 1000
    lying = ObjectInfo(key=info.key, size=len(body) + 1, etag=listed.etag)
    with pytest.raises(IntegrityError), open_verified(store, lying, decompress=False) as f:
        f.read()


def test_md5_mismatch_is_detected(s3_root):
    store = open_store(*s3_root)
    put(store, KEYS[2], b"content")
    info = store.head(KEYS[2])
    assert info.md5 is not None
    forged = ObjectInfo(key=info.key, size=info.size, etag="0" * 32)
    with pytest.raises(IntegrityError), open_verified(store, forged) as f:
        f.read()


def test_missing_objects_and_bad_roots_are_clear_errors(any_root, moto_server):
    store = open_store(*any_root)
    with pytest.raises(ObjectNotFound):
        store.head("updates/nothing")
    with pytest.raises(StoreError, match="state root must be"):
        open_store("http://example.org/x")
    with pytest.raises(StoreError, match="does not exist"):
        list(open_store("s3://no-such-bucket-here/x", moto_server).list())


def test_unreachable_s3_is_reported_as_unavailable(monkeypatch):
    from dmsupdate.state.stores import StoreUnavailable
    from tests.conftest import free_port

    store = open_store("s3://bucket/prefix", f"http://127.0.0.1:{free_port()}")
    store.client.meta.config.retries = {"max_attempts": 1}
    with pytest.raises(StoreUnavailable):
        list(store.list())
