"""A local Ray instance for one test module that survives a loaded machine's slow node start.

Ray gives its raylet 30 s to register with the GCS; on a 2-core machine shared with other test
runs that can run out, which is the machine and not the code under test. Starting again is safe.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

from tests.support.paths import LOOPBACK

log = logging.getLogger(__name__)


@contextmanager
def local_ray(num_cpus: int = 2, attempts: int = 5) -> Iterator[None]:
    """``ray.init`` on 127.0.0.2 (retried when the node times out starting), shut down at the end."""
    import ray

    for attempt in range(1, attempts + 1):
        try:
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, _node_ip_address=LOOPBACK,
                     runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}})
            break
        except Exception as e:  # Ray raises a bare Exception for this
            if "timed out during startup" not in str(e) or attempt == attempts:
                raise
            log.warning("local Ray node timed out starting (attempt %d of %d); starting again", attempt, attempts)
            ray.shutdown()
            time.sleep(10)
    try:
        yield
    finally:
        ray.shutdown()
