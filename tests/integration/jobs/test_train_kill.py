"""The whole job SIGKILLed mid-run (driver and its local Ray): the same run name resumes from the checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.paths import REPO
from tests.support.processes import kill_session
from tests.support.triplets import checkpoint_steps, sample_triplets_table, tiny_train_overrides, write_triplets_run

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]


def start(cwd: Path, overrides: list[str], log: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["HF_HUB_OFFLINE"] = "1"
    args = [a for o in overrides for a in ("--set", o)]
    with open(log, "w") as err:  # a file, not a pipe: Ray's worker logs would fill a pipe and stall the job
        return subprocess.Popen([sys.executable, str(REPO / "jobs" / "train.py"), "--config", "train", *args],
                                cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)


def node_start_timed_out(log: Path) -> bool:
    """The local Ray node did not register within Ray's 30 s on a loaded machine (not the code under test)."""
    return "timed out during startup" in log.read_text(errors="replace")


def test_killed_job_resumes_with_the_same_run_name(tmp_path, tiny_model_path):
    trip = write_triplets_run(tmp_path / "triplets", sample_triplets_table(n_notes=32, per_note=2))
    overrides = tiny_train_overrides(trip, tmp_path, "jkill", tiny_model_path, epochs=2)  # the run, not the model
    run_dir = tmp_path / "models" / "jkill"
    log = tmp_path / "job.log"
    for _ in range(3):
        job = start(tmp_path, overrides, log)
        deadline = time.monotonic() + 600
        try:
            while time.monotonic() < deadline and job.poll() is None and not checkpoint_steps(run_dir):
                time.sleep(0.2)
        finally:
            kill_session(job.pid)  # the driver and every process of the local Ray instance it started
            job.wait(timeout=60)
        if checkpoint_steps(run_dir) or not node_start_timed_out(log):
            break
    at_kill = checkpoint_steps(run_dir)
    assert at_kill, "no checkpoint before the kill: the test needs a partial run\n" + log.read_text()[-3000:]
    assert not (run_dir / "model" / "_SUCCESS.json").exists(), "kill landed after the run finished"

    for _ in range(3):  # started again only when a loaded machine timed out starting the local Ray node
        job = start(tmp_path, overrides, log)
        job.wait(timeout=900)
        if job.returncode == 0 or not node_start_timed_out(log):
            break
    assert job.returncode == 0, log.read_text()[-4000:]
    # the local instance of a training job has its dashboard, so Ray Train's placement-group cleaner can query
    # the State API (without it the cleaner warns every second and cannot clean up after a dead run)
    assert "Failed to query Ray Train Controller" not in log.read_text()
    manifest = json.loads((tmp_path / "runs" / "jkill" / "manifest.json").read_text())
    counts = manifest["counts"]
    assert manifest["status"] == "succeeded"
    assert counts["attempt_start_steps"][0] == 0
    assert counts["resumed_from_step"] == max(at_kill) >= 2  # the latest checkpoint, not step 0
    assert counts["steps"] == sum(counts["steps_per_epoch"]) > counts["resumed_from_step"]
    marker = json.loads((run_dir / "model" / "_SUCCESS.json").read_text())
    assert marker["steps"] == counts["steps"] and marker["run_id"] == "jkill"
