"""runtime.offload.run_off_driver on a local Ray instance: the step runs in a fresh worker process of its own,
which reports its own peak memory and is gone afterwards."""

from __future__ import annotations

import os

import pytest

from medembed.runtime.memory import peak_rss_mib
from medembed.runtime.offload import OFF_DRIVER_ENV, run_off_driver

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def _hold_then_free(mib: int) -> tuple[int, float]:
    block = bytearray(mib * 2**20)
    block[::4096] = b"\1" * len(block[::4096])  # resident
    del block
    return os.getpid(), peak_rss_mib()


def _where_am_i() -> tuple[int, float, str | None]:
    return os.getpid(), peak_rss_mib(), os.environ.get(OFF_DRIVER_ENV)


def test_a_fresh_worker_not_an_idle_one_that_held_memory(ray_local):
    ray = ray_local
    # fill every worker the instance has with a 400 MiB peak: idle workers that a plain task would reuse
    big = ray.get([ray.remote(num_cpus=1)(_hold_then_free).remote(400) for _ in range(4)])
    assert min(p for _, p in big) >= 400
    (pid, peak, env), where = run_off_driver(_where_am_i, num_cpus=1)
    assert pid not in {p for p, _ in big} and pid != os.getpid(), "the step ran in a reused or the driver's process"
    assert env == "1" and where["process"] == "ray task"
    assert peak < 300 and where["peak_rss_mib"] == pytest.approx(peak, abs=1), (peak, where)  # its own, not 400
    (pid2, _, _), _ = run_off_driver(_where_am_i, num_cpus=1)
    assert pid2 != pid, "a second step reused the first one's worker (max_calls=1: it exits)"


def test_the_steps_error_is_raised_in_the_driver(ray_local):
    with pytest.raises(ZeroDivisionError):
        run_off_driver(divmod, 1, 0)
