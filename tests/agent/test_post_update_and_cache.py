"""The post_update hook (hookError, never failing the update) and the image cache in logArea/cache/."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from dmsupdate.agent.cache import ImageCache
from dmsupdate.agent.runner import Runner
from dmsupdate.state.stores import REQUESTS
from tests.agent.conftest import ex, quad, store_quads, ttl

G = "http://example.org/graph/g"


def hook(bindir: Path, script: str) -> Path:
    bindir.mkdir(parents=True, exist_ok=True)
    path = bindir / "post_update"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_post_update_gets_the_new_status_on_stdin_after_a_successful_run(file_state, make_config, tmp_path):
    file_state.publish_image(0, [], tmp_path)
    add = file_state.publish(10, "add", ttl("ex:a ex:p ex:o ."), arg=G, fmt="ttl")
    config = make_config(file_state)
    seen = tmp_path / "seen.json"
    hook(Path(config.bindir), f'cat > "{seen}"\n')
    status = Runner(config).update()
    assert status["lastSucceeded"] is True and status["hookError"] is None
    given = json.loads(seen.read_text())
    assert given["recent"] == [add] and given["lastSucceeded"] is True and given["running"] is False


def test_a_failing_hook_is_reported_as_hook_error_and_the_update_stands(file_state, make_config, tmp_path):
    file_state.publish_image(0, [], tmp_path)
    add = file_state.publish(10, "add", ttl("ex:a ex:p ex:o ."), arg=G, fmt="ttl")
    config = make_config(file_state)
    hook(Path(config.bindir), "echo 'cache server down' >&2\nexit 3\n")
    status = Runner(config).update()
    assert status["lastSucceeded"] is True
    assert status["recent"] == [add]
    assert status["hookError"] == "post_update exited with 3: cache server down"
    assert "<http://example.org/a>" in " ".join(store_quads(config.db_dir))
    on_disk = json.loads(Path(config.status_path).read_text())
    assert on_disk["hookError"] == status["hookError"]


def test_the_hook_does_not_run_after_a_failed_run(file_state, make_config, tmp_path):
    file_state.publish_image(0, [], tmp_path)
    file_state.publish(10, "update", "THIS IS NOT SPARQL", fmt="ru")
    config = make_config(file_state)
    ran = tmp_path / "ran"
    hook(Path(config.bindir), f'touch "{ran}"\n')
    status = Runner(config).update()
    assert status["lastSucceeded"] is False and status["hookError"] is None
    assert not ran.exists()


def gets() -> int:
    return REQUESTS[("s3", "get")]


def test_rebuild_of_an_unchanged_image_downloads_nothing(state, make_config, tmp_path):
    image = state.publish_image(0, [quad("a", "p", "o", G)], tmp_path)
    config = make_config(state)
    Runner(config).rebuild()
    assert len(list((Path(config.log_area) / "cache").glob("*.data"))) == 1
    before = gets()
    status = Runner(config).rebuild()
    assert status["lastSucceeded"] is True and status["image"] == image
    if state.root.startswith("s3://"):
        assert gets() == before  # the image came from logArea/cache/, not from S3
    assert f"<{ex('a').value}>" in " ".join(store_quads(config.db_dir))


def test_a_tampered_cache_entry_is_downloaded_again(state, make_config, tmp_path):
    state.publish_image(0, [quad("a", "p", "o", G)], tmp_path)
    config = make_config(state)
    Runner(config).rebuild()
    (data,) = (Path(config.log_area) / "cache").glob("*.data")
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))
    before = gets()
    status = Runner(config).rebuild()
    assert status["lastSucceeded"] is True
    if state.root.startswith("s3://"):
        assert gets() == before + 1
    assert f"<{ex('a').value}>" in " ".join(store_quads(config.db_dir))


def test_the_cache_is_bounded_and_keeps_the_newest(file_state, make_config, tmp_path):
    first = file_state.publish_image(0, [quad("a", "p", "o", G)], tmp_path)
    config = make_config(file_state)
    Runner(config).rebuild()
    size = os.path.getsize(next((Path(config.log_area) / "cache").glob("*.data")))
    bounded = make_config(file_state, cache_max_bytes=size + size // 2)
    second = file_state.publish_image(60, [quad("b", "p", "o", G)], tmp_path)
    Runner(bounded).rebuild()
    cache = ImageCache(bounded.cache_dir, bounded.cache_max_bytes)
    assert [key for _, _, key in cache.entries()] == [second]
    assert first != second
    none = make_config(file_state, cache_max_bytes=0)
    assert Runner(none).rebuild()["lastSucceeded"] is True
