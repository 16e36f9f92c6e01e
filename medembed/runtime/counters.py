"""A tiny named-counter actor so Ray Data UDFs can report counts to the driver's manifest.

Ray re-runs tasks (a lost worker node, a restarted actor, lineage reconstruction), so a UDF that
simply adds its counts would count a re-run block twice. UDFs report with :meth:`Counters.put`
instead: the counts of one unit of work under a key that is the same every time that unit is
re-run (see :func:`block_key`); a re-run replaces its earlier report, and :meth:`Counters.get`
sums over keys. :meth:`Counters.add` stays for counts that are not tied to re-runnable work.
"""

from __future__ import annotations

import collections
import hashlib
from collections.abc import Iterable

import ray


def block_key(ids: Iterable[str]) -> str:
    """A key for a unit of work, from the ids it holds (order-free): the same on every re-run."""
    h = hashlib.sha1()
    for i in sorted(ids):
        h.update(i.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()[:20]


@ray.remote(num_cpus=0)
class Counters:
    def __init__(self) -> None:
        self._c: collections.Counter[str] = collections.Counter()
        self._keyed: dict[str, dict[str, int]] = {}

    def add(self, name: str, n: int) -> None:
        self._c[name] += n

    def put(self, key: str, counts: dict[str, int]) -> None:
        """The counts of the unit of work ``key``; a re-run of it replaces them (idempotent)."""
        self._keyed[key] = dict(counts)

    def get(self) -> dict[str, int]:
        total = collections.Counter(self._c)
        for counts in self._keyed.values():
            total.update(counts)
        return dict(total)


def on_driver_node():
    """A scheduling strategy that pins an actor to the driver's node.

    Run-scoped state (counts, the id registry) must live as long as the driver, not die with the worker
    node a pool happened to put it on: a head node with 0 CPUs still runs 0-CPU actors pinned to it.
    """
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)


def driver_counters():
    """A Counters actor on the driver's node: a lost worker node must not take the run's counts with it."""
    return Counters.options(scheduling_strategy=on_driver_node()).remote()
