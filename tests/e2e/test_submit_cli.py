"""End to end: `medembed submit` / `medembed jobs` against a real two-node Ray cluster on loopback.

The CLI runs as a user would run it (a subprocess, token from RAY_AUTH_TOKEN or a token file, no
RAY_AUTH_MODE of its own), uploads this repository with cluster/runtime_env.yaml, follows the job and
exits with its status: 0 succeeded, 1 failed, 3 stopped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.paths import REPO
from tests.support.ray_cluster import RayCluster

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

CLI = [sys.executable, "-m", "medembed.app.cli"]
TABLE = "sample__all_minilm_l6_v2"


@pytest.fixture(scope="module")
def cluster(one_worker_cluster):
    """A head and one worker node, shared with the other module that uses this layout (tests/e2e/conftest.py)."""
    return one_worker_cluster


def cli_env(cluster: RayCluster, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in cluster.env.items() if k not in ("RAY_AUTH_MODE", "RAY_ADDRESS")}
    env.update(extra)
    return env


def medembed(cluster: RayCluster, *args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], cwd=REPO, env=env or cli_env(cluster), capture_output=True, text=True,
                          timeout=timeout)


def embed_args(cluster: RayCluster, work: Path, run: str, *sets: str) -> list[str]:
    args = ["submit", "embed", "--address", cluster.dashboard_url, "--config", "embed",
            "--set", f"store.uri={work / 'db'}", "--set", f"output.run_dir={work / 'runs'}",
            "--set", f"output.run_name={run}", "--set", "chunking.max_tokens=32",
            "--set", "chunking.overlap_tokens=8"]
    for s in sets:
        args += ["--set", s]
    return args


def test_submit_follows_a_job_to_success(cluster, tmp_path):
    p = medembed(cluster, *embed_args(cluster, tmp_path, "ok", "input.limit=20"), "-v")
    (tmp_path.parent / "submit_ok.log").write_text(p.stdout + p.stderr)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    job_id = p.stdout.splitlines()[0]
    assert job_id.startswith("embed-")
    assert "embed succeeded in" in p.stdout  # the driver's console line, streamed while it ran
    m = json.loads((tmp_path / "runs" / "ok" / "manifest.json").read_text())
    assert m["status"] == "succeeded" and m["ray"]["nodes"] == 2
    assert m["counts"]["documents_accepted"] == 20
    import lancedb

    rows = lancedb.connect(str(tmp_path / "db")).open_table(TABLE).count_rows()
    assert rows == m["counts"]["chunks_written"] > 20  # 32-token chunks: more chunks than notes

    listed = medembed(cluster, "jobs", "list", "--address", cluster.dashboard_url)
    assert listed.returncode == 0, listed.stderr
    line = next(ln for ln in listed.stdout.splitlines() if ln.startswith(job_id))
    assert line.split("\t")[1] == "SUCCEEDED"
    logs = medembed(cluster, "jobs", "logs", job_id, "--address", cluster.dashboard_url)
    assert "embed succeeded in" in logs.stdout
    status = medembed(cluster, "jobs", "status", job_id, "--address", cluster.dashboard_url)
    assert status.returncode == 0 and status.stdout.startswith("SUCCEEDED")


def test_a_failing_job_fails_the_command(cluster, tmp_path):
    missing = tmp_path / "no_such_notes.jsonl"
    p = medembed(cluster, *embed_args(cluster, tmp_path, "bad", f"input.uri={missing}"))
    assert p.returncode == 1, p.stdout[-3000:] + p.stderr[-3000:]
    job_id = p.stdout.splitlines()[0]
    assert str(missing) in p.stdout  # the driver's error, naming the input, reached the user
    status = medembed(cluster, "jobs", "status", job_id, "--address", cluster.dashboard_url)
    assert status.returncode == 1 and status.stdout.startswith("FAILED")


def test_a_stopped_job_stops_the_command(cluster, tmp_path):
    follower = subprocess.Popen([*CLI, *embed_args(cluster, tmp_path, "stopped")], cwd=REPO, env=cli_env(cluster),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        job_id = follower.stdout.readline().strip()
        assert job_id.startswith("embed-"), follower.stderr.read() if follower.poll() is not None else job_id
        stop = medembed(cluster, "jobs", "stop", job_id, "--wait", "--address", cluster.dashboard_url)
        assert stop.returncode == 0 and f"{job_id} STOPPED" in stop.stdout, stop.stdout + stop.stderr
        assert follower.wait(timeout=120) == 3
    finally:
        if follower.poll() is None:
            follower.kill()
    status = medembed(cluster, "jobs", "status", job_id, "--address", cluster.dashboard_url)
    assert status.returncode == 3 and status.stdout.startswith("STOPPED")
    follow = medembed(cluster, "jobs", "logs", job_id, "--follow", "--address", cluster.dashboard_url)
    assert follow.returncode == 3


def test_no_wait_returns_the_id_at_once(cluster, tmp_path):
    t0 = time.monotonic()
    p = medembed(cluster, *embed_args(cluster, tmp_path, "nowait", "input.limit=5"), "--no-wait")
    assert p.returncode == 0, p.stderr[-3000:]
    job_id = p.stdout.strip()
    assert job_id.startswith("embed-") and "\n" not in job_id
    assert time.monotonic() - t0 < 60
    follow = medembed(cluster, "jobs", "logs", job_id, "--follow", "--address", cluster.dashboard_url)
    assert follow.returncode == 0, follow.stdout[-3000:]


def test_token_auth(cluster, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in cli_env(cluster, HOME=str(home)).items() if k != "RAY_AUTH_TOKEN"}
    denied = medembed(cluster, "jobs", "list", "--address", cluster.dashboard_url, env=env)
    assert denied.returncode == 2
    assert "401" in denied.stderr or "uthentication" in denied.stderr, denied.stderr
    assert cluster.token not in denied.stdout + denied.stderr
    token_file = tmp_path / "token"
    token_file.write_text(cluster.token + "\n")
    os.chmod(token_file, 0o600)
    ok = medembed(cluster, "jobs", "list", "--address", cluster.dashboard_url,
                  env={**env, "RAY_AUTH_TOKEN_PATH": str(token_file)})
    assert ok.returncode == 0, ok.stderr
    assert cluster.token not in ok.stdout + ok.stderr
