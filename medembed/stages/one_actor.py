"""Small embed jobs in one actor: read, chunk, embed and write the data files where the model is loaded.

On small inputs Ray's fixed costs dominate the embed job. The streaming pipeline starts Ray Data's own
actors (stats, autoscaling, block locations), the embedder pool and the writer actor: five process starts
that share a small machine with the model load. :class:`CorpusWorker` runs the streaming path's own stage
functions (``ReadPlan.blocks`` over ``read_task_batches``, ``chunk_selected_documents``, ``ChunkEmbedder``,
``FragmentWriter``) in one actor. The job starts it as soon as the model is known, so the model loads
while the driver plans. The driver commits the fragments it returns through the same ``Committer``
(``index.writer.commit_fragments``): one write path, exactly once. The job picks it with
``embed.one_actor_max_mib``.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import ray

from medembed.embedding.chunking import ChunkParams
from medembed.embedding.embedder import ChunkEmbedder
from medembed.index.changes import chunk_selected_documents
from medembed.index.writer import FRAGMENT_SCHEMA, FragmentWriter
from medembed.ingest import ReadPlan
from medembed.runtime.memory import cpu_actor_options
from medembed.runtime.storage import Storage
from medembed.runtime.watchdog import StalledError


class CorpusWorker:
    """Reads, chunks and embeds a whole (small) input with the one encoder it loaded; writes its data files."""

    def __init__(self, encoder: dict[str, Any]):
        self.embedder = ChunkEmbedder(**encoder)

    def document_hashes(self, plan: ReadPlan, params: ChunkParams) -> pa.Table:
        """``(doc_id, doc_hash, source)`` of every document of ``plan`` (read and hashed, not tokenized)."""
        from medembed.index.diff import CORPUS_SCHEMA, hash_documents

        return pa.concat_tables([CORPUS_SCHEMA.empty_table()] + [hash_documents(d, params) for d in plan.blocks()])

    def embed_and_write(self, plan: ReadPlan, params: ChunkParams, embed_sets: Any, counters: Any, uri: str,
                        schema: pa.Schema, storage: Storage) -> pa.Table:
        """The fragments written for every document of ``plan`` that ``embed_sets`` selects (None: all of them)
        (``FRAGMENT_SCHEMA`` rows)."""
        chunks = [c for c in (chunk_selected_documents(docs, params, embed_sets, counters) for docs in plan.blocks())
                  if c.num_rows]
        if not chunks:
            return FRAGMENT_SCHEMA.empty_table()
        # one call: the encoder sorts the whole input by length, which pads far less than per-block calls
        return FragmentWriter(uri, schema, storage)(self.embedder(pa.concat_tables(chunks)))


def is_small(plan: ReadPlan, max_mib: float) -> bool:
    """Whether ``plan``'s input files hold at most ``max_mib`` MiB (dataset slices never count as small)."""
    if max_mib <= 0:
        return False
    limit = int(max_mib * (1 << 20))
    size = plan.input_bytes(stop_above=limit)
    return size is not None and size <= limit


def start_worker(encoder: dict[str, Any], num_cpus: float, num_gpus: float, keep_memory: bool = True):
    """A :class:`CorpusWorker` actor (a handle). A lost actor is restarted and its call retried: a retry
    rewrites data files that no commit references yet, so the table still gets every row once."""
    return ray.remote(CorpusWorker).options(num_cpus=num_cpus, num_gpus=num_gpus, max_restarts=3, max_task_retries=3,
                                            **cpu_actor_options(num_gpus, keep_memory)).remote(encoder)


def document_hashes(worker, plan: ReadPlan, params: ChunkParams) -> Any:
    """An ObjectRef of ``worker``'s ``(doc_id, doc_hash, source)`` table of ``plan`` (for ``diff_hashes``)."""
    return worker.document_hashes.remote(plan.start_registry(), params)


def embed_and_write(worker, plan: ReadPlan, params: ChunkParams, embed_sets: Any, counters: Any, uri: str,
                    schema: pa.Schema, storage: Storage, timeout_s: float | None) -> pa.Table:
    """The fragments ``worker`` wrote for ``plan``; :class:`StalledError` after ``timeout_s`` (None, 0: wait).
    The caller kills the worker when done (or stalled)."""
    ref = worker.embed_and_write.remote(plan.start_registry(), params, embed_sets, counters, uri, schema, storage)
    try:
        return ray.get(ref, timeout=timeout_s or None)
    except ray.exceptions.GetTimeoutError as e:
        raise StalledError(f"writing {uri}: the embedding actor returned nothing in {timeout_s:.0f} s "
                           "(embed.stall_timeout_s)") from e
