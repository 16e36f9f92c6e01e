"""A Ray Train worker SIGKILLed mid-run (from outside, after the first checkpoint): Ray Train restarts the
worker group from the latest checkpoint, not from step 0."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from medembed.config import load_config
from medembed.runtime import artifacts
from medembed.runtime.manifest import RunManifest
from medembed.training.config import TrainJobConfig
from tests.support.ray_cluster import RayCluster, pids_titled
from tests.support.ray_retry import local_ray
from tests.support.triplets import checkpoint_steps, sample_triplets_table, tiny_train_overrides, write_triplets_run

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def ray_training():
    with local_ray(num_cpus=2):
        yield


def kill_a_worker_after_a_checkpoint(run_dir, killed: dict) -> threading.Thread:
    def watch() -> None:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and not checkpoint_steps(run_dir):
            time.sleep(0.05)
        pids = pids_titled(b"ray::RayTrainWorker", RayCluster.process_tree(os.getpid()))  # our Ray only
        killed.update(at=checkpoint_steps(run_dir), pids=pids)
        if pids:
            os.kill(pids[0], signal.SIGKILL)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


def test_killed_worker_resumes_from_the_latest_checkpoint(tmp_path, ray_training):
    from medembed.jobs.train import train

    trip = write_triplets_run(tmp_path / "triplets", sample_triplets_table(n_notes=48, per_note=2))
    cfg = load_config(TrainJobConfig, "train", tiny_train_overrides(trip, tmp_path, "wkill"))
    manifest = RunManifest("train", cfg.output.run_dir, cfg.model_dump(mode="json"), run_id="wkill")
    killed: dict = {}
    watcher = kill_a_worker_after_a_checkpoint(tmp_path / "models" / "wkill", killed)
    counts = train(cfg, manifest)
    watcher.join(timeout=10)

    # up to 96 rows, 2 per note: >= 12 global batches of 2 x 4, a checkpoint every 2 steps
    assert len(killed.get("pids", [])) == 2, f"no Train worker to kill after the first checkpoint: {killed}"
    assert len(counts["attempt_start_steps"]) == 2 and counts["attempt_start_steps"][0] == 0, counts
    assert counts["resumed_from_step"] == counts["attempt_start_steps"][1] >= min(killed["at"]) >= 2, counts
    assert counts["steps"] == sum(counts["steps_per_epoch"]) >= 12 > counts["resumed_from_step"]
    assert artifacts.read_marker(counts["model_dir"])["steps"] == counts["steps"]
