"""Run a worker class in the driver process behind an actor handle's call syntax.

Tiny jobs pay more for an actor (a process start, its torch and sentence-transformers imports) than for
their model work. :class:`InProcess` lets a job drive the same worker class either way:
``worker.method.remote(...)`` runs the method here, at once and in call order (as an actor runs its
calls), and returns an ``ObjectRef`` to the result, so ``ray.get`` and ``ray.data.from_arrow_refs`` work
unchanged. An exception is raised at the call, not at ``ray.get``.
"""

from __future__ import annotations

from typing import Any

import ray


class _Method:
    def __init__(self, fn):
        self._fn = fn

    def remote(self, *args: Any, **kwargs: Any) -> ray.ObjectRef:
        return ray.put(self._fn(*args, **kwargs))


class InProcess:
    """``obj`` called like an actor: ``InProcess(obj).method.remote(*a)`` is ``ray.put(obj.method(*a))``."""

    def __init__(self, obj: Any):
        self.obj = obj

    def __getattr__(self, name: str) -> _Method:
        if name.startswith("_"):
            raise AttributeError(name)
        return _Method(getattr(self.obj, name))


def stop(worker: Any) -> None:
    """End ``worker``: kill an actor; drop an in-process worker's object (and its model) for the collector."""
    if isinstance(worker, InProcess):
        worker.obj = None
    else:
        ray.kill(worker)
