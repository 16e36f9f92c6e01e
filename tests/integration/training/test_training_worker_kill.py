"""A worker SIGKILLed mid-run: Ray Train restarts the worker group from the latest checkpoint, not from step 0."""

from __future__ import annotations

from pathlib import Path

import pytest

from medembed.config import load_config
from medembed.runtime import artifacts
from medembed.runtime.manifest import RunManifest
from medembed.training.config import TrainJobConfig
from medembed.training.trainer import CRASH_MARKER
from tests.support.ray_retry import local_ray
from tests.support.triplets import sample_triplets_table, tiny_train_overrides, write_triplets_run

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def ray_training():
    with local_ray(num_cpus=2):
        yield


def test_killed_worker_resumes_from_the_latest_checkpoint(tmp_path, ray_training):
    from medembed.jobs.train import train

    trip = write_triplets_run(tmp_path / "triplets", sample_triplets_table(n_notes=48, per_note=1))
    cfg = load_config(TrainJobConfig, "train", tiny_train_overrides(trip, tmp_path, "wkill", crash_at_step=3))
    manifest = RunManifest("train", cfg.output.run_dir, cfg.model_dump(mode="json"), run_id="wkill")
    counts = train(cfg, manifest)

    marker = Path(cfg.output.dir) / "wkill" / CRASH_MARKER
    assert marker.exists(), "rank 0 never killed itself: the test did not exercise a restart"
    assert "killed rank 0 at step 3" in marker.read_text()
    # 48 rows, one per note: >= 6 global batches of 2 x 4, checkpoints every 2 steps;
    # the worker died at the start of step 3 (0-based), after the checkpoint at step 2
    assert counts["attempt_start_steps"] == [0, 2]
    assert counts["resumed_from_step"] == 2
    assert counts["steps"] == sum(counts["steps_per_epoch"]) >= 6  # the whole plan ran (a shared positive
    assert artifacts.read_marker(counts["model_dir"])["steps"] == counts["steps"]  # may add a tail batch)
