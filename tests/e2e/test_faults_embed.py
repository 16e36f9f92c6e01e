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

import os
import signal
from pathlib import Path

import pytest

from medembed import schema as S
from tests.support.e2e_jobs import (
    SAMPLE_TABLE,
    Jobs,
    embed_command,
    read_manifest,
    sample_chunk_ids,
    whole_documents_chunks,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

TABLE = SAMPLE_TABLE


@pytest.fixture(scope="module")
def expected_ids(bundled_model_path) -> set[str]:
    return sample_chunk_ids(bundled_model_path)


def submit(jobs: Jobs, work: Path, run: str, resume: bool = False) -> str:
    return jobs.submit(embed_command(work / "db", work / "runs", run, resume))


def rows(work: Path) -> int:
    import lance

    try:
        return lance.dataset(str(work / "db" / f"{TABLE}.lance")).count_rows()
    except (ValueError, OSError):
        return 0


def table_ids(work: Path) -> list[str]:
    import lance

    return lance.dataset(str(work / "db" / f"{TABLE}.lance")).to_table(columns=[S.CHUNK_ID]).column(0).to_pylist()


def test_worker_node_killed_mid_embedding(cluster, jobs, expected_ids, tmp_path):
    job_id = submit(jobs, tmp_path, "node-kill")
    partial = jobs.wait_until(job_id, lambda: rows(tmp_path), "a commit")
    pid = cluster.wait_for_pid(b"ChunkEmbedder")  # the embedder actor's process title names its stage
    node = cluster.node_of_pid(pid)
    assert node >= 1, "the head has no CPUs: the embedder must run on a worker node"
    for actor in (b"ray::IdRegistry", b"ray::Counters"):  # run-scoped state must not die with a worker node
        cluster.wait_for_pid(actor)
        assert {cluster.node_of_pid(p) for p in cluster.find_pids(actor)} == {0}, f"{actor!r} not on the head"
    cluster.kill_node(node)
    assert rows(tmp_path) < len(expected_ids), "the kill landed after the last commit; the test needs a partial table"

    status = jobs.wait(job_id)
    assert status == "SUCCEEDED", jobs.logs(job_id)[-5000:]
    ids = table_ids(tmp_path)
    assert len(ids) == len(set(ids)), "duplicate chunks after the node kill"
    assert set(ids) == expected_ids, f"missing {len(expected_ids - set(ids))}, unexpected {len(set(ids) - expected_ids)}"
    c = read_manifest(tmp_path / "runs", "node-kill")["counts"]
    n = len(expected_ids)
    # exact despite re-run blocks: counts are keyed by block, and rows come from what was committed
    assert c["chunks_total"] == n, c
    assert c["chunks_written"] == c["rows_after"] == n and c["rows_before"] == 0, c
    assert c["chunks_unchanged_skipped"] == 0 and c["documents_accepted"] == 200, c
    assert partial > 0
    cluster.add_worker()  # back to two worker nodes for the next test


def test_driver_killed_then_resubmitted_resumes(jobs, expected_ids, tmp_path):
    job_id = submit(jobs, tmp_path, "driver-kill")
    # a whole document committed (the first commits may hold only part of one: it counts as changed on resume)
    jobs.wait_until(job_id, lambda: rows(tmp_path) and whole_documents_chunks(table_ids(tmp_path), expected_ids),
                    "a whole document committed")
    os.kill(jobs.driver_pid(job_id), signal.SIGKILL)
    assert jobs.wait(job_id, 120) == "FAILED"
    partial_ids = table_ids(tmp_path)
    partial = len(partial_ids)
    assert 0 < partial < len(expected_ids), partial

    again = submit(jobs, tmp_path, "driver-kill-resume", resume=True)
    assert jobs.wait(again) == "SUCCEEDED", jobs.logs(again)[-5000:]
    ids = table_ids(tmp_path)
    assert len(ids) == len(set(ids)) and set(ids) == expected_ids
    c = read_manifest(tmp_path / "runs", "driver-kill-resume")["counts"]
    n = len(expected_ids)
    assert c["rows_before"] == partial and c["rows_after"] == n, c
    assert c["chunks_total"] == n and c["chunks_unchanged_skipped"] + c["chunks_written"] == n, c
    assert c["chunks_unchanged_skipped"] == whole_documents_chunks(partial_ids, expected_ids) > 0, c
