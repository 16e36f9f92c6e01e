"""The one streaming write path into a LanceDB table: two-phase, exactly once, with progress and throughput.

Workers (a ``FragmentWriter`` actor) write Lance data files and return only fragment metadata;
the driver (``Committer``) commits them in groups. A task that Ray retries leaves orphan files that
no commit references, so a row lands exactly once. ``write_dataset`` is the sink every job uses:
a Ray Dataset of table rows in, commit statistics out; ``commit_fragments`` commits what a
``FragmentWriter`` inside a model actor wrote (small jobs, no writer actor).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from medembed import schema as S
from medembed.index.sql import in_filter
from medembed.runtime.console import Progress
from medembed.runtime.memory import peak_rss_mib
from medembed.runtime.storage import DEFAULT_STORAGE, Storage
from medembed.runtime.watchdog import watch

log = logging.getLogger(__name__)


# what a FragmentWriter emits per written fragment, and what the driver's Committer takes
FRAGMENT_SCHEMA = pa.schema([("fragment", pa.string()), ("rows", pa.int64()), ("doc_ids", pa.list_(pa.string())),
                             ("tokens", pa.int64())])


class FragmentWriter:
    """Ray Data callable class: embedded chunk rows -> Lance data files; emits fragment metadata."""

    def __init__(self, uri: str, schema: pa.Schema, storage: Storage = DEFAULT_STORAGE):
        self.uri = uri
        self.schema = schema
        self.storage_options = storage.lance_options(uri)

    def __call__(self, batch: pa.Table) -> pa.Table:
        from lance.fragment import write_fragments

        data = batch.select(self.schema.names).cast(self.schema)
        try:
            frags = write_fragments(data, self.uri, schema=self.schema, storage_options=self.storage_options)
        except Exception as e:  # name the location: the storage error alone often does not
            raise WriteError(f"cannot write data files to {self.uri}: {type(e).__name__}: {e}") from e
        return pa.table({
            "fragment": [json.dumps(f.to_json()) for f in frags],
            "rows": [f.physical_rows for f in frags],
            "doc_ids": [sorted(set(data.column(S.DOC_ID).to_pylist()))] + [[] for _ in frags[1:]],
            "tokens": [int(pa.compute.sum(data.column(S.N_TOKENS)).as_py() or 0)] + [0 for _ in frags[1:]],
        }, schema=FRAGMENT_SCHEMA)


class WriteError(OSError):
    """Writing to the table's location failed; the message names the location. Committed versions stay readable."""


@dataclass
class CommitStats:
    rows: int = 0
    tokens: int = 0
    fragments: int = 0
    commits: int = 0
    documents_replaced: int = 0
    versions: list[int] = field(default_factory=list)


# Every Lance commit writes a manifest that lists every fragment of the table (~4 us per listed fragment and
# commit, bench/commit_scale.py), so commits of a fixed size cost O(fragments^2) over a run (10M rows in 1 MiB
# fragments, every 64: 346 commits, 16 s). Past COMMIT_GROWTH_FROM committed fragments a commit also waits for
# 1/COMMIT_GROWTH of the fragments committed so far: the commits grow geometrically, and their total cost is
# linear (about COMMIT_GROWTH + 1 manifest entries per fragment). Below it (every test and small job) commits
# come every ``store.commit_every`` fragments as before; a crash re-does at most 1/COMMIT_GROWTH of the work.
COMMIT_GROWTH_FROM = 1024
COMMIT_GROWTH = 8


class Committer:
    """Driver side of the two-phase write: commits fragment groups to the table."""

    def __init__(self, uri: str, schema: pa.Schema, storage: Storage, known: dict[str, str], every: int,
                 growth: int = COMMIT_GROWTH):
        self.uri = uri
        self.schema = schema
        self.storage_options = storage.lance_options(uri)
        self.known = dict(known)  # documents whose stored chunks the next commit with any of their chunks replaces
        self.every = every
        self.growth = growth  # 0: fixed groups of ``every`` at any size
        self.pending: list[Any] = []
        self.pending_docs: list[str] = []
        self.stats = CommitStats()
        existing = storage.lance_dataset(uri)
        # the version only, not the dataset: an open dataset holds its manifest (every fragment of the table) and
        # the driver would hold it between commits for the whole run
        self._version: int | None = existing.version if existing is not None else None

    def add(self, fragment_json: str, rows: int, doc_ids: list[str], tokens: int) -> None:
        from lance.fragment import FragmentMetadata

        self.pending.append(FragmentMetadata.from_json(fragment_json))
        if self.known:  # only a stored document's ids matter at commit; a new table's would pile up for nothing
            self.pending_docs.extend(doc_ids)
        self.stats.rows += rows
        self.stats.tokens += tokens
        if self._due():
            self.flush()

    def _due(self) -> bool:
        n, done = len(self.pending), self.stats.fragments
        if n < self.every:
            return False
        return not (self.growth and done >= COMMIT_GROWTH_FROM) or n >= done // self.growth

    def flush(self) -> None:
        if not self.pending:
            return
        try:
            self._commit()
        except Exception as e:
            last = self._version
            at = f"version {last}" if last is not None else "its last committed version"
            raise WriteError(f"cannot commit to {self.uri}: {type(e).__name__}: {e} (the table stays readable at "
                             f"{at}; a re-run resumes from there)") from e

    def _commit(self) -> None:
        import lance

        if self._version is None:
            op = lance.LanceOperation.Overwrite(self.schema, self.pending)
            ds = lance.LanceDataset.commit(self.uri, op, storage_options=self.storage_options)
        else:
            read_version = self._version
            replaced = sorted({d for d in self.pending_docs if d in self.known})
            if replaced:  # changed documents: remove all their old chunks first
                ds = lance.dataset(self.uri, version=read_version, storage_options=self.storage_options)
                for k in range(0, len(replaced), 1000):
                    ds.delete(in_filter(S.DOC_ID, replaced[k:k + 1000]))
                read_version = ds.version
                self.stats.documents_replaced += len(replaced)
                for d in replaced:  # once: a document's new chunks can span several commits; a later one must
                    del self.known[d]  # not delete the ones an earlier one just wrote
            op = lance.LanceOperation.Append(self.pending)
            ds = lance.LanceDataset.commit(self.uri, op, read_version=read_version, storage_options=self.storage_options)
        self._version = ds.version
        self.stats.fragments += len(self.pending)
        self.stats.commits += 1
        self.stats.versions.append(self._version)
        self.pending, self.pending_docs = [], []


