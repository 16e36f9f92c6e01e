"""LanceDB tables: exactly-once writes from Ray workers, indexes, metadata and search.

Writes are two-phase. Workers write Lance data files (``write_fragments``) and return only
fragment metadata; the driver commits them in groups as ``Append`` transactions. A task that
Ray retries leaves orphan files that no commit references, so a chunk lands exactly once.
Chunks already stored with the same content hash are filtered out before embedding, so a
re-run (or a resumed crashed run) embeds and writes only what is missing or changed.

The store knows tables, not models: model identity arrives as schema metadata.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from medembed import schema as S
from medembed.config import S3Config, StoreConfig
from medembed.storage import join, lance_storage_options

log = logging.getLogger(__name__)


class TableModelMismatch(RuntimeError):
    """The table holds vectors of another model or dimension."""


def table_uri(db_uri: str, table: str) -> str:
    return join(db_uri, f"{table}.lance")


def connect(db_uri: str, s3: S3Config | None = None):
    import lancedb

    return lancedb.connect(db_uri, storage_options=lance_storage_options(db_uri, s3) or None)


def open_dataset(uri: str, s3: S3Config | None = None):
    """The Lance dataset at ``uri``, or None if there is none yet."""
    import lance

    try:
        return lance.dataset(uri, storage_options=lance_storage_options(uri, s3) or None)
    except (ValueError, FileNotFoundError, OSError) as e:
        if "not found" in str(e).lower() or "does not exist" in str(e).lower() or isinstance(e, FileNotFoundError):
            return None
        raise


def table_metadata(ds: Any) -> dict[str, str]:
    md = ds.schema.metadata or {}
    return {k.decode(): v.decode() for k, v in md.items()}


def check_model(ds: Any, model_id: str, dim: int, uri: str) -> None:
    md = table_metadata(ds)
    have_model, have_dim = md.get(S.META_MODEL_ID), md.get(S.META_DIM)
    if have_model != model_id or have_dim != str(dim):
        raise TableModelMismatch(
            f"table {uri} holds vectors of model {have_model!r} (dim {have_dim}), not {model_id!r} (dim {dim}); "
            "write to another table (store.table=...) or re-embed it into a new table")


def existing_signatures(ds: Any) -> dict[str, str]:
    """doc_id -> signature (chunk hashes in order) of every document the table holds."""
    if ds is None:
        return {}
    t = ds.to_table(columns=[S.DOC_ID, S.CHUNK_INDEX, S.CONTENT_HASH])
    rows = sorted(zip(t.column(S.DOC_ID).to_pylist(), t.column(S.CHUNK_INDEX).to_pylist(),
                      t.column(S.CONTENT_HASH).to_pylist()))
    out: dict[str, str] = {}
    for doc_id, group in itertools.groupby(rows, key=lambda r: r[0]):
        out[doc_id] = S.doc_signature([h for _, _, h in group])
    return out


_KNOWN_CACHE: dict[str, dict[str, str]] = {}


def _resolve_known(known: Any) -> dict[str, str]:
    """``known`` may be an ObjectRef (large tables): fetch it once per worker process."""
    if isinstance(known, dict):
        return known
    import ray

    key = known.hex()
    if key not in _KNOWN_CACHE:
        _KNOWN_CACHE.clear()
        _KNOWN_CACHE[key] = ray.get(known)
    return _KNOWN_CACHE[key]


def filter_unchanged_docs(chunks: pa.Table, known: Any, counters: Any = None) -> pa.Table:
    """Drop every chunk of documents the table already holds unchanged (same chunk hashes, in order).

    ``chunks`` must hold all chunks of each of its documents (true for the output of one
    ``chunk_batch`` call); a changed document keeps all its chunks and replaces the old ones.
    """
    known = _resolve_known(known)
    docs = chunks.column(S.DOC_ID).to_pylist()
    hashes = chunks.column(S.CONTENT_HASH).to_pylist()
    per_doc: dict[str, list[str]] = {}
    for d, h in zip(docs, hashes):  # chunk_batch emits a document's chunks in order
        per_doc.setdefault(d, []).append(h)
    unchanged = {d for d, hs in per_doc.items() if known.get(d) == S.doc_signature(hs)}
    kept = chunks.filter(pa.array([d not in unchanged for d in docs], pa.bool_())) if unchanged else chunks
    if counters is not None:
        counters.add.remote("chunks_total", chunks.num_rows)
        counters.add.remote("chunks_unchanged", chunks.num_rows - kept.num_rows)
        counters.add.remote("documents_unchanged", len(unchanged))
    return kept


class FragmentWriter:
    """Ray Data callable class: embedded chunk rows -> Lance data files; emits fragment metadata."""

    def __init__(self, uri: str, schema: pa.Schema, s3: dict[str, Any] | None = None):
        self.uri = uri
        self.schema = schema
        self.storage_options = lance_storage_options(uri, S3Config.model_validate(s3) if s3 else None) or None

    def __call__(self, batch: pa.Table) -> pa.Table:
        from lance.fragment import write_fragments

        data = batch.select(self.schema.names).cast(self.schema)
        frags = write_fragments(data, self.uri, schema=self.schema, storage_options=self.storage_options)
        return pa.table({
            "fragment": [json.dumps(f.to_json()) for f in frags],
            "rows": [f.physical_rows for f in frags],
            "doc_ids": [sorted(set(data.column(S.DOC_ID).to_pylist()))] + [[] for _ in frags[1:]],
            "tokens": [int(pa.compute.sum(data.column(S.N_TOKENS)).as_py() or 0)] + [0 for _ in frags[1:]],
        })


@dataclass
class CommitStats:
    rows: int = 0
    tokens: int = 0
    fragments: int = 0
    commits: int = 0
    documents_replaced: int = 0
    versions: list[int] = field(default_factory=list)


class Committer:
    """Driver side of the two-phase write: commits fragment groups to the table."""

    def __init__(self, uri: str, schema: pa.Schema, s3: S3Config | None, known: dict[str, str], every: int):
        self.uri = uri
        self.schema = schema
        self.storage_options = lance_storage_options(uri, s3) or None
        self.known = known
        self.every = every
        self.pending: list[Any] = []
        self.pending_docs: list[str] = []
        self.stats = CommitStats()
        self._ds = open_dataset(uri, s3)

    def add(self, fragment_json: str, rows: int, doc_ids: list[str], tokens: int) -> None:
        from lance.fragment import FragmentMetadata

        self.pending.append(FragmentMetadata.from_json(fragment_json))
        self.pending_docs.extend(doc_ids)
        self.stats.rows += rows
        self.stats.tokens += tokens
        if len(self.pending) >= self.every:
            self.flush()

    def flush(self) -> None:
        import lance

        if not self.pending:
            return
        if self._ds is None:
            op = lance.LanceOperation.Overwrite(self.schema, self.pending)
            self._ds = lance.LanceDataset.commit(self.uri, op, storage_options=self.storage_options)
        else:
            replaced = sorted({d for d in self.pending_docs if d in self.known})
            if replaced:  # changed documents: remove all their old chunks first
                for k in range(0, len(replaced), 1000):
                    ids = ", ".join("'" + i.replace("'", "''") + "'" for i in replaced[k:k + 1000])
                    self._ds.delete(f"{S.DOC_ID} IN ({ids})")
                self.stats.documents_replaced += len(replaced)
            op = lance.LanceOperation.Append(self.pending)
            self._ds = lance.LanceDataset.commit(self.uri, op, read_version=self._ds.version,
                                                 storage_options=self.storage_options)
        self.stats.fragments += len(self.pending)
        self.stats.commits += 1
        self.stats.versions.append(self._ds.version)
        self.pending, self.pending_docs = [], []


def finalize_table(db_uri: str, table: str, cfg: StoreConfig, s3: S3Config | None) -> dict[str, Any]:
    """Compact, then build the full-text index and (past the threshold) the ANN index."""
    db = connect(db_uri, s3)
    tbl = db.open_table(table)
    n = tbl.count_rows()
    info: dict[str, Any] = {"rows": n, "fts_index": False, "ann_index": None}
    if cfg.compact and n:
        tbl.optimize()
    if cfg.fts and n:
        tbl.create_fts_index(S.TEXT, replace=True)
        info["fts_index"] = True
    if n and n >= max(cfg.ann_min_rows, 256):
        dim = tbl.schema.field(S.VECTOR).type.list_size
        partitions = max(1, min(int(math.sqrt(n)), n // 256))  # k-means needs ~256 rows per partition
        sub_vectors = next(d for d in (dim // 16, dim // 8, dim // 4, 1) if d >= 1 and dim % d == 0)
        tbl.create_index(metric=cfg.ann_metric, vector_column_name=S.VECTOR, index_type="IVF_PQ",
                         num_partitions=partitions, num_sub_vectors=sub_vectors, replace=True)
        info["ann_index"] = {"type": "IVF_PQ", "partitions": partitions, "sub_vectors": sub_vectors,
                             "metric": cfg.ann_metric}
    return info


# --- search -----------------------------------------------------------------------------------

@dataclass
class Hit:
    chunk_id: str
    doc_id: str
    score: float
    title: str
    text: str


def search_table(tbl: Any, mode: str, query: str, query_vector: np.ndarray | None, k: int,
                 metric: str = "cosine") -> list[Hit]:
    """Top-k hits; scores: cosine similarity (vector), BM25 (fts) or reciprocal-rank fusion (hybrid)."""
    cols = [S.CHUNK_ID, S.DOC_ID, S.TITLE, S.TEXT]
    if mode == "vector":
        df = tbl.search(query_vector, vector_column_name=S.VECTOR).metric(metric).select(cols).limit(k).to_pandas()
        scores = 1.0 - df["_distance"].to_numpy() if metric == "cosine" else -df["_distance"].to_numpy()
    elif mode == "fts":
        df = tbl.search(query, query_type="fts").select(cols).limit(k).to_pandas()
        scores = df["_score"].to_numpy()
    elif mode == "hybrid":
        df = (tbl.search(query_type="hybrid", vector_column_name=S.VECTOR).vector(query_vector).text(query)
              .select(cols).limit(k).to_pandas())
        scores = df["_relevance_score"].to_numpy()
    else:
        raise ValueError(f"unknown search mode {mode!r} (vector, fts, hybrid)")
    return [Hit(r[S.CHUNK_ID], r[S.DOC_ID], float(s), r[S.TITLE] or "", r[S.TEXT] or "")
            for r, s in zip(df.to_dict("records"), scores)]

