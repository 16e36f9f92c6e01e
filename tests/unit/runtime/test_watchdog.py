"""The progress watchdog passes items through, forwards errors and fails a stalled iterator in bounded time."""

from __future__ import annotations

import threading
import time

import pytest

from medembed.runtime.watchdog import StalledError, watch


def test_items_pass_through_in_order():
    assert list(watch(iter(range(200)), 5, "rows")) == list(range(200))
    assert list(watch(iter([1, 2]), None, "rows")) == [1, 2]


def test_errors_of_the_iterator_reach_the_caller():
    def boom():
        yield 1
        raise ValueError("bad block 7")

    with pytest.raises(ValueError, match="bad block 7"):
        list(watch(boom(), 5, "rows"))


def test_a_stall_fails_within_the_limit_and_names_the_work():
    release = threading.Event()

    def stalls():
        yield "a"
        release.wait(60)  # a pool that never hands out another block
        yield "b"

    got = []
    t0 = time.monotonic()
    with pytest.raises(StalledError, match=r"no progress on writing s3://b/t.lance for \d+ s \(limit 0.5 s\)"):
        for item in watch(stalls(), 0.5, "writing s3://b/t.lance"):
            got.append(item)
    assert got == ["a"]
    assert 0.4 < time.monotonic() - t0 < 10
    release.set()


def test_slow_but_steady_progress_is_not_a_stall():
    def steady():
        for i in range(5):
            time.sleep(0.2)
            yield i

    assert list(watch(steady(), 1.0, "rows")) == [0, 1, 2, 3, 4]  # 1 s in total, never 1 s between items
