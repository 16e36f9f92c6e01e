"""Retrieval runs for evaluation: encode queries, search a corpus table through the one retriever; or, for
small in-memory sets (training's dev split, benchmarks), the exact top-k of a score matrix.

A run is ``run[qid][docid] = score`` (cosine), the input of :func:`medembed.evaluation.metrics.evaluate`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from medembed import schema as S
from medembed.evaluation.metrics import DEFAULT_K, Qrels, RetrievalScores, evaluate
from medembed.index.search import SCORE, QueryEncoder, Retriever

log = logging.getLogger(__name__)


def encode_queries(encoder: QueryEncoder, texts: Sequence[str], batch_size: int) -> np.ndarray:
    """Query vectors (the encoder applies the model card's query prompt), in batches of ``batch_size``."""
    parts = [encoder.encode_queries(list(texts[i:i + batch_size])) for i in range(0, len(texts), batch_size)]
    return np.concatenate(parts).astype(np.float32, copy=False) if parts else np.zeros((0, 0), np.float32)


def retrieve(retriever: Retriever, query_ids: Sequence[str], query_vectors: np.ndarray, k: int,
             mode: str = "exact") -> dict[str, dict[str, float]]:
    """Top-``k`` documents per query (``exact`` brute force or ``ann``) as a run dict."""
    if len(query_ids) != len(query_vectors):
        raise ValueError(f"{len(query_ids)} query ids but {len(query_vectors)} query vectors")
    if not len(query_ids):
        return {}
    if mode == "ann" and not retriever.has_ann_index:
        log.warning("retrieval ann: table %s has no vector index (fewer rows than store.ann_min_rows), so its "
                    "search is an exact scan", retriever.name)
    if retriever.vector_mode(mode) == "ann":  # the hits carry their doc ids: no table-wide arrays in memory
        hits = retriever.ann_hits(query_vectors, k, [S.DOC_ID])
        return {qid: _doc_scores(h[S.DOC_ID].to_pylist(), h[SCORE].to_numpy()) for qid, h in zip(query_ids, hits)}
    idxs, vals = retriever.search_vectors(query_vectors, k, "exact")
    doc_ids = retriever.rows()[S.DOC_ID]
    return {qid: _doc_scores(doc_ids[ix], vs) for qid, ix, vs in zip(query_ids, idxs, vals)}


def _doc_scores(doc_ids: Sequence[str], scores: Sequence[float]) -> dict[str, float]:
    """One run row from hits best first: a document scores its best chunk."""
    row: dict[str, float] = {}
    for d, s in zip(doc_ids, scores):
        row.setdefault(str(d), float(s))
    return row


def run_from_scores(scores: np.ndarray, query_ids: Sequence[str], doc_ids: Sequence[str], k: int = 100
                    ) -> dict[str, dict[str, float]]:
    """The exact top-``k`` documents of every query (row) of a ``[queries, documents]`` score matrix, as a run."""
    scores = np.asarray(scores)
    k = min(k, len(doc_ids))
    if k <= 0:
        return {qid: {} for qid in query_ids}
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < scores.shape[1] else \
        np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
    return {qid: {doc_ids[j]: float(scores[i, j]) for j in top[i]} for i, qid in enumerate(query_ids)}


def cosine_scores(query_vectors: np.ndarray, doc_vectors: np.ndarray) -> np.ndarray:
    """``[queries, documents]`` cosine similarities (both sides L2-normalized here)."""
    qn = query_vectors / np.maximum(np.linalg.norm(query_vectors, axis=1, keepdims=True), 1e-12)
    dn = doc_vectors / np.maximum(np.linalg.norm(doc_vectors, axis=1, keepdims=True), 1e-12)
    return qn @ dn.T


def exact_scores(scores: np.ndarray, query_ids: Sequence[str], doc_ids: Sequence[str], qrels: Qrels,
                 k: int = 100, k_values: Sequence[int] = DEFAULT_K) -> RetrievalScores:
    """Metrics of the exact top-``k`` run of a score matrix: exact retrieval, run dict and metrics in one call
    (``scores`` from :func:`cosine_scores` or any fused matrix, e.g. dense + BM25)."""
    return evaluate(run_from_scores(scores, query_ids, doc_ids, k), qrels, k_values)
