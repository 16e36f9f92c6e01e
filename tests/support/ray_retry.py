"""Local Ray instances for tests that survive a loaded machine's slow node start, and one shared by modules.

Ray gives its raylet 30 s to register with the GCS; on a 2-core machine shared with other test
runs that can run out, which is the machine and not the code under test. Starting again is safe.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from tests.support.paths import LOOPBACK

log = logging.getLogger(__name__)


def start_local_ray(num_cpus: int = 2, attempts: int = 5) -> None:
    """``ray.init`` on 127.0.0.2 (no dashboard; retried when the node times out starting)."""
    import ray

    for attempt in range(1, attempts + 1):
        try:
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, _node_ip_address=LOOPBACK,
                     runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}})
            return
        except Exception as e:  # Ray raises a bare Exception for this
            if "timed out during startup" not in str(e) or attempt == attempts:
                raise
            log.warning("local Ray node timed out starting (attempt %d of %d); starting again", attempt, attempts)
            ray.shutdown()
            time.sleep(10)


@contextmanager
def local_ray(num_cpus: int = 2, attempts: int = 5) -> Iterator[None]:
    """``ray.init`` on 127.0.0.2 (retried when the node times out starting), shut down at the end."""
    import ray

    start_local_ray(num_cpus, attempts)
    try:
        yield
    finally:
        ray.shutdown()


class SharedRay:
    """One local Ray instance (2 CPUs) shared by the test modules that ask for it (``ray_local``), started on
    first use and shut down before a module that does not use it (so that module finds no Ray running, as
    before) and at the end of the session. Starting a local instance costs 5-15 s on a 2-core machine; the
    modules that share it are run one after another (``order_modules``).

    An instance this class did not start (e.g. left running by code under test) is used as it is and never
    shut down here, as the module-scoped fixture did before.
    """

    def __init__(self, num_cpus: int = 2):
        self.num_cpus = num_cpus
        self.ours = False
        self.starts = 0

    def acquire(self) -> None:
        import ray

        if self.ours and not ray.is_initialized():
            self.ours = False  # shut down by a test: start again
        if not ray.is_initialized():
            start_local_ray(self.num_cpus)
            self.ours = True
            self.starts += 1
            log.info("shared local Ray instance started (%d so far)", self.starts)

    def release(self) -> None:
        if not self.ours:
            return
        import ray

        self.ours = False
        if ray.is_initialized():
            ray.shutdown()


def order_modules(items: list, shares: Callable[[object], bool]) -> None:
    """Reorder ``items`` in place so that the modules with an item for which ``shares`` is true run one after
    another, at the place of the first of them; every other module, and the order inside each module, stay."""
    key = [i.nodeid.split("::", 1)[0] for i in items]
    sharing = {k for k, i in zip(key, items) if shares(i)}
    if len(sharing) < 2:
        return
    first = next(n for n, k in enumerate(key) if k in sharing)
    together = [i for i, k in zip(items, key) if k in sharing]
    after = [i for i, k in zip(items[first:], key[first:]) if k not in sharing]
    items[:] = items[:first] + together + after
