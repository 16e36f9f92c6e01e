"""Run a table-wide step in a Ray worker process of its own, not in the job's driver.

A job's driver runs on the head node (``ray job submit``) or beside cron (``medembed reembed``) and should
hold what the job coordinates, not what the table holds. Some steps hold memory that grows with the table:
Lance's full-text index builder keeps its posting lists until it flushes, ``optimize_indices`` loads the
index it extends, and an exact sample search buffers a scan of every vector (measured in a nightly run at
1M rows: the driver went from 272 MiB to ~600 MiB in the full-text update and ~1 GiB in the sample
searches). Past ``store.index_off_driver_rows`` a job runs them with :func:`run_off_driver`: one Ray task
(``store.index_num_cpus``, and ``store.index_memory_gb`` as Ray's memory resource when set, so a cluster
places it on a node that has the memory) in a fresh worker process (a runtime_env of its own, so no idle
worker of earlier tasks is reused) that exits afterwards (``max_calls=1``), so what it held goes back to the
system. The task reports its own peak RSS, which the job records in its manifest.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import ray

from medembed.runtime.memory import peak_rss_mib

OFF_DRIVER_ENV = "MEDEMBED_OFF_DRIVER_TASK"  # set in the worker of an off-driver task (and nowhere else)


def _call(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, float, float]:
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, peak_rss_mib(), time.perf_counter() - t0


def run_off_driver(fn: Callable[..., Any], *args: Any, num_cpus: float = 1.0, memory_gb: float | None = None,
                   **kwargs: Any) -> tuple[Any, dict[str, Any]]:
    """``fn(*args, **kwargs)`` in a fresh Ray worker process; returns (its result, where it ran).

    "Where it ran" is ``{"process": "ray task", "peak_rss_mib": ..., "seconds": ..., "num_cpus": ...}``: the
    worker's own peak RSS and the call's time in it (the task's start is not counted). ``fn``'s exception is
    raised here (Ray's task error is also an instance of the original exception's class).
    """
    # a runtime_env of its own (merged with the job's) gives the task a worker pool of its own: a fresh process,
    # not an idle worker that holds what earlier tasks left (its peak would be theirs), and gone after the call
    opts: dict[str, Any] = {"num_cpus": num_cpus, "name": getattr(fn, "__name__", "off_driver"),
                            "runtime_env": {"env_vars": {OFF_DRIVER_ENV: "1"}}}
    if memory_gb:
        opts["memory"] = int(memory_gb * 2**30)
    task = ray.remote(max_calls=1)(_call).options(**opts)
    out, peak, seconds = ray.get(task.remote(fn, args, kwargs))
    where = {"process": "ray task", "peak_rss_mib": round(peak, 1), "seconds": round(seconds, 3), "num_cpus": num_cpus}
    if memory_gb:
        where["memory_gb"] = memory_gb
    return out, where