@dataclass
class WriteResult:
    """What a ``write_dataset`` call committed, and how fast."""

    stats: CommitStats
    elapsed_s: float = 0.0
    first_write_s: float | None = None  # start -> the first fragment reached the driver
    first_rows: int = 0  # rows and tokens of that first fragment (excluded from the steady state)
    first_tokens: int = 0
    executions: int = 0  # Ray Data executions (waves) that wrote it; 0: none (fragments written elsewhere)
    runner_peak_rss_mib: float | None = None  # the largest peak RSS of a wave runner's process (None: no runner)

    @property
    def steady_s(self) -> float:
        """From the first written fragment to the last commit: excludes start-up (actors, model load)."""
        return self.elapsed_s - self.first_write_s if self.first_write_s is not None else 0.0

    def throughput(self) -> dict[str, Any]:
        st, steady = self.stats, self.steady_s
        return {
            "chunks_per_s": round(st.rows / self.elapsed_s, 2) if self.elapsed_s else None,
            "tokens_per_s": round(st.tokens / self.elapsed_s, 2) if self.elapsed_s else None,
            "pipeline_s": round(self.elapsed_s, 3),
            "first_write_s": round(self.first_write_s, 3) if self.first_write_s is not None else None,
            "first_write_rows": self.first_rows,
            "steady_s": round(steady, 3),
            "steady_chunks_per_s": round((st.rows - self.first_rows) / steady, 2) if steady > 0 else None,
            "steady_tokens_per_s": round((st.tokens - self.first_tokens) / steady, 2) if steady > 0 else None,
        }


def fragment_writers(rows: ray.data.Dataset, uri: str, schema: pa.Schema, *, storage: Storage = DEFAULT_STORAGE,
                     block_mib: float = 1.0, writers: int = 1) -> ray.data.Dataset:
    """The one pool of ``FragmentWriter`` actors: ``rows`` written as Lance data files, one output row per fragment.

    Nothing is committed here (the driver commits the fragments' metadata). ``writers`` actors write in
    parallel (one CPU core writes ~60k chunks/s of 384-dim vectors, 16 CPU-s per million in bench/RESULTS.md scale; a GPU cluster
    that embeds faster than that needs more).
    """
    written = rows.map_batches(
        FragmentWriter, fn_constructor_kwargs={"uri": uri, "schema": schema, "storage": storage},
        batch_format="pyarrow", batch_size=None, compute=ray.data.ActorPoolStrategy(size=writers), num_cpus=0)
    # Ray Data buffers a map stage's output until a block reaches target_max_block_size (128 MiB by
    # default). Our UDF outputs are ~1-2 MiB (one chunking or embedding batch), and read -> chunk -> embed
    # fuse into the embedder actor, so with the default a 5k-chunk corpus left the actor as ONE block at the
    # very end: nothing was written until everything was embedded. A small target (this execution only,
    # not the global context) makes every batch flow on.
    written.context.target_max_block_size = int(block_mib * (1 << 20))
    return written


