"""The one retriever: exact, ANN, full-text and hybrid search over a LanceDB table.

Every reader goes through :class:`Retriever`: ``medembed search``, the hard-negative miner and
evaluation. Query texts are encoded by the ``QueryEncoder`` it is given (the embedding layer's
encoder, which applies the model card's query prompt), so the query prompt lives in one place.

- ``exact``: brute-force inner product over the table's vectors held in memory (deterministic;
  vectors are normalized, so inner product = cosine). Ties go to the earlier row.
- ``ann``: LanceDB vector search (the table's vector index when there is one, ``store.ann_index``, with
  ``nprobes``, ``refine_factor`` and, for IVF_HNSW_SQ, ``ef``; a flat scan otherwise). Rows not yet in
  the index are scanned exactly; delta indexes are searched too. The defaults (``DEFAULT_NPROBES``,
  ``DEFAULT_REFINE_FACTOR``) are measured by ``bench/index_recall.py``.
- ``fts``: BM25 over ``text`` (needs the full-text index).
- ``hybrid``: LanceDB's reciprocal-rank fusion of vector and full-text results.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from medembed import schema as S
from medembed.index.indexes import DEFAULT_NPROBES, DEFAULT_REFINE_FACTOR, has_vector_index
from medembed.index.sql import in_filter
from medembed.index.tables import table_metadata, table_names
from medembed.runtime.storage import DEFAULT_STORAGE, Storage

log = logging.getLogger(__name__)

MODES = ("vector", "exact", "ann", "fts", "hybrid")
SCORE = "score"  # the cosine score column of :meth:`Retriever.ann_hits`


class QueryEncoder(Protocol):
    def encode_queries(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass
class Hit:
    chunk_id: str
    doc_id: str
    score: float
    title: str
    text: str


def top_k_exact(query_vectors: np.ndarray, candidate_vectors: np.ndarray, k: int,
                chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force inner-product top-k: (indices, scores), each [n_queries, min(k, n_candidates)], best first.

    Ties are broken by candidate position, so the result is deterministic.
    """
    k = min(k, candidate_vectors.shape[0])
    n = query_vectors.shape[0]
    idx = np.empty((n, k), dtype=np.int64)
    val = np.empty((n, k), dtype=np.float32)
    for start in range(0, n, chunk):
        sims = query_vectors[start:start + chunk] @ candidate_vectors.T
        for r, row in enumerate(sims):
            part = np.argpartition(-row, k - 1)[:k] if k < row.shape[0] else np.arange(row.shape[0])
            best = part[np.lexsort((part, -row[part]))]
            idx[start + r], val[start + r] = best, row[best]
    return idx, val


