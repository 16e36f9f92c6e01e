"""A job killed mid-run (SIGKILL, no clean-up) resumes on re-run: every chunk exactly once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from medembed import schema as S
from tests.support.paths import REPO
from tests.support.processes import kill_session

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

STREAMING = ["--set", "embed.one_actor_max_mib=0", "--set", "input.rows_per_block=8", "--set", "chunking.batch_size=8",
             "--set", "embed.batch_size=8", "--set", "store.commit_every=1", "--set", "embed.block_mib=0.01"]


# the run after the kill: the same path, blocks and commits of the usual size (what it resumes is in the table)
RESUME = ["--set", "embed.one_actor_max_mib=0"]


def start(cwd, run_name, sets=STREAMING):
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["HF_HUB_OFFLINE"] = "1"
    return subprocess.Popen(
        [sys.executable, str(REPO / "jobs" / "embed.py"), "--config", "embed",
         "--set", f"output.run_name={run_name}", *sets],
        cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)


def rows(uri):
    import lance

    try:
        return lance.dataset(uri).count_rows()
    except (ValueError, OSError):
        return 0


def test_killed_job_resumes_without_duplicates_or_losses(tmp_path):
    uri = str(tmp_path / "lancedb" / "sample__all_minilm_l6_v2.lance")
    job = start(tmp_path, "killed")
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and job.poll() is None and rows(uri) == 0:
            time.sleep(0.1)
    finally:
        kill_session(job.pid)  # the driver and every process of the local Ray instance it started
        job.wait(timeout=60)
    partial = rows(uri)
    assert 0 < partial < 200, f"kill landed outside the run (rows={partial}); the test needs a partial table"

    job = start(tmp_path, "resumed", RESUME)
    _, err = job.communicate(timeout=300)
    assert job.returncode == 0, err[-3000:]
    import lance

    t = lance.dataset(uri).to_table(columns=[S.CHUNK_ID, S.DOC_ID])
    ids = t.column(S.CHUNK_ID).to_pylist()
    assert len(ids) == len(set(ids)) == 200  # 200 one-chunk sample notes, each exactly once
    assert set(t.column(S.DOC_ID).to_pylist()) == {f"synth-{i:04d}" for i in range(200)}
    m = json.loads((tmp_path / "runs" / "resumed" / "manifest.json").read_text())["counts"]
    assert m["rows_before"] == partial
    assert m["chunks_unchanged_skipped"] + m["chunks_written"] == 200
    assert m["chunks_written"] == 200 - partial
