"""A progress watchdog: turn a pipeline that stops producing into a clear failure within a bounded time.

Ray Data restarts dead actors of an actor pool, but a dead actor can keep its slot and leave the pool
waiting forever (seen after a worker node was killed mid-embedding). A job must then fail with a message
that says so, never run forever: :func:`watch` consumes an iterator on a helper thread and raises
:class:`StalledError` in the caller when no item arrived for ``timeout_s`` seconds.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
_DONE = object()


class StalledError(RuntimeError):
    """No progress for longer than the watchdog allows."""


def watch(items: Iterable[T], timeout_s: float | None, what: str) -> Iterator[T]:
    """Yield ``items``; raise StalledError naming ``what`` when the next one takes more than ``timeout_s``.

    ``timeout_s`` None or 0 disables the watchdog (items are consumed in the caller). The helper thread is
    a daemon: after a stall it stays blocked in the stalled iterator, and the process can still exit.
    """
    if not timeout_s:
        yield from items
        return
    q: queue.Queue = queue.Queue(maxsize=64)

    def pump() -> None:
        try:
            for item in items:
                q.put((item, None))
        except BaseException as e:  # handed to the caller, raised there
            q.put((None, e))
        q.put((_DONE, None))

    threading.Thread(target=pump, name=f"watchdog-{what}", daemon=True).start()
    last = time.monotonic()
    while True:
        try:
            item, err = q.get(timeout=timeout_s)
        except queue.Empty:
            raise StalledError(
                f"no progress on {what} for {time.monotonic() - last:.0f} s (limit {timeout_s:g} s): a worker node "
                "or actor was probably lost and its actor pool is stuck; failing instead of waiting forever. "
                "Committed work is kept: run the job again to resume.") from None
        if err is not None:
            raise err
        if item is _DONE:
            return
        last = time.monotonic()
        yield item
