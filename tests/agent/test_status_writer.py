"""status.json written by a thread of its own while a run goes (dmsupdate.agent.status.StatusWriter)."""

from __future__ import annotations

import json
import threading

import pytest

from dmsupdate.agent import status as status_module
from dmsupdate.agent.status import StatusWriter, read_status


def test_the_file_holds_the_last_saved_status_once_flushed(tmp_path):
    path = tmp_path / "status.json"
    writer = StatusWriter(path)
    status = {"applied": 0, "recent": []}
    for i in range(1, 201):
        status["applied"] = i
        status["recent"] = status["recent"] + [f"k{i}"]
        writer.save(status)
    writer.flush()
    assert json.loads(path.read_text()) == {"applied": 200, "recent": [f"k{i}" for i in range(1, 201)]}
    writer.close()
    assert not list(tmp_path.glob(".status-*"))


def test_a_snapshot_is_the_status_as_it_was_when_saved(tmp_path):
    path = tmp_path / "status.json"
    writer = StatusWriter(path)
    status = {"applied": 1}
    writer.save(status)
    status["applied"] = 2  # the run goes on changing its status after the save
    writer.close()
    assert read_status(path)["applied"] == 1


def test_snapshots_land_in_order_and_a_newer_one_replaces_an_unwritten_older_one(tmp_path, monkeypatch):
    path = tmp_path / "status.json"
    written: list[int] = []
    release = threading.Event()
    entered = threading.Event()
    real = status_module._write_bytes

    def slow_write(target, text):
        entered.set()
        release.wait(5)
        real(target, text)
        written.append(json.loads(text)["applied"])

    monkeypatch.setattr(status_module, "_write_bytes", slow_write)
    writer = StatusWriter(path)
    writer.save({"applied": 1})
    assert entered.wait(5)  # taken by the thread, held in the write
    for i in range(2, 6):
        writer.save({"applied": i})  # waiting; each replaces the one before it
    release.set()
    writer.flush()
    writer.close()
    assert written[0] == 1 and written[-1] == 5
    assert written == [1, 5]
    assert read_status(path)["applied"] == 5


def test_a_failed_write_fails_the_next_save_or_flush(tmp_path, monkeypatch):
    path = tmp_path / "status.json"

    def full_disk(target, text):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(status_module, "_write_bytes", full_disk)
    writer = StatusWriter(path)
    writer.save({"applied": 1})
    with pytest.raises(OSError, match="No space left"):
        writer.flush()
    monkeypatch.undo()
    writer.save({"applied": 2})  # the error is reported once; later writes go on
    writer.close()
    assert read_status(path)["applied"] == 2


def test_close_stops_the_thread(tmp_path):
    writer = StatusWriter(tmp_path / "status.json")
    writer.save({"applied": 1})
    writer.close()
    assert not any(t.name == "status.json" for t in threading.enumerate())