class Retriever:
    """Search one table. Row arrays (ids, doc ids, texts; vectors for exact search) load lazily, once."""

    def __init__(self, tbl: Any, encoder: QueryEncoder | None = None, *, nprobes: int = DEFAULT_NPROBES,
                 refine_factor: int | None = DEFAULT_REFINE_FACTOR, metric: str = "cosine", ef: int | None = None):
        self.tbl = tbl
        self.encoder = encoder
        self.nprobes, self.refine_factor, self.metric, self.ef = nprobes, refine_factor, metric, ef
        self.has_ann_index = has_vector_index(tbl)
        self._rows: dict[str, np.ndarray] | None = None
        self._vectors: np.ndarray | None = None
        self._row_of: dict[str, int] | None = None

    @classmethod
    def open(cls, db_uri: str, table: str | None = None, encoder: QueryEncoder | None = None,
             storage: Storage = DEFAULT_STORAGE, **kwargs: Any) -> Retriever:
        """Open ``table`` in ``db_uri``, with a clear error when absent.

        ``table`` may be a serving name (``index.serving``): it opens the table and version the name
        points to. None: the only serving name in ``db_uri``, else its only table.
        """
        from medembed.index import serving

        db = storage.lancedb_connect(db_uri)
        names = table_names(db)
        served = serving.list_serving_names(db_uri, storage)
        if table is None:
            if len(served) == 1:
                table = served[0]
            elif len(names) != 1:
                raise LookupError(f"{db_uri} holds {len(names)} tables {names}; name one")
            else:
                table = names[0]
        if table not in names and table in served:
            return cls(serving.open_served(db, serving.read_pointer(db_uri, table, storage).current), encoder, **kwargs)
        if table not in names:
            raise LookupError(f"no table {table!r} in {db_uri}; tables: {names}; serving names: {served}")
        return cls(db.open_table(table), encoder, **kwargs)

    @property
    def name(self) -> str:
        return self.tbl.name

    @property
    def metadata(self) -> dict[str, str]:
        return table_metadata(self.tbl.to_lance())

    # --- rows held in memory -------------------------------------------------------------------
    def rows(self) -> dict[str, np.ndarray]:
        """chunk_id, doc_id, title, text of every row, in table order (loaded once)."""
        if self._rows is None:
            t = self.tbl.to_lance().to_table(columns=[S.CHUNK_ID, S.DOC_ID, S.TITLE, S.TEXT])
            self._rows = {c: np.asarray(t[c].to_pylist(), dtype=object) for c in t.column_names}
            self._row_of = {cid: i for i, cid in enumerate(self._rows[S.CHUNK_ID])}
        return self._rows

    def row_of(self, chunk_id: str) -> int:
        self.rows()
        return self._row_of[chunk_id]

    def vectors(self) -> np.ndarray:
        """All vectors [rows, dim] float32, aligned with ``rows()`` (for exact search)."""
        if self._vectors is None:
            self.rows()
            t = self.tbl.to_lance().to_table(columns=[S.CHUNK_ID, S.VECTOR])
            if t[S.CHUNK_ID].to_pylist() != list(self._rows[S.CHUNK_ID]):
                raise RuntimeError(f"table {self.name} changed while it was being read; retry")
            flat = t[S.VECTOR].combine_chunks().flatten().to_numpy(zero_copy_only=False)
            self._vectors = np.asarray(flat, dtype=np.float32).reshape(len(t), -1)
        return self._vectors

    def vectors_of(self, chunk_ids: Sequence[str]) -> np.ndarray:
        """Stored vectors of the given chunks, in that order."""
        if self._vectors is not None:
            return self._vectors[[self.row_of(c) for c in chunk_ids]]
        uniq = sorted(set(chunk_ids))
        got = self.tbl.to_lance().to_table(columns=[S.CHUNK_ID, S.VECTOR],
                                           filter=in_filter(S.CHUNK_ID, uniq))
        vec = dict(zip(got[S.CHUNK_ID].to_pylist(), got[S.VECTOR].to_pylist()))
        missing = [c for c in uniq if c not in vec]
        if missing:
            raise KeyError(f"table {self.name} has no rows {missing[:5]}")
        return np.asarray([vec[c] for c in chunk_ids], dtype=np.float32)

    # --- search ----------------------------------------------------------------------------------
    def encode(self, queries: Sequence[str]) -> np.ndarray:
        if self.encoder is None:
            raise ValueError("vector search of texts needs a query encoder (the table's model)")
        return self.encoder.encode_queries(list(queries))

    def vector_mode(self, mode: str = "vector") -> str:
        """``exact`` or ``ann``: ``vector`` picks ANN when the table has a vector index, exact search otherwise."""
        if mode == "vector":
            return "ann" if self.has_ann_index else "exact"
        if mode not in ("exact", "ann"):
            raise ValueError(f"vector search takes mode vector, exact or ann, not {mode!r}")
        return mode

    def search_vectors(self, query_vectors: np.ndarray, k: int,
                       mode: str = "vector") -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Top-k per query vector as (row positions into ``rows()``, cosine scores), best first.

        Positions need ``rows()`` in memory, in either mode; readers of an ANN index at scale take the hits'
        own columns from :meth:`ann_hits` instead.
        """
        if self.vector_mode(mode) == "exact":
            idx, val = top_k_exact(np.asarray(query_vectors, dtype=np.float32), self.vectors(), k)
            return list(idx), list(val)
        self.rows()
        hits = self.ann_hits(query_vectors, k, [S.CHUNK_ID])
        return ([np.asarray([self._row_of[c] for c in h[S.CHUNK_ID].to_pylist()], dtype=np.int64) for h in hits],
                [h[SCORE].to_numpy() for h in hits])

    def ann_hits(self, query_vectors: np.ndarray, k: int, columns: Sequence[str]) -> list[Any]:
        """LanceDB vector search (:meth:`_ann`) per query vector: an Arrow table of the top-k rows' ``columns`` and
        their cosine ``score`` (float32), best first. Only the hits are read: no table-wide arrays in memory."""
        import pyarrow as pa

        out = []
        for q in query_vectors:
            t = self._ann(q, k, list(columns))
            score = (np.float32(1.0) - t["_distance"].to_numpy().astype(np.float32)).astype(np.float32)
            out.append(t.select(list(columns)).append_column(SCORE, pa.array(score, pa.float32())))
        return out

    def _ann(self, query_vector: np.ndarray, k: int, columns: list[str]) -> Any:
        """LanceDB's vector search (the index at this retriever's settings; a flat scan without one): the top-k
        rows' ``columns`` and ``_distance``, best first, as an Arrow table."""
        query = self.tbl.search(query_vector, vector_column_name=S.VECTOR).metric(self.metric)
        if self.has_ann_index:
            query = query.nprobes(self.nprobes)
            if self.refine_factor:
                query = query.refine_factor(self.refine_factor)
            if self.ef:
                query = query.ef(self.ef)
        return query.select(columns).limit(k).to_arrow()

    def search(self, queries: str | Sequence[str], k: int = 10, mode: str = "vector") -> list[list[Hit]]:
        """Top-k hits per query text. Scores: cosine (vector/exact/ann), BM25 (fts), RRF (hybrid)."""
        texts = [queries] if isinstance(queries, str) else list(queries)
        if mode not in MODES:
            raise ValueError(f"unknown search mode {mode!r} ({', '.join(MODES)})")
        if mode == "vector":
            mode = self.vector_mode(mode)
        if mode == "ann":  # the hits' columns come with the search: no table-wide row arrays in memory
            cols = [S.CHUNK_ID, S.DOC_ID, S.TITLE, S.TEXT]
            return [[Hit(r[S.CHUNK_ID], r[S.DOC_ID], float(r[SCORE]), r[S.TITLE] or "", r[S.TEXT] or "")
                     for r in h.to_pylist()] for h in self.ann_hits(self.encode(texts), k, cols)]
        if mode == "exact":
            idxs, vals = self.search_vectors(self.encode(texts), k, mode)
            rows = self.rows()
            return [[Hit(rows[S.CHUNK_ID][i], rows[S.DOC_ID][i], float(s), rows[S.TITLE][i] or "",
                         rows[S.TEXT][i] or "") for i, s in zip(ix, vs)] for ix, vs in zip(idxs, vals)]
        return [self._lance_text_search(t, k, mode) for t in texts]

    def _lance_text_search(self, text: str, k: int, mode: str) -> list[Hit]:
        cols = [S.CHUNK_ID, S.DOC_ID, S.TITLE, S.TEXT]
        if mode == "fts":
            df = self.tbl.search(text, query_type="fts").select(cols).limit(k).to_pandas()
            scores = df["_score"].to_numpy()
        else:
            qv = self.encode([text])[0]
            df = (self.tbl.search(query_type="hybrid", vector_column_name=S.VECTOR).vector(qv).text(text)
                  .select(cols).limit(k).to_pandas())
            scores = df["_relevance_score"].to_numpy()
        return [Hit(r[S.CHUNK_ID], r[S.DOC_ID], float(s), r[S.TITLE] or "", r[S.TEXT] or "")
                for r, s in zip(df.to_dict("records"), scores)]
