"""A tiny named-counter actor so Ray Data UDFs can report counts to the driver's manifest."""

from __future__ import annotations

import collections

import ray


@ray.remote(num_cpus=0)
class Counters:
    def __init__(self) -> None:
        self._c: collections.Counter[str] = collections.Counter()

    def add(self, name: str, n: int) -> None:
        self._c[name] += n

    def get(self) -> dict[str, int]:
        return dict(self._c)
