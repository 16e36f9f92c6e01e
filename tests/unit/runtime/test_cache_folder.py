"""fill_cache_folder: a cache folder is made once, atomically, whoever races for it."""

from __future__ import annotations

import threading

import pytest

from medembed.runtime.storage import fill_cache_folder


def test_filled_once_then_reused(tmp_path):
    target = tmp_path / "cache" / "model_v1"
    calls = []

    def fill(tmp):
        calls.append(tmp)
        (tmp / "weights.bin").write_bytes(b"w" * 10)

    assert fill_cache_folder(target, fill, "s3://bucket/model") is True
    assert (target / "weights.bin").read_bytes() == b"w" * 10
    assert (target / ".complete").read_text() == "s3://bucket/model"
    assert fill_cache_folder(target, fill, "s3://bucket/model") is False and len(calls) == 1
    assert [p.name for p in target.parent.iterdir()] == ["model_v1"]  # no temp folder left


def test_a_failed_fill_leaves_nothing(tmp_path):
    target = tmp_path / "cache" / "model_v1"

    def fill(tmp):
        (tmp / "half.bin").write_bytes(b"x")
        raise OSError("connection reset")

    with pytest.raises(OSError, match="connection reset"):
        fill_cache_folder(target, fill, "m")
    assert not target.exists() and list(target.parent.iterdir()) == []


def test_racing_fills_end_with_one_complete_folder(tmp_path):
    target = tmp_path / "cache" / "model_v1"
    start = threading.Barrier(4)

    def fill(tmp):
        start.wait(timeout=10)
        (tmp / "weights.bin").write_bytes(b"w")

    threads = [threading.Thread(target=fill_cache_folder, args=(target, fill, "m")) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert (target / ".complete").exists() and (target / "weights.bin").read_bytes() == b"w"
    assert [p.name for p in target.parent.iterdir()] == ["model_v1"]
