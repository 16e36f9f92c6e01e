"""Submitting medembed jobs to a test cluster through Ray's job API, and following them (e2e tests)."""

from __future__ import annotations

import json
import shlex
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.paths import REPO, sample_notes
from tests.support.ray_cluster import RayCluster

# what the working-dir upload leaves out: VCS, local outputs and caches (keeps the upload small)
EXCLUDES = [".git", "lancedb", "runs", "output", "bench", "**/__pycache__", "*.lance", ".pytest_cache",
            "*.egg-info", ".venv", "build", "dist", "tests"]
JOB_ENV = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
ENDED = ("SUCCEEDED", "FAILED", "STOPPED")

# the embed job on the bundled sample, streaming small blocks and committing every fragment, so that a fault
# lands in the middle of the run
SAMPLE_TABLE = "sample__all_minilm_l6_v2"  # <store.corpus_name>__<model slug> of embed.yaml
MAX_TOKENS, OVERLAP = 32, 8
EMBED_STREAMING = ["embed.one_actor_max_mib=0", "input.rows_per_block=8", "chunking.batch_size=8", "embed.batch_size=16",
                   "store.commit_every=1", "embed.block_mib=0.01", "embed.stall_timeout_s=150", f"chunking.max_tokens={MAX_TOKENS}",
                   f"chunking.overlap_tokens={OVERLAP}", "store.compact=false"]
# the run after a fault: the same chunking and path, but blocks and commits of the usual size (what it resumes is
# in the table, not in how it commits; one commit instead of one per 8 rows)
EMBED_RESUME = [s for s in EMBED_STREAMING
                if s.split("=", 1)[0] not in ("input.rows_per_block", "chunking.batch_size", "store.commit_every",
                                              "embed.block_mib")]


def whole_documents_chunks(ids: list[str] | set[str], every: set[str]) -> int:
    """Chunks of the documents every chunk of which is in ``ids``: what a resumed run skips (a commit may end
    inside a document; that document is embedded again, replacing its committed chunks). ``every``: all chunk ids."""
    doc = lambda i: i.rsplit("#", 1)[0]
    per_doc, held = Counter(map(doc, every)), Counter(map(doc, set(ids)))
    return sum(n for d, n in held.items() if n == per_doc[d])


def sample_chunk_ids(model_path: str) -> set[str]:
    """Chunk ids of the bundled sample corpus under EMBED_STREAMING's chunking, computed here without Ray."""
    import pyarrow as pa

    from medembed import schema as S
    from medembed.embedding.chunking import ChunkParams, chunk_batch
    from medembed.ingest.normalize import clean_text

    notes = sample_notes()
    docs = pa.table({S.DOC_ID: [n["id"] for n in notes], S.TITLE: [clean_text(n.get("title") or "") for n in notes],
                     S.TEXT: [clean_text(n["text"]) for n in notes], S.METADATA: ["{}"] * len(notes)})
    ids = chunk_batch(docs, ChunkParams(model_path, MAX_TOKENS, OVERLAP, 0)).column(S.CHUNK_ID).to_pylist()
    assert len(ids) == len(set(ids)) > 2 * len(notes)
    return set(ids)


def _started(**kwargs: object) -> RayCluster:
    """A started :class:`RayCluster` (``start`` retried: ``ray start`` has a fixed 30 s registration deadline a
    loaded machine can miss)."""
    c = RayCluster(**{"start_timeout_s": 180, **kwargs})
    c.start(attempts=6)
    return c


def _stopped(c: RayCluster) -> None:
    c.stop()
    assert c._our_pids() == [], "processes of the test cluster survived its teardown"


@contextmanager
def running_cluster(**kwargs: object) -> Iterator[RayCluster]:
    """A started cluster (:func:`_started`), stopped at the end, with a check that none of its processes survived."""
    c = _started(**kwargs)
    try:
        yield c
    finally:
        _stopped(c)


class SharedCluster:
    """One test cluster of a given layout shared by the modules that ask for it (run one after another: see
    ``tests.support.ray_retry.order_modules``), started on first use and stopped (with the survivor check of
    :func:`running_cluster`) before a module that does not use it and at the end of the session. A fault test
    that kills a worker node starts a replacement; should it fail before that, the next module's ``acquire``
    starts the missing workers, so every module gets the full layout."""

    def __init__(self, **kwargs: object):
        self.kwargs = kwargs
        self.cluster: RayCluster | None = None

    def acquire(self) -> RayCluster:
        c = self.cluster
        if c is not None and (not c.procs or c.procs[0].poll() is not None):  # head gone: start afresh
            self.release()
            c = None
        if c is None:
            c = self.cluster = _started(**self.kwargs)
        else:
            for _ in range(c.num_workers - sum(p.poll() is None for p in c.procs[1:])):
                c.add_worker()
        return c

    def release(self) -> None:
        c, self.cluster = self.cluster, None
        if c is not None:
            _stopped(c)


def runtime_env(**env_vars: str) -> dict:
    return {"working_dir": str(REPO), "excludes": EXCLUDES, "env_vars": {**JOB_ENV, **env_vars}}


def job_command(script: str, config: str, sets: list[str]) -> str:
    """``python jobs/<script>.py --config <config> --set ...`` (each override quoted for the shell)."""
    return shlex.join(["python", f"jobs/{script}.py", "--config", config, *[a for s in sets for a in ("--set", s)]])


def embed_command(db: str | Path, run_dir: Path, run: str, resume: bool = False) -> str:
    """The embed job on the bundled sample into ``db``: EMBED_STREAMING (the faulted run) or EMBED_RESUME."""
    sets = [f"store.uri={db}", f"output.run_dir={run_dir}", f"output.run_name={run}",
            *(EMBED_RESUME if resume else EMBED_STREAMING)]
    return job_command("embed", "embed", sets)


def read_manifest(run_dir: Path, run_name: str) -> dict:
    return json.loads((run_dir / run_name / "manifest.json").read_text())


class Jobs:
    """Ray's ``JobSubmissionClient`` on a test cluster (token auth), with waiting that is bounded in time."""

    def __init__(self, cluster: RayCluster):
        from ray.job_submission import JobSubmissionClient

        self.client = JobSubmissionClient(cluster.dashboard_url, headers=cluster.auth_headers)

    def submit(self, entrypoint: str, **env_vars: str) -> str:
        return self.client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env(**env_vars))

    def status(self, job_id: str) -> str:
        return str(self.client.get_job_status(job_id).value)

    def logs(self, job_id: str) -> str:
        return self.client.get_job_logs(job_id)

    def driver_pid(self, job_id: str) -> int:
        info = self.client.get_job_info(job_id)
        assert info.driver_info is not None and info.driver_info.pid, info
        return int(info.driver_info.pid)

    def wait(self, job_id: str, timeout_s: float = 600) -> str:
        """The job's final status; a job still running after ``timeout_s`` is stopped and fails the test."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            status = self.status(job_id)
            if status in ENDED:
                return status
            time.sleep(1.0)
        self.client.stop_job(job_id)
        raise AssertionError(f"job {job_id} still running after {timeout_s}s:\n{self.logs(job_id)[-5000:]}")

    def wait_until(self, job_id: str, cond: Callable[[], object], what: str, timeout_s: float = 400) -> object:
        """Poll ``cond`` while the job runs; its first truthy value. Fails if the job ends first or time runs out."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            value = cond()
            if value:
                return value
            if self.status(job_id) in ENDED:
                break
            time.sleep(0.2)
        raise AssertionError(f"{what}: not seen while job {job_id} ran:\n{self.logs(job_id)[-4000:]}")
