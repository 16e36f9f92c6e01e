"""Change detection on Ray: corpus document hashes against a table's, as a hash-partitioned join.

A document's hash (``schema.doc_hash``: id, title, text, metadata, chunking parameters and tokenizer)
is computed right after normalization, BEFORE chunking, so an unchanged document costs a read and a
hash, never a tokenization. The corpus side arrives as blocks of ``(doc_id, doc_hash, source)`` (one
row per document, ``hash_documents``); the table side is read fragment by fragment by Ray tasks, the
``doc_id, chunk_index, doc_hash, doc_chunks`` columns only (no vectors, no text). A document's stored
hash counts only when all its chunks carry the same hash and chunk count n and their indexes are
exactly 0..n-1; anything else (stale, duplicated or missing chunks, a document an interrupted run wrote
in part, a table migrated from before ``doc_hash``) makes it "changed", so the run replaces it. Both
sides are split by a stable hash of ``doc_id`` into ``partitions`` pieces, and one task per partition
joins them (Arrow) and classifies every document as new, changed, unchanged or deleted.
Nothing of the table or the corpus passes through the driver: it receives counts, the ids of changed
and deleted documents (their old chunks are removed at commit) and object refs of the per-partition
documents to embed (their ids, and where they were read, so the second read skips everything else).
"""

from __future__ import annotations

import logging
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray

from medembed import schema as S
from medembed.embedding.chunking import ChunkParams, add_doc_hashes
from medembed.runtime.storage import DEFAULT_STORAGE, Storage

log = logging.getLogger(__name__)

STATUSES = ("new", "changed", "unchanged", "deleted")
STORED_HASH = "stored_hash"  # the table side's consistent doc_hash per document (null: inconsistent)
N_CHUNKS = "n_chunks"
CORPUS_SCHEMA = pa.schema([(S.DOC_ID, pa.string()), (S.DOC_HASH, pa.string()), (S.SOURCE, pa.string())])
STORED_COLUMNS = [S.DOC_ID, S.CHUNK_INDEX, S.DOC_HASH, S.DOC_CHUNKS]
# up to this many documents to embed, a second read parses only their lines/rows (their locations pass through the
# driver; ``ReadPlan.restrict``); past it, it reads every source again and keeps the selected documents
LOCATE_MAX_DOCS = 200_000


def partition_of(doc_ids: list[str], partitions: int) -> np.ndarray:
    """Stable partition of each document id (crc32, identical in every process)."""
    return np.fromiter((zlib.crc32(d.encode("utf-8")) % partitions for d in doc_ids), dtype=np.int64,
                       count=len(doc_ids))


def split_by_partition(t: pa.Table, partitions: int) -> list[pa.Table]:
    part = partition_of(t.column(S.DOC_ID).to_pylist(), partitions)
    order = np.argsort(part, kind="stable")
    bounds = np.searchsorted(part[order], np.arange(partitions + 1))
    sorted_t = t.take(pa.array(order))
    return [sorted_t.slice(bounds[p], bounds[p + 1] - bounds[p]) for p in range(partitions)]


def hash_documents(docs: pa.Table, params: ChunkParams) -> pa.Table:
    """Ray Data UDF: normalized documents -> one ``(doc_id, doc_hash, source)`` row each (no tokenizer)."""
    if S.DOC_ID not in docs.column_names:  # an empty block (a source that yielded no documents)
        return CORPUS_SCHEMA.empty_table()
    return add_doc_hashes(docs, params).select(CORPUS_SCHEMA.names).cast(CORPUS_SCHEMA)


def stored_hashes(rows: pa.Table) -> pa.Table:
    """Table rows ``(doc_id, chunk_index, doc_hash, doc_chunks)``, any order -> one ``(doc_id, stored_hash,
    n_chunks)`` row per document. ``stored_hash`` is null unless every chunk carries the same non-null hash and
    chunk count n, and the chunk indexes are exactly 0..n-1 (stale, duplicated or missing chunks: "changed")."""
    if rows.num_rows == 0:
        return pa.table({S.DOC_ID: pa.array([], pa.string()), STORED_HASH: pa.array([], pa.string()),
                         N_CHUNKS: pa.array([], pa.int64())})
    g = rows.group_by(S.DOC_ID).aggregate([
        (S.CHUNK_INDEX, "count"), (S.CHUNK_INDEX, "max"), (S.CHUNK_INDEX, "count_distinct"),
        (S.DOC_HASH, "count"), (S.DOC_HASH, "min"), (S.DOC_HASH, "max"),
        (S.DOC_CHUNKS, "count"), (S.DOC_CHUNKS, "min"), (S.DOC_CHUNKS, "max")])
    n = g.column(f"{S.CHUNK_INDEX}_count")

    def col(name: str) -> Any:
        return pc.cast(g.column(name), pa.int64())

    checks = [pc.equal(g.column(f"{S.DOC_HASH}_count"), n),
              pc.equal(g.column(f"{S.DOC_HASH}_min"), g.column(f"{S.DOC_HASH}_max")),
              pc.equal(g.column(f"{S.DOC_CHUNKS}_count"), n),
              pc.equal(col(f"{S.DOC_CHUNKS}_min"), n), pc.equal(col(f"{S.DOC_CHUNKS}_max"), n),
              pc.equal(col(f"{S.CHUNK_INDEX}_max"), pc.subtract(n, 1)),
              pc.equal(g.column(f"{S.CHUNK_INDEX}_count_distinct"), n)]
    ok = checks[0]
    for c in checks[1:]:
        ok = pc.and_(ok, c)
    ok = pc.fill_null(ok, False)
    return pa.table({S.DOC_ID: g.column(S.DOC_ID),
                     STORED_HASH: pc.if_else(ok, g.column(f"{S.DOC_HASH}_min"), pa.scalar(None, pa.string())),
                     N_CHUNKS: pc.cast(n, pa.int64())})


