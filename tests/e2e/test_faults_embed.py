"""Faults during a submitted embedding job on a real 3-node Ray cluster on this machine (loopback only).

Head with 0 CPUs (as on real clusters: it runs drivers, no tasks) and two 1-CPU worker nodes; the job
streams small blocks and commits every fragment, so a fault lands in the middle of the run.

* a worker node (its raylet and every worker on it) is SIGKILLed while it runs the embedder actor: the job
  still finishes (Ray restarts the actor on the other node; the watchdog turns a stuck pool into a
  failure within embed.stall_timeout_s), the table holds every expected chunk id exactly once and the
  manifest's counts are exact (re-run blocks are not counted twice);
* the job's driver is SIGKILLed: the job fails, the next submission resumes from what was committed and
  the table ends exact.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pyarrow as pa
import pytest

from medembed import schema as S
from tests.support.paths import REPO, SAMPLE
from tests.support.ray_cluster import RayCluster

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

TABLE = "sample__all_minilm_l6_v2"
MAX_TOKENS, OVERLAP = 32, 8
EXCLUDES = [".git", "lancedb", "runs", "output", "bench", "**/__pycache__", "*.lance", ".pytest_cache",
            "*.egg-info", ".venv", "build", "dist", "tests"]
STREAMING = ["input.rows_per_block=8", "chunking.batch_size=8", "embed.batch_size=16", "store.commit_every=1",
             "embed.block_mib=0.01", "embed.stall_timeout_s=150", f"chunking.max_tokens={MAX_TOKENS}",
             f"chunking.overlap_tokens={OVERLAP}", "store.compact=false"]
JOB_TIMEOUT_S = 600


@pytest.fixture(scope="module")
def cluster():
    c = RayCluster(num_workers=2, cpus_per_node=1, head_cpus=0, start_timeout_s=180)
    c.start(attempts=6)
    try:
        yield c
    finally:
        c.stop()
        assert c._our_pids() == [], "processes of the test cluster survived its teardown"


@pytest.fixture(scope="module")
def client(cluster):
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(cluster.dashboard_url, headers=cluster.auth_headers)


@pytest.fixture(scope="module")
def expected_ids(bundled_model_path) -> set[str]:
    """Chunk ids of the sample corpus at MAX_TOKENS, computed here without Ray."""
    from medembed.embedding.chunking import ChunkParams, chunk_batch
    from medembed.ingest.normalize import clean_text

    notes = [json.loads(ln) for ln in SAMPLE.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    docs = pa.table({S.DOC_ID: [n["id"] for n in notes], S.TITLE: [clean_text(n.get("title") or "") for n in notes],
                     S.TEXT: [clean_text(n["text"]) for n in notes], S.METADATA: ["{}"] * len(notes)})
    ids = chunk_batch(docs, ChunkParams(bundled_model_path, MAX_TOKENS, OVERLAP, 0)).column(S.CHUNK_ID).to_pylist()
    assert len(ids) == len(set(ids)) > 2 * len(notes)
    return set(ids)


def submit(client, work: Path, run: str) -> str:
    sets = [f"store.uri={work / 'db'}", f"output.run_dir={work / 'runs'}", f"output.run_name={run}", *STREAMING]
    entry = "python jobs/embed_corpus.py --config embed_local " + " ".join(f"--set {s}" for s in sets)
    return client.submit_job(entrypoint=entry, runtime_env={
        "working_dir": str(REPO), "excludes": EXCLUDES,
        "env_vars": {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}})


def wait_for(client, job_id: str, timeout_s: float = JOB_TIMEOUT_S) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = str(client.get_job_status(job_id).value)
        if status in ("SUCCEEDED", "FAILED", "STOPPED"):
            return status
        time.sleep(1.0)
    client.stop_job(job_id)
    raise AssertionError(f"job {job_id} still running after {timeout_s}s:\n{client.get_job_logs(job_id)[-5000:]}")


def rows(work: Path) -> int:
    import lance

    try:
        return lance.dataset(str(work / "db" / f"{TABLE}.lance")).count_rows()
    except (ValueError, OSError):
        return 0


def wait_for_partial(client, job_id: str, work: Path, timeout_s: float = 400) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        n = rows(work)
        if n > 0:
            return n
        if str(client.get_job_status(job_id).value) in ("SUCCEEDED", "FAILED", "STOPPED"):
            break
        time.sleep(0.2)
    raise AssertionError(f"no commit seen while {job_id} ran:\n{client.get_job_logs(job_id)[-4000:]}")


def table_ids(work: Path) -> list[str]:
    import lance

    return lance.dataset(str(work / "db" / f"{TABLE}.lance")).to_table(columns=[S.CHUNK_ID]).column(0).to_pylist()


def manifest(work: Path, run: str) -> dict:
    return json.loads((work / "runs" / run / "manifest.json").read_text())


def embedder_pid(cluster: RayCluster) -> int | None:
    """Pid of the embedder actor's worker process (its process title names the ChunkEmbedder stage)."""
    for p in cluster.procs:
        for pid in cluster.process_tree(p.pid):
            try:
                if b"ChunkEmbedder" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    return pid
            except OSError:
                continue
    return None


