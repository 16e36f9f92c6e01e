"""Two real concurrent `reembed` runs, and a SIGKILLed one: the second writer exits 3 while the first holds
the lease; the killed run leaves what searches see untouched; the next run takes over its expired lease
and finishes the work."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lance
import pytest

from medembed import schema as S
from medembed.index.search import Retriever
from tests.support.paths import REPO

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

TABLE = "notes__all_minilm_l6_v2"


def note(i: int, edition: int) -> dict:
    body = " ".join(f"finding{(i * 13 + k * (edition + 3)) % 97}" for k in range(40))
    return {"id": f"d{i:02d}", "title": f"Case {i}", "text": f"Patient {i}, edition {edition}: {body}"}


def write_corpus(folder: Path, edition: int, n: int = 16) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "notes.jsonl").write_text("".join(json.dumps(note(i, edition)) + "\n" for i in range(n)))
    return folder


def overrides(tmp: Path, corpus: Path, db: str = "db") -> list[str]:
    return [f"input.uri={corpus}", f"store.uri={tmp / db}", "store.corpus_name=notes", f"output.run_dir={tmp / 'runs'}",
            "chunking.max_tokens=32", "chunking.overlap_tokens=4", "sync.lease_ttl_s=15"]


def run(tmp: Path, corpus: Path, name: str, *extra: str, db: str = "db") -> tuple[int, dict]:
    from medembed.app.registry import by_name
    from medembed.app.runner import run_job

    args = argparse.Namespace(config=None, overrides=[*overrides(tmp, corpus, db), *extra, f"output.run_name={name}"],
                              print_config=False, verbose=False)
    code = run_job(by_name("reembed"), args)
    return code, json.loads((tmp / "runs" / name / "manifest.json").read_text())


def start(tmp: Path, corpus: Path, name: str, address: str) -> subprocess.Popen:
    """A real run in its own driver process, small blocks: many staged fragments.

    It joins the test's Ray instance (as a job submitted to a cluster would): a second local instance on
    a loaded 2-core machine often fails Ray's fixed 30 s node start-up deadline.
    """
    env = {**os.environ, "RAY_ADDRESS": address, "HF_HUB_OFFLINE": "1"}
    sets = [*overrides(tmp, corpus), f"output.run_name={name}", "input.rows_per_block=2", "chunking.batch_size=2",
            "embed.batch_size=2", "embed.block_mib=0.001"]
    return subprocess.Popen([sys.executable, str(REPO / "jobs" / "reembed.py"), *[a for s in sets for a in ("--set", s)]],
                            cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def data_files(uri: str) -> set[str]:
    d = Path(uri) / "data"
    return {p.name for p in d.iterdir()} if d.exists() else set()


def test_concurrent_and_killed_runs(ray_local, tmp_path):
    corpus = write_corpus(tmp_path / "corpus", edition=0)
    code, first = run(tmp_path, corpus, "v1")
    assert code == 0, first.get("error")
    uri = str(tmp_path / "db" / f"{TABLE}.lance")
    pointer_file = tmp_path / "db" / "_medembed" / "serving" / "notes.json"
    pointer, version = pointer_file.read_text(), lance.dataset(uri).version
    committed = data_files(uri)

    write_corpus(corpus, edition=1)  # every document changed
    job = start(tmp_path, corpus, "killed", ray_local.get_runtime_context().gcs_address)
    try:
        deadline = time.monotonic() + 420
        while time.monotonic() < deadline and job.poll() is None and not (data_files(uri) - committed):
            time.sleep(0.05)
        assert job.poll() is None, f"the run ended before it staged anything: {job.stderr.read()[-3000:]}"
        os.killpg(job.pid, signal.SIGSTOP)  # frozen mid-run (fragments staged, nothing committed), lease held

        # a second, concurrent run against the same table exits 3 at once, naming the holder
        code, second = run(tmp_path, corpus, "second-writer")
        assert code == 3 and second["status"] == "failed"
        assert "LeaseHeld" in second["error"] and "run killed" in second["error"]
    finally:
        os.killpg(job.pid, signal.SIGKILL)  # the driver, no clean-up (Ray then ends the job's workers)
        job.wait(timeout=60)

    # what searches see is untouched: same table version, same pointer, the old documents
    assert lance.dataset(uri).version == version, "the kill landed after the commit; the test needs it before"
    assert pointer_file.read_text() == pointer
    r = Retriever.open(str(tmp_path / "db"), "notes")
    texts = r.rows()[S.TEXT]
    assert sum("edition 0" in t for t in texts) == 16 and not any("edition 1" in t for t in texts)

    # the next run waits for the dead run's lease to expire, takes it over and finishes the work
    code, m = run(tmp_path, corpus, "after-kill", "sync.lease_wait_s=120")
    assert code == 0, m.get("error")
    assert m["lease"]["took_over"]["run_id"] == "killed"
    c = m["counts"]
    assert (c["documents_changed"], c["documents_new"], c["documents_unchanged"]) == (16, 0, 0)
    assert c["rows_after"] == c["chunks_in_corpus"] == c["chunks_embedded"]
    assert c["chunks_removed"] == c["rows_before"] == first["counts"]["rows_after"]  # every old chunk replaced
    assert m["versions"]["after_commit"] == version + 1
    r = Retriever.open(str(tmp_path / "db"), "notes")
    texts = r.rows()[S.TEXT]
    assert len(texts) == c["chunks_in_corpus"]
    assert sum("edition 1" in t for t in texts) == 16 and not any("edition 0" in t for t in texts)
    ids = list(r.rows()[S.CHUNK_ID])
    assert len(ids) == len(set(ids))
    assert {d for d in r.rows()[S.DOC_ID]} == {f"d{i:02d}" for i in range(16)}