def _classify(corpus: pa.Table, stored: pa.Table) -> tuple[pa.Table, dict[str, pa.Array]]:
    """Full outer join on doc_id; (joined table, boolean mask per status)."""
    if corpus.num_rows == 0 and stored.num_rows == 0:
        j = pa.table({S.DOC_ID: pa.array([], pa.string()), S.DOC_HASH: pa.array([], pa.string()),
                      S.SOURCE: pa.array([], pa.string()), STORED_HASH: pa.array([], pa.string()),
                      N_CHUNKS: pa.array([], pa.int64())})
    else:
        j = corpus.join(stored, S.DOC_ID, join_type="full outer", coalesce_keys=True)
    in_corpus = pc.is_valid(j.column(S.DOC_HASH))
    in_table = pc.is_valid(j.column(N_CHUNKS))
    same = pc.fill_null(pc.equal(j.column(S.DOC_HASH), j.column(STORED_HASH)), False)
    masks = {
        "new": pc.and_(in_corpus, pc.invert(in_table)),
        "unchanged": pc.and_(pc.and_(in_corpus, in_table), same),
        "changed": pc.and_(pc.and_(in_corpus, in_table), pc.invert(same)),
        "deleted": pc.and_(pc.invert(in_corpus), in_table),
    }
    return j, masks


def classify(corpus: pa.Table, stored: pa.Table) -> dict[str, list[str]]:
    """doc ids by status (sorted), given corpus ``(doc_id, doc_hash[, source])`` and ``stored_hashes`` rows."""
    if S.SOURCE not in corpus.column_names:
        corpus = corpus.append_column(S.SOURCE, pa.array([""] * corpus.num_rows, pa.string()))
    j, masks = _classify(corpus, stored)
    return {s: sorted(j.column(S.DOC_ID).filter(m).to_pylist()) for s, m in masks.items()}


@ray.remote(num_cpus=0.5)
def _split_corpus(block: pa.Table, partitions: int) -> tuple[pa.Table, ...]:
    if S.DOC_ID not in block.column_names:  # an empty block without columns
        block = CORPUS_SCHEMA.empty_table()
    return tuple(split_by_partition(block.select(CORPUS_SCHEMA.names).cast(CORPUS_SCHEMA), partitions))


@ray.remote(num_cpus=0.5)
def _split_table(uri: str, version: int, fragment_ids: list[int], partitions: int,
                 storage: Storage) -> tuple[pa.Table, ...]:
    import lance

    ds = lance.dataset(uri, version=version, storage_options=storage.lance_options(uri))
    frags = [ds.get_fragment(i) for i in fragment_ids]
    t = ds.scanner(columns=STORED_COLUMNS, fragments=frags).to_table()  # column projection: no vectors, no text
    return tuple(split_by_partition(t, partitions))


@ray.remote(num_cpus=0.5, num_returns=3)
def _join_partition(n_corpus: int, *pieces: pa.Table) -> tuple[dict[str, Any], pa.Array, pa.Array]:
    corpus = pa.concat_tables(pieces[:n_corpus]) if n_corpus else CORPUS_SCHEMA.empty_table()
    stored_rows = pa.concat_tables(pieces[n_corpus:]) if len(pieces) > n_corpus else pa.table({
        S.DOC_ID: pa.array([], pa.string()), S.CHUNK_INDEX: pa.array([], pa.int32()),
        S.DOC_HASH: pa.array([], pa.string()), S.DOC_CHUNKS: pa.array([], pa.int32())})
    j, masks = _classify(corpus, stored_hashes(stored_rows))
    ids = j.column(S.DOC_ID)
    embed = pc.or_(masks["new"], masks["changed"])
    summary = {"counts": {s: int(pc.sum(pc.cast(m, pa.int64())).as_py() or 0) for s, m in masks.items()},
               "chunks_unchanged": int(pc.sum(j.column(N_CHUNKS).filter(masks["unchanged"])).as_py() or 0),
               "chunks_removed": int(pc.sum(j.column(N_CHUNKS).filter(
                   pc.or_(masks["changed"], masks["deleted"]))).as_py() or 0),
               "changed": ids.filter(masks["changed"]).to_pylist(), "deleted": ids.filter(masks["deleted"]).to_pylist()}
    return summary, _array(pc.unique(ids.filter(embed))), _array(j.column(S.SOURCE).filter(embed))


