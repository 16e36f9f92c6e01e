"""Change detection on Ray: corpus document signatures against a table's, as a hash-partitioned join.

A document's signature is its chunk hashes in order (``schema.doc_signature``). The corpus side
arrives as blocks of ``(doc_id, doc_signature)`` (one row per document, from the chunking stage);
the table side is read fragment by fragment (``doc_id, chunk_index, content_hash``) by Ray tasks.
Both sides are split by a stable hash of ``doc_id`` into ``partitions`` pieces, and one task per
partition joins them and classifies every document as new, changed, unchanged or deleted. Nothing of
the table or the corpus passes through the driver: it receives counts, the ids of changed and
deleted documents (their old chunks are removed at commit) and object refs of the per-partition
sets of documents to embed.
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
from medembed.config import S3Config

log = logging.getLogger(__name__)

DOC_SIGNATURE = "doc_signature"  # column of the chunking stage's output: the chunk's document signature
STATUSES = ("new", "changed", "unchanged", "deleted")


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


def signatures_of_chunks(t: pa.Table) -> pa.Table:
    """(doc_id, chunk_index, content_hash) rows, any order -> one (doc_id, doc_signature) row per document."""
    if t.num_rows == 0:
        return pa.table({S.DOC_ID: pa.array([], pa.string()), DOC_SIGNATURE: pa.array([], pa.string())})
    t = t.sort_by([(S.DOC_ID, "ascending"), (S.CHUNK_INDEX, "ascending")])
    docs, hashes = t.column(S.DOC_ID).to_pylist(), t.column(S.CONTENT_HASH).to_pylist()
    out_ids, out_sigs, start = [], [], 0
    for i in range(1, len(docs) + 1):
        if i == len(docs) or docs[i] != docs[start]:
            out_ids.append(docs[start])
            out_sigs.append(S.doc_signature(hashes[start:i]))
            start = i
    return pa.table({S.DOC_ID: pa.array(out_ids, pa.string()), DOC_SIGNATURE: pa.array(out_sigs, pa.string())})


def add_doc_signatures(chunks: pa.Table) -> pa.Table:
    """Append ``doc_signature`` to chunk rows (a batch holds all chunks of its documents, in order)."""
    sigs = signatures_of_chunks(chunks.select([S.DOC_ID, S.CHUNK_INDEX, S.CONTENT_HASH]))
    by_doc = dict(zip(sigs.column(S.DOC_ID).to_pylist(), sigs.column(DOC_SIGNATURE).to_pylist()))
    return chunks.append_column(DOC_SIGNATURE, pa.array([by_doc[d] for d in chunks.column(S.DOC_ID).to_pylist()],
                                                        pa.string()))


def document_rows(chunks: pa.Table) -> pa.Table:
    """Ray Data UDF: chunk rows with ``doc_signature`` -> one (doc_id, doc_signature, n_chunks) row per document."""
    first = chunks.filter(pc.equal(chunks.column(S.CHUNK_INDEX), 0)).select([S.DOC_ID, DOC_SIGNATURE])
    counts = chunks.group_by(S.DOC_ID).aggregate([(S.CHUNK_INDEX, "count")])
    n = dict(zip(counts.column(S.DOC_ID).to_pylist(), counts.column(f"{S.CHUNK_INDEX}_count").to_pylist()))
    return first.append_column("n_chunks", pa.array([n[d] for d in first.column(S.DOC_ID).to_pylist()], pa.int64()))


@ray.remote(num_cpus=0.5)
def _split_corpus(block: pa.Table, partitions: int) -> tuple[pa.Table, ...]:
    return tuple(split_by_partition(block.select([S.DOC_ID, DOC_SIGNATURE]), partitions))


@ray.remote(num_cpus=0.5)
def _split_table(uri: str, version: int, fragment_ids: list[int], partitions: int,
                 s3: dict[str, Any] | None) -> tuple[pa.Table, ...]:
    import lance

    from medembed.runtime.storage import lance_storage_options

    opts = lance_storage_options(uri, S3Config.model_validate(s3) if s3 else None) or None
    ds = lance.dataset(uri, version=version, storage_options=opts)
    frags = [ds.get_fragment(i) for i in fragment_ids]
    t = ds.scanner(columns=[S.DOC_ID, S.CHUNK_INDEX, S.CONTENT_HASH], fragments=frags).to_table()
    return tuple(split_by_partition(t, partitions))


def classify(corpus: pa.Table, stored: pa.Table) -> dict[str, list[str]]:
    """doc ids by status, given corpus (doc_id, doc_signature) and stored (doc_id, doc_signature) rows."""
    have = dict(zip(stored.column(S.DOC_ID).to_pylist(), stored.column(DOC_SIGNATURE).to_pylist()))
    out: dict[str, list[str]] = {s: [] for s in STATUSES}
    seen = set()
    for d, sig in zip(corpus.column(S.DOC_ID).to_pylist(), corpus.column(DOC_SIGNATURE).to_pylist()):
        seen.add(d)
        old = have.get(d)
        out["new" if old is None else "unchanged" if old == sig else "changed"].append(d)
    out["deleted"] = [d for d in have if d not in seen]
    return out


@ray.remote(num_cpus=0.5, num_returns=2)
def _join_partition(n_corpus: int, *pieces: pa.Table) -> tuple[dict[str, Any], frozenset]:
    corpus = pa.concat_tables(pieces[:n_corpus]) if n_corpus else None
    stored_rows = pa.concat_tables(pieces[n_corpus:]) if len(pieces) > n_corpus else None
    stored = signatures_of_chunks(stored_rows) if stored_rows is not None else signatures_of_chunks(pa.table({
        S.DOC_ID: pa.array([], pa.string()), S.CHUNK_INDEX: pa.array([], pa.int32()),
        S.CONTENT_HASH: pa.array([], pa.string())}))
    if corpus is None:
        corpus = pa.table({S.DOC_ID: pa.array([], pa.string()), DOC_SIGNATURE: pa.array([], pa.string())})
    by = classify(corpus, stored)
    summary = {"counts": {s: len(v) for s, v in by.items()}, "changed": by["changed"], "deleted": by["deleted"]}
    return summary, frozenset(by["new"]) | frozenset(by["changed"])


@dataclass
class Diff:
    """What a sync has to do: counts by status, the documents whose stored chunks go, and what to embed."""

    counts: dict[str, int]
    changed: list[str]
    deleted: list[str]
    embed_sets: list[Any] = field(default_factory=list)  # ObjectRef per partition: doc ids to embed
    partitions: int = 1
    seconds: float = 0.0

    @property
    def to_embed(self) -> int:
        return self.counts["new"] + self.counts["changed"]

    @property
    def has_changes(self) -> bool:
        return bool(self.to_embed or self.counts["deleted"])


def diff_signatures(corpus_blocks: list[Any], table_uri: str | None, version: int | None, *,
                    s3: S3Config | None = None, partitions: int = 8, fragments_per_task: int = 8) -> Diff:
    """Join corpus document signatures (ObjectRefs of ``(doc_id, doc_signature)`` tables) with the table's.

    ``table_uri`` None (or ``version`` None): there is no table yet, every document is new.
    """
    t0 = time.perf_counter()
    corpus_pieces = [_split_corpus.options(num_returns=partitions).remote(b, partitions) for b in corpus_blocks]
    table_pieces = []
    if table_uri is not None and version is not None:
        import lance

        from medembed.runtime.storage import lance_storage_options

        ds = lance.dataset(table_uri, version=version, storage_options=lance_storage_options(table_uri, s3) or None)
        ids = [f.fragment_id for f in ds.get_fragments()]
        s3d = s3.model_dump() if s3 else None
        table_pieces = [_split_table.options(num_returns=partitions).remote(table_uri, version,
                                                                            ids[i:i + fragments_per_task], partitions, s3d)
                        for i in range(0, len(ids), fragments_per_task)]

    def piece(refs: Any, p: int) -> Any:
        return refs[p] if partitions > 1 else refs

    summaries, embed_sets = [], []
    for p in range(partitions):
        summary, embed = _join_partition.remote(len(corpus_pieces), *[piece(r, p) for r in corpus_pieces],
                                                *[piece(r, p) for r in table_pieces])
        summaries.append(summary)
        embed_sets.append(embed)
    results = ray.get(summaries)
    counts = {s: sum(r["counts"][s] for r in results) for s in STATUSES}
    diff = Diff(counts, sorted(d for r in results for d in r["changed"]), sorted(d for r in results for d in r["deleted"]),
                embed_sets, partitions, time.perf_counter() - t0)
    log.info("change detection: %s in %.2f s (%d partitions)", counts, diff.seconds, partitions)
    return diff


_SETS: dict[str, list[frozenset]] = {}


def select_to_embed(chunks: pa.Table, embed_sets: list[Any], partitions: int) -> pa.Table:
    """Ray Data UDF: keep the chunks of documents the diff marked new or changed (sets fetched once per worker)."""
    key = ",".join(r.hex() for r in embed_sets)
    if key not in _SETS:
        _SETS.clear()
        _SETS[key] = ray.get(list(embed_sets))
    sets = _SETS[key]
    ids = chunks.column(S.DOC_ID).to_pylist()
    part = partition_of(ids, partitions)
    keep = pa.array([d in sets[p] for d, p in zip(ids, part)], pa.bool_())
    return chunks.filter(keep)
