"""A small embed job runs in one actor; killing that actor's process mid-run must not lose or duplicate a row.

The actor is restarted and its call retried (``max_restarts``, ``max_task_retries``): the retry rewrites data
files that no commit references yet, and the driver commits once.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import lance
import pytest

from medembed import schema as S
from medembed.config import EmbedJobConfig, load_config
from medembed.jobs.embed import embed
from medembed.runtime.manifest import RunManifest
from tests.support.e2e_jobs import MAX_TOKENS, OVERLAP, SAMPLE_TABLE, sample_chunk_ids
from tests.support.ray_cluster import RayCluster, pids_titled

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

TITLE = "CorpusWorker.embed_and_write"  # Ray's process title while the actor runs that call


def _busy_worker() -> int | None:
    """The pid of the process running the actor's call (its title, as /proc shows it), if any: one of this test
    process's local Ray instance (its descendants), never a worker of another test run on the machine."""
    found = pids_titled(TITLE.encode(), RayCluster.process_tree(os.getpid()))
    return found[0] if found else None


def test_one_actor_killed_mid_run_leaves_every_chunk_once(ray_local, bundled_model_path, tmp_path):
    cfg = load_config(EmbedJobConfig, "embed", [
        f"store.uri={tmp_path / 'db'}", f"output.run_dir={tmp_path / 'runs'}", f"chunking.max_tokens={MAX_TOKENS}",
        f"chunking.overlap_tokens={OVERLAP}", "embed.stall_timeout_s=300"])
    manifest = RunManifest("embed", cfg.output.run_dir, cfg.model_dump(mode="json"), run_id="killed")
    out: dict = {}

    def job() -> None:
        try:
            out["counts"] = embed(cfg, manifest)
        except BaseException as e:  # reported below
            out["error"] = e

    t = threading.Thread(target=job, daemon=True)
    t.start()
    deadline = time.monotonic() + 180
    victim = None
    while victim is None and time.monotonic() < deadline and t.is_alive():
        victim = _busy_worker()
        time.sleep(0.2)
    assert victim is not None, "the one actor never ran its call (or the job ended before it could be killed)"
    time.sleep(2)  # inside the call: reading, chunking or encoding
    os.kill(victim, signal.SIGKILL)
    t.join(timeout=420)
    assert not t.is_alive(), "the job did not finish after its actor was killed"
    assert "error" not in out, out.get("error")
    assert manifest.data["execution"] == "one actor"
    ids = lance.dataset(str(tmp_path / "db" / f"{SAMPLE_TABLE}.lance")).to_table(columns=[S.CHUNK_ID]).column(0).to_pylist()
    expected = sample_chunk_ids(bundled_model_path)
    assert len(ids) == len(set(ids)) == len(expected) and set(ids) == expected
    counts = out["counts"]
    assert counts["chunks_written"] == len(expected) and counts["commits"] == 1
    assert counts["quarantined"] == 0 and counts["chunks_total"] == len(expected)