def _array(x: pa.Array | pa.ChunkedArray) -> pa.Array:
    return x.combine_chunks() if isinstance(x, pa.ChunkedArray) else x


@dataclass
class Diff:
    """What a sync has to do: counts by status, the documents whose stored chunks go, and what to embed."""

    counts: dict[str, int]
    changed: list[str]
    deleted: list[str]
    embed_sets: list[Any] = field(default_factory=list)  # ObjectRef per partition: ids (Arrow array) to embed
    source_sets: list[Any] = field(default_factory=list)  # ObjectRef per partition: their sources ("file:line N")
    partitions: int = 1
    seconds: float = 0.0
    chunks_unchanged: int = 0  # stored chunks of unchanged documents (they stay as they are)
    chunks_removed: int = 0  # stored chunks of changed and deleted documents

    @property
    def to_embed(self) -> int:
        return self.counts["new"] + self.counts["changed"]

    @property
    def has_changes(self) -> bool:
        return bool(self.to_embed or self.counts["deleted"])

    def sources(self, max_docs: int = LOCATE_MAX_DOCS) -> list[str] | None:
        """Where the documents to embed were read ("file:line N"), for a second read that skips the rest;
        None (read everything again) when more than ``max_docs`` documents are to be embedded."""
        if self.to_embed > max_docs:
            return None
        return [s for arr in ray.get(list(self.source_sets)) for s in arr.to_pylist()]


def diff_hashes(corpus_blocks: list[Any], table_uri: str | None, version: int | None, *,
                storage: Storage = DEFAULT_STORAGE, partitions: int = 8, fragments_per_task: int = 8) -> Diff:
    """Join corpus document hashes (ObjectRefs of ``(doc_id, doc_hash, source)`` tables) with the table's.

    ``table_uri`` None (or ``version`` None): there is no table yet, every document is new. The table must
    have the ``doc_hash`` column (``index.changes.ensure_doc_hash`` adds it to older tables).
    """
    t0 = time.perf_counter()
    corpus_pieces = [_split_corpus.options(num_returns=partitions).remote(b, partitions) for b in corpus_blocks]
    table_pieces = []
    if table_uri is not None and version is not None:
        import lance

        ds = lance.dataset(table_uri, version=version, storage_options=storage.lance_options(table_uri))
        if S.DOC_HASH not in ds.schema.names:
            raise ValueError(f"table {table_uri} (version {version}) has no {S.DOC_HASH!r} column; "
                             "add it first (index.changes.ensure_doc_hash)")
        ids = [f.fragment_id for f in ds.get_fragments()]
        table_pieces = [_split_table.options(num_returns=partitions).remote(table_uri, version,
                                                                            ids[i:i + fragments_per_task], partitions, storage)
                        for i in range(0, len(ids), fragments_per_task)]

    def piece(refs: Any, p: int) -> Any:
        return refs[p] if partitions > 1 else refs

    summaries, embed_sets, source_sets = [], [], []
    for p in range(partitions):
        summary, embed, sources = _join_partition.remote(len(corpus_pieces), *[piece(r, p) for r in corpus_pieces],
                                                         *[piece(r, p) for r in table_pieces])
        summaries.append(summary)
        embed_sets.append(embed)
        source_sets.append(sources)
    results = ray.get(summaries)
    counts = {s: sum(r["counts"][s] for r in results) for s in STATUSES}
    diff = Diff(counts, sorted(d for r in results for d in r["changed"]), sorted(d for r in results for d in r["deleted"]),
                embed_sets, source_sets, partitions, time.perf_counter() - t0,
                sum(r["chunks_unchanged"] for r in results), sum(r["chunks_removed"] for r in results))
    log.info("change detection: %s in %.2f s (%d partitions)", counts, diff.seconds, partitions)
    return diff


_SETS: dict[str, pa.Array] = {}


def embed_ids(embed_sets: list[Any]) -> pa.Array:
    """The ids of every document to embed: ObjectRefs (``Diff.embed_sets``, fetched once per worker process)
    or Arrow arrays."""
    if all(isinstance(a, pa.Array) for a in embed_sets):
        return pa.concat_arrays(list(embed_sets)) if embed_sets else pa.array([], pa.string())
    key = ",".join(r.hex() for r in embed_sets)
    if key not in _SETS:
        _SETS.clear()
        arrays = ray.get(list(embed_sets))
        _SETS[key] = pa.concat_arrays(arrays) if arrays else pa.array([], pa.string())
    return _SETS[key]


def select_to_embed(batch: pa.Table, embed_sets: list[Any]) -> pa.Table:
    """Ray Data UDF: keep the rows (documents or chunks) of documents the diff marked new or changed."""
    return batch.filter(pc.is_in(batch.column(S.DOC_ID), value_set=embed_ids(embed_sets)))
