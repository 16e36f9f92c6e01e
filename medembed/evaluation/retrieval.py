"""Retrieval runs for evaluation: encode queries, search a corpus table through the one retriever.

A run is ``run[qid][docid] = score`` (cosine), the input of :func:`medembed.evaluation.metrics.evaluate`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from medembed import schema as S
from medembed.index.search import QueryEncoder, Retriever

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
    idxs, vals = retriever.search_vectors(query_vectors, k, mode)
    doc_ids = retriever.rows()[S.DOC_ID]
    return {qid: {str(doc_ids[i]): float(s) for i, s in zip(ix, vs)} for qid, ix, vs in zip(query_ids, idxs, vals)}
