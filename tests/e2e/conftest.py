"""The e2e tests' clusters: real Ray clusters on this machine (loopback only), each layout shared by the modules
that use it (started once, the modules run one after another; stopped before any other module and at the end):

- ``cluster``: the default layout, a head with 0 CPUs (as on real clusters) and two 1-CPU worker nodes;
- ``one_worker_cluster``: a 1-CPU head and one 1-CPU worker node (``tests/e2e/test_job_submit.py`` and
  ``tests/e2e/test_submit_cli.py`` take it as their ``cluster``).

A module that needs another layout or node environment (``test_secrets.py``) defines its own ``cluster``; the
shared ones are stopped while it runs. ``jobs``: Ray's job client on the module's cluster.
"""

from __future__ import annotations

import pytest

from tests.support.e2e_jobs import Jobs, SharedCluster
from tests.support.ray_retry import order_modules

SHARED = {"cluster": SharedCluster(num_workers=2, cpus_per_node=1, head_cpus=0),
          "one_worker_cluster": SharedCluster(num_workers=1, cpus_per_node=1)}


def _shared_cluster_of(item) -> str | None:
    """The shared layout the test uses (its ``cluster`` or ``one_worker_cluster`` resolved to this file's)."""
    defs = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
    for name in SHARED:
        if defs.get(name) and getattr(defs[name][-1].func, "__module__", None) == __name__:  # [-1]: the one used
            return name
    return None


def pytest_collection_modifyitems(session, config, items):
    for name in SHARED:
        order_modules(items, lambda i, name=name: _shared_cluster_of(i) == name)
    used: dict[str, set] = {}
    for i in items:
        used.setdefault(i.nodeid.split("::", 1)[0], set()).add(_shared_cluster_of(i))
    config._shared_clusters_used = used


@pytest.fixture(scope="module", autouse=True)
def _only_this_modules_shared_cluster_runs(request):
    used = getattr(request.config, "_shared_clusters_used", {}).get(request.node.nodeid, set())
    for name, shared in SHARED.items():
        if name not in used:
            shared.release()
    yield


@pytest.fixture(scope="session", autouse=True)
def _shared_clusters_stopped_at_the_end():
    yield
    for shared in SHARED.values():
        shared.release()


@pytest.fixture(scope="module")
def cluster():
    return SHARED["cluster"].acquire()


@pytest.fixture(scope="module")
def one_worker_cluster():
    return SHARED["one_worker_cluster"].acquire()


@pytest.fixture(scope="module")
def jobs(cluster):
    return Jobs(cluster)