def test_worker_node_killed_mid_embedding(cluster, client, expected_ids, tmp_path):
    job_id = submit(client, tmp_path, "node-kill")
    partial = wait_for_partial(client, job_id, tmp_path)
    pid = embedder_pid(cluster)
    deadline = time.monotonic() + 60
    while pid is None and time.monotonic() < deadline:
        time.sleep(0.5)
        pid = embedder_pid(cluster)
    assert pid is not None, "the embedder actor is not alive while the job commits"
    node = cluster.node_of_pid(pid)
    assert node >= 1, "the head has no CPUs: the embedder must run on a worker node"
    cluster.kill_node(node)
    assert rows(tmp_path) < len(expected_ids), "the kill landed after the last commit; the test needs a partial table"

    status = wait_for(client, job_id)
    logs = client.get_job_logs(job_id)
    assert status == "SUCCEEDED", logs[-5000:]
    ids = table_ids(tmp_path)
    assert len(ids) == len(set(ids)), "duplicate chunks after the node kill"
    assert set(ids) == expected_ids, f"missing {len(expected_ids - set(ids))}, unexpected {len(set(ids) - expected_ids)}"
    c = manifest(tmp_path, "node-kill")["counts"]
    n = len(expected_ids)
    # exact despite re-run blocks: counts are keyed by block, and rows come from what was committed
    assert c["chunks_total"] == n, c
    assert c["chunks_written"] == c["rows_after"] == n and c["rows_before"] == 0, c
    assert c["chunks_unchanged_skipped"] == 0 and c["documents_accepted"] == 200, c
    assert partial > 0


def test_driver_killed_then_resubmitted_resumes(cluster, client, expected_ids, tmp_path):
    if len(cluster.alive_nodes()) < 2:
        pytest.skip("needs a live worker node (the node-kill test left one of two)")
    job_id = submit(client, tmp_path, "driver-kill")
    wait_for_partial(client, job_id, tmp_path)
    info = client.get_job_info(job_id)
    assert info.driver_info is not None and info.driver_info.pid, info
    os.kill(int(info.driver_info.pid), signal.SIGKILL)
    assert wait_for(client, job_id, 120) == "FAILED"
    partial = rows(tmp_path)
    assert 0 < partial < len(expected_ids), partial

    again = submit(client, tmp_path, "driver-kill-resume")
    assert wait_for(client, again) == "SUCCEEDED", client.get_job_logs(again)[-5000:]
    ids = table_ids(tmp_path)
    assert len(ids) == len(set(ids)) and set(ids) == expected_ids
    c = manifest(tmp_path, "driver-kill-resume")["counts"]
    n = len(expected_ids)
    assert c["rows_before"] == partial and c["rows_after"] == n, c
    assert c["chunks_total"] == n and c["chunks_unchanged_skipped"] + c["chunks_written"] == n, c
    assert c["chunks_unchanged_skipped"] > 0, "the resumed run skipped nothing: it did not resume"