def write_dataset(rows: ray.data.Dataset | Iterable[ray.data.Dataset], uri: str, schema: pa.Schema, *,
                  storage: Storage = DEFAULT_STORAGE, known: dict[str, str] | None = None, commit_every: int = 64,
                  block_mib: float = 1.0, progress: str = "rows written", stall_timeout_s: float | None = None,
                  writers: int = 1) -> WriteResult:
    """Stream ``rows`` (table rows, ``schema`` columns) into the table at ``uri``; return what was committed.

    ``rows`` may be a series of datasets (waves), executed one after another through one committer: commits
    run on across them as for one dataset. Each execution runs in a wave runner (:func:`_run_wave`), a Ray
    worker process of its own that exits afterwards, so the per-block state Ray keeps for an execution never
    reaches the driver, which only commits.

    ``known`` (doc_id -> signature of stored documents) marks documents whose stored chunks are
    replaced by the incoming ones. A new table is created by the first commit. With ``stall_timeout_s``,
    no new fragment for that long raises :class:`~medembed.runtime.watchdog.StalledError` (what was committed
    stays committed) instead of waiting forever on a stuck actor pool.
    """
    waves = [rows] if isinstance(rows, ray.data.Dataset) else rows
    executions, running, peaks = 0, [], []

    def fragment_rows() -> Iterator[dict[str, Any]]:
        nonlocal executions
        for wave in waves:
            executions += 1
            yield from _wave_rows(fragment_writers(wave, uri, schema, storage=storage, block_mib=block_mib,
                                                   writers=writers), running, peaks)

    try:
        result = _commit(watch(fragment_rows(), stall_timeout_s, f"writing {uri}"), uri, schema, storage, known,
                         commit_every, progress)
    except BaseException:
        for gen in running:  # a stall or a failed commit: stop the wave's execution, not leave it writing
            ray.cancel(gen, force=True)
        raise
    result.executions = executions
    result.runner_peak_rss_mib = max(peaks, default=None)
    return result


# A wave runner hands the driver what was written in the last second as one item, not one item per block:
# the driver owns every item (an object of the streaming generator) and keeps some bookkeeping per item after it
# is freed (~0.9 KB in a model-free test), and per-block items would make that grow with the table's fragments.
RUNNER_YIELD_S = 1.0


@ray.remote(num_cpus=0, max_calls=1, max_retries=0, num_returns="streaming")
def _run_wave(written: ray.data.Dataset) -> Iterator[list[dict[str, Any]] | float]:
    """A wave runner: execute ``written`` (a ``fragment_writers`` dataset) here and yield its output rows, at most one
    item each :data:`RUNNER_YIELD_S` (a block that comes sooner waits for the next one), then this process's peak
    RSS (MiB).

    ``max_calls=1``: the process exits afterwards and takes the execution's per-block state (Ray Data's block stats
    and metadata, Ray's own bookkeeping; 2-6 KB per block) with it. ``max_retries=0``: a retried runner would execute
    the wave again and stream other fragments under the indexes already consumed, so a lost runner fails the job,
    which resumes from its last commit as after a lost driver."""
    rows, last = [], time.monotonic()
    for block in written.iter_batches(batch_size=None, batch_format="pyarrow"):
        rows += block.to_pylist()
        if time.monotonic() - last >= RUNNER_YIELD_S:
            yield rows
            rows, last = [], time.monotonic()
    if rows:
        yield rows
    yield peak_rss_mib()


def _wave_rows(written: ray.data.Dataset, running: list[Any], peaks: list[float]) -> Iterator[dict[str, Any]]:
    """The output rows of ``written``, executed by a wave runner on the driver's node (where the execution ran
    before it had a process of its own); ``running`` holds the runner while it runs, to cancel it on failure, and
    ``peaks`` gets its peak RSS."""
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)
    gen = _run_wave.options(scheduling_strategy=here, name="medembed.write_wave").remote(written)
    running[:] = [gen]
    for ref in gen:
        out = ray.get(ref)
        if isinstance(out, float):
            peaks.append(out)
        else:
            yield from out
    running.clear()


def commit_fragments(fragments: pa.Table, uri: str, schema: pa.Schema, *, storage: Storage = DEFAULT_STORAGE,
                     known: dict[str, str] | None = None, commit_every: int = 64,
                     progress: str = "rows written") -> WriteResult:
    """Commit fragments that a ``FragmentWriter`` wrote elsewhere (its output table), as ``write_dataset`` does.

    For a model actor that holds its rows already: it writes their data files itself, the driver commits
    here, and no writer actor or Ray Data pipeline starts (seconds, on small jobs)."""
    return _commit(fragments.to_pylist(), uri, schema, storage, known, commit_every, progress)


def _commit(fragment_rows: Iterable[dict[str, Any]], uri: str, schema: pa.Schema, storage: Storage,
            known: dict[str, str] | None, commit_every: int, progress: str) -> WriteResult:
    committer = Committer(uri, schema, storage, known or {}, commit_every)
    result = WriteResult(committer.stats)
    t0 = time.perf_counter()
    with Progress(progress, unit="rows") as bar:
        for row in fragment_rows:
            if result.first_write_s is None:
                result.first_write_s = time.perf_counter() - t0
                result.first_rows, result.first_tokens = int(row["rows"]), int(row["tokens"])
            committer.add(row["fragment"], int(row["rows"]), list(row["doc_ids"]), int(row["tokens"]))
            bar.update(int(row["rows"]))
        committer.flush()
    result.elapsed_s = time.perf_counter() - t0
    log.info("wrote %d rows to %s in %d commits (%.1f s)", result.stats.rows, uri, result.stats.commits,
             result.elapsed_s)
    return result
