"""Small mining jobs in one actor: a single start-up and model load for both of the job's model stages.

On small inputs Ray's fixed costs dominate: two actor pools (one embedding the positives, one mining)
each start processes and load the model. :class:`MiningWorker` holds one encoder and serves both
stages with the stages' own classes (``ChunkEmbedder``, ``NegativeMiner``), so both paths compute
the same rows; the job picks it with ``mining.one_actor_max_pairs``. Up to ``mining.in_driver_max_pairs``
(CPU only) the same worker runs in the driver process behind the same calls (``runtime.in_process``).

The calls queue on the actor in the order they are made (:func:`write_then_encode`, then :func:`mined`):
the actor writes the embedded positives' data files itself (no writer actor; the driver commits them), and
encodes the queries while the driver commits and finalizes the candidate table, which mining has to wait for.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import ray

from medembed.embedding.embedder import ChunkEmbedder
from medembed.index.writer import FragmentWriter
from medembed.mining.miner import NegativeMiner
from medembed.runtime.in_process import InProcess
from medembed.runtime.memory import cpu_actor_options
from medembed.runtime.storage import Storage
from medembed.synth import columns as P


class MiningWorker:
    """Embeds candidate rows, encodes every query ahead, then mines pairs, with the one encoder it loaded."""

    def __init__(self, encoder: dict[str, Any]):
        self.embedder = ChunkEmbedder(**encoder)
        self.miner: NegativeMiner | None = None
        self.query_vectors: np.ndarray | None = None

    def embed_and_write(self, rows: pa.Table, uri: str, schema: pa.Schema, storage: Storage) -> pa.Table:
        """Embed ``rows`` in one call and write them as Lance data files; the fragments, for the driver to commit."""
        return FragmentWriter(uri, schema, storage)(self.embedder(rows))

    def encode_queries(self, pairs: pa.Table) -> int:  # pairs: the job's pairs (only the query column is read)
        """Encode all queries in one call: the encoder sorts them by length, and a length-sorted whole pads
        far less than mining-batch slices do (2,048 PMC-Patients queries: 32.6 s at once, 62.6 s in 256s)."""
        self.query_vectors = self.embedder.encoder.encode_queries(pairs[P.QUERY].to_pylist())
        return pairs.num_rows

    def import_miner_libraries(self) -> None:
        """Import what the miner opens the candidate table with (LanceDB: ~3 s of single-threaded imports),
        queued while the driver still writes that table; otherwise the first mining call pays it."""
        import lancedb  # noqa: F401

    def mine(self, start: int, pairs: pa.Table, miner: dict[str, Any]) -> pa.Table:
        """Rows of ``pairs``, the slice of the job's pairs that begins at row ``start``."""
        if self.miner is None:  # the candidate table is complete once mining starts
            self.miner = NegativeMiner(encoder=self.embedder.encoder, **miner)
        # a restarted actor has lost what it encoded ahead: the miner then encodes the batch itself
        ahead = None if self.query_vectors is None else self.query_vectors[start:start + pairs.num_rows]
        return self.miner(pairs, ahead)


def start_worker(encoder: dict[str, Any], num_cpus: float, num_gpus: float, in_driver: bool = False,
                 keep_memory: bool = True):
    """A :class:`MiningWorker` actor (a handle); it lives until the job stops it (``in_process.stop``).

    A lost actor is restarted and its pending calls retried (a few times): ``embed`` is stateless and
    ``mine`` rebuilds the miner from the (complete) candidate table, so a retry computes the same rows.
    ``in_driver``: the worker is built in this process instead (:class:`~medembed.runtime.in_process.InProcess`:
    same calls, same rows, no process start).
    """
    if in_driver:
        return InProcess(MiningWorker(encoder))
    return ray.remote(MiningWorker).options(num_cpus=num_cpus, num_gpus=num_gpus, max_restarts=3, max_task_retries=3,
                                            **cpu_actor_options(num_gpus, keep_memory)).remote(encoder)


def write_then_encode(worker, rows: pa.Table, uri: str, schema: pa.Schema, storage: Storage,
                      pairs: pa.Table) -> pa.Table:
    """``rows`` embedded by ``worker`` in one call (one length-sorted whole) and written as data files at
    ``uri``; returns the fragments to commit. The encoding of every query of ``pairs`` queues right behind,
    so the actor encodes while the driver commits and finalizes the candidate table."""
    ref = worker.embed_and_write.remote(rows, uri, schema, storage)
    worker.encode_queries.remote(pairs.select([P.QUERY]))  # mining sends each batch's pairs again
    worker.import_miner_libraries.remote()  # calls run in order: after the queries, before the first mine
    return ray.get(ref)


def mined(worker, pairs: pa.Table, batch_size: int, miner: dict[str, Any]) -> ray.data.Dataset:
    """MINED_SCHEMA rows of ``pairs`` mined by ``worker`` in batches of ``batch_size``, as a Dataset."""
    return ray.data.from_arrow_refs([worker.mine.remote(start, pairs.slice(start, batch_size), miner)
                                     for start in range(0, max(1, pairs.num_rows), batch_size)])
