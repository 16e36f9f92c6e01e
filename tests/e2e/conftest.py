"""The default cluster of the e2e tests, one per module: a real 3-node Ray cluster on this machine (a head with
0 CPUs, as on real clusters, and two 1-CPU worker nodes; loopback only), and Ray's job client on it. Modules
that need another layout define their own ``cluster`` (and ``jobs``)."""

from __future__ import annotations

import pytest

from tests.support.e2e_jobs import Jobs, running_cluster


@pytest.fixture(scope="module")
def cluster():
    with running_cluster(num_workers=2, cpus_per_node=1, head_cpus=0) as c:
        yield c


@pytest.fixture(scope="module")
def jobs(cluster):
    return Jobs(cluster)
