"""Faults during submitted training, pair-generation and S3-writing jobs on a real 3-node Ray cluster on this
machine (loopback only): a head with 0 CPUs (it runs drivers, no tasks) and two 1-CPU worker nodes.

* a Ray Train worker is SIGKILLed mid-training: the worker group restarts from the latest checkpoint;
* the training job's driver is SIGKILLed and the job submitted again with the same run name: it resumes;
* the worker node running a pair-generation actor is SIGKILLed: every note ends with pairs or a recorded
  failure, exactly once; what was done is not redone (the fake LLM server counts requests per note);
* the S3 location of the table starts rejecting writes (403 AccessDenied, as after a bucket-policy change):
  the job fails naming the location, the table stays readable at its last commit, the next run finishes.

Training runs a tiny one-layer model (tests.support.tiny_model): these tests are about the run, not the model.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from medembed import schema as S
from medembed.synth import columns as C
from tests.support.e2e_jobs import (
    SAMPLE_TABLE,
    Jobs,
    embed_command,
    job_command,
    read_manifest,
    sample_chunk_ids,
    whole_documents_chunks,
)
from tests.support.openai_server import FakeOpenAIServer
from tests.support.paths import sample_notes
from tests.support.s3_server import S3Process, s3_environment
from tests.support.triplets import checkpoint_steps, sample_triplets_table, tiny_train_overrides, write_triplets_run

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

BUCKET = "medembed-faults"
SAMPLE_IDS = [n["id"] for n in sample_notes()]


# --- training --------------------------------------------------------------------------------------------
def train_job(jobs: Jobs, tmp_path: Path, run: str, model: str) -> str:
    trip = tmp_path / "triplets" / "mine_negatives-test" / "triplets"
    if not trip.exists():  # 64 triplets, 2 workers x 4: 8 steps per epoch, 16 in all, a checkpoint every 2
        write_triplets_run(tmp_path / "triplets", sample_triplets_table(n_notes=32, per_note=2))
    sets = tiny_train_overrides(trip, tmp_path, run, model, epochs=2, max_failures=2, cpus_per_worker=1)
    return jobs.submit(job_command("train", "train", sets))


def test_train_worker_killed_on_the_cluster_resumes_from_a_checkpoint(cluster, jobs, tmp_path, tiny_model_path):
    job = train_job(jobs, tmp_path, "tkill", tiny_model_path)
    run_dir = tmp_path / "models" / "tkill"
    at_kill = jobs.wait_until(job, lambda: checkpoint_steps(run_dir), "a training checkpoint", timeout_s=500)
    pids = cluster.find_pids(b"RayTrainWorker")
    nodes = {cluster.node_of_pid(p) for p in pids}  # numbers, not 1 and 2: a shared cluster may have replaced a node
    assert len(pids) == 2 and len(nodes) == 2 and 0 not in nodes, "one Train worker per worker node, none on the head"
    os.kill(pids[-1], signal.SIGKILL)

    assert jobs.wait(job) == "SUCCEEDED", jobs.logs(job)[-5000:]
    m = read_manifest(tmp_path / "runs", "tkill")
    c = m["counts"]
    assert len(c["attempt_start_steps"]) == 2 and c["attempt_start_steps"][0] == 0, c  # one restart
    assert c["resumed_from_step"] == c["attempt_start_steps"][1] >= min(at_kill) >= 2, c  # from a checkpoint
    assert c["steps"] == sum(c["steps_per_epoch"]) == 16 > c["resumed_from_step"], c
    assert json.loads((run_dir / "model" / "_SUCCESS.json").read_text())["steps"] == 16


def test_train_job_killed_then_resubmitted_resumes(cluster, jobs, tmp_path, tiny_model_path):
    job = train_job(jobs, tmp_path, "tjob", tiny_model_path)
    run_dir = tmp_path / "models" / "tjob"
    jobs.wait_until(job, lambda: checkpoint_steps(run_dir), "a training checkpoint", timeout_s=500)
    os.kill(jobs.driver_pid(job), signal.SIGKILL)
    assert jobs.wait(job, 120) == "FAILED"
    deadline = time.monotonic() + 60  # the worker group dies with its driver (no orphan keeps training)
    while cluster.find_pids(b"RayTrainWorker") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not cluster.find_pids(b"RayTrainWorker"), "Train workers outlived the killed job"
    at_kill = checkpoint_steps(run_dir)
    assert not (run_dir / "model" / "_SUCCESS.json").exists(), "the kill landed after the run finished"

    again = train_job(jobs, tmp_path, "tjob", tiny_model_path)
    assert jobs.wait(again) == "SUCCEEDED", jobs.logs(again)[-5000:]
    c = read_manifest(tmp_path / "runs", "tjob")["counts"]
    # the run's attempts: the killed job's from step 0, this one from the latest checkpoint
    assert c["attempt_start_steps"] == [0, c["resumed_from_step"]] and c["resumed_from_step"] == max(at_kill) >= 2, \
        (c, at_kill)
    assert c["steps"] == 16 > c["resumed_from_step"], c


# --- pair generation -------------------------------------------------------------------------------------
def pairs_job(jobs: Jobs, server: FakeOpenAIServer, tmp_path: Path, run: str) -> str:
    # one 1-CPU actor (a worker node to itself; the read task runs on the other), 8 notes a batch, 4 requests
    # in flight, 0.4 s per answer
    sets = ["synth.backend=openai", f"synth.openai.base_url={server.url}", "synth.openai.max_retries=1",
            "synth.openai.max_concurrency=4", "synth.concurrency=1", "synth.actor_num_cpus=1", "synth.batch_size=8",
            "synth.batches_per_actor=1", f"synth.output_dir={tmp_path / 'pairs'}",
            f"output.run_dir={tmp_path / 'runs'}", f"output.run_name={run}"]
    return jobs.submit(job_command("generate_pairs", "generate_pairs", sets))


def test_pairs_node_killed_every_note_once(cluster, jobs, tmp_path):
    from medembed.synth.ledger import read_ledger, read_pairs

    with FakeOpenAIServer(latency_s=0.4) as server:
        job = pairs_job(jobs, server, tmp_path, "pkill")
        jobs.wait_until(job, lambda: len(server.log) >= 40, "40 requests", timeout_s=300)
        pids = cluster.find_pids(b"NoteGenerator")
        assert pids, "no pair-generation actor alive"
        node = cluster.node_of_pid(pids[0])
        assert node >= 1
        cluster.kill_node(node)
        answered_at_kill = len(server.log)
        assert answered_at_kill < len(SAMPLE_IDS), "the kill landed after the last request"

        assert jobs.wait(job) == "SUCCEEDED", jobs.logs(job)[-5000:]
        c = read_manifest(tmp_path / "runs", "pkill")["counts"]
        ledger = read_ledger(str(tmp_path / "pairs"))
        pairs = read_pairs(str(tmp_path / "pairs"))
        redone = sum(1 for n in server.calls.values() if n > 1)

        # every note exactly once in the ledger, with pairs or a recorded failure
        ids = ledger[C.NOTE_ID].to_pylist()
        assert sorted(ids) == sorted(SAMPLE_IDS), f"{len(set(SAMPLE_IDS) - set(ids))} notes lost"
        rows = ledger.to_pylist()
        assert all((r[C.STATUS] == C.S_OK and r[C.N_PAIRS] > 0) or (r[C.STATUS] == C.S_FAILED and r[C.REASON])
                   for r in rows), [r for r in rows if r[C.STATUS] not in (C.S_OK, C.S_FAILED)][:3]
        per_note = Counter(pairs[C.NOTE_ID].to_pylist())
        assert per_note == {r[C.NOTE_ID]: r[C.N_PAIRS] for r in rows if r[C.N_PAIRS]}, "pairs do not match the ledger"
        assert c["notes_in"] == c["notes_ok"] + c["notes_failed"] == len(SAMPLE_IDS) and c["pairs_out"] == len(pairs)
        # only what was in flight on the lost node is redone: the actor's 2 batches (batches_per_actor + 1) of 8
        assert redone <= 16, f"{redone} notes were requested more than once"

        # a second run (the lost node replaced): every note is done, nothing is requested again
        cluster.add_worker()
        before = len(server.log)
        again = pairs_job(jobs, server, tmp_path, "pkill-again")
        assert jobs.wait(again) == "SUCCEEDED", jobs.logs(again)[-5000:]
        c2 = read_manifest(tmp_path / "runs", "pkill-again")["counts"]
        assert c2["notes_skipped_done"] == c["notes_ok"] and len(server.log) - before == c["notes_failed"], c2


# --- an S3 location that starts rejecting writes ---------------------------------------------------------
@pytest.fixture
def s3():
    with s3_environment(S3Process(), BUCKET) as server:
        yield server


def test_s3_rejecting_writes_fails_naming_the_location_then_resumes(jobs, s3, bundled_model_path, tmp_path):
    import lance

    from medembed.runtime.storage import DEFAULT_STORAGE
    db = f"s3://{BUCKET}/lancedb"
    uri = f"{db}/{SAMPLE_TABLE}.lance"

    def table():
        try:
            return lance.dataset(uri, storage_options=DEFAULT_STORAGE.storage_options(uri))
        except (ValueError, OSError):
            return None

    def submit(run: str, resume: bool = False) -> str:
        return jobs.submit(embed_command(db, tmp_path / "runs", run, resume), **s3.env)

    every = sample_chunk_ids(bundled_model_path)

    def committed_ids() -> list[str]:
        t = table()
        return t.to_table(columns=[S.CHUNK_ID]).column(0).to_pylist() if t is not None else []

    job = submit("s3-denied")
    jobs.wait_until(job, lambda: whole_documents_chunks(committed_ids(), every) > 0, "a whole document committed to S3")
    s3.deny_writes()
    assert jobs.wait(job) == "FAILED"
    logs = jobs.logs(job)
    assert f"cannot write data files to {uri}" in logs or f"cannot commit to {uri}" in logs, logs[-4000:]
    m = read_manifest(tmp_path / "runs", "s3-denied")
    assert m["status"] == "failed" and uri in m["error"], m.get("error")

    partial = committed_ids()  # still readable, at its last committed version, with whole commits only
    assert 0 < len(partial) == len(set(partial)), len(partial)

    s3.allow_writes()
    again = submit("s3-resumed", resume=True)
    assert jobs.wait(again) == "SUCCEEDED", jobs.logs(again)[-5000:]
    ids = table().to_table(columns=[S.CHUNK_ID]).column(0).to_pylist()
    assert len(ids) == len(set(ids)) and set(ids) == every > set(partial)
    c = read_manifest(tmp_path / "runs", "s3-resumed")["counts"]
    assert c["rows_before"] == len(partial) and c["rows_after"] == len(ids) == c["chunks_total"], c
    skipped = whole_documents_chunks(partial, every)
    assert c["chunks_unchanged_skipped"] == skipped > 0 and c["chunks_written"] == len(ids) - skipped, (c, len(partial))
