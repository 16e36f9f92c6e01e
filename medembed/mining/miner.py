"""The mining stage: a Ray Data callable class turning a batch of pairs into one triplet row per query.

Each actor loads the encoder and opens the candidate table once (``__init__``); retrieval goes
through the one ``Retriever``: exact (candidate vectors held in the actor: deterministic) or, when the
table has a vector index, ANN search. Vectors are normalized, so inner product = cosine.

With ``teacher="hybrid"`` every candidate is scored by cosine and by BM25 (``mining.lexical``), the two
fused per query (``z(cos) + w * z(bm25)``), and negatives are picked and scored by the fused ranking.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from medembed import schema as S
from medembed.embedding.encoders import Encoder, encoder_from_kwargs
from medembed.index.search import SCORE, Retriever
from medembed.mining import columns as M
from medembed.mining.config import DEFAULT_LEXICAL_WEIGHT
from medembed.mining.lexical import BM25, hybrid_scores
from medembed.mining.selection import Selection, SelectParams, select_negatives
from medembed.runtime.storage import DEFAULT_STORAGE, Storage
from medembed.synth import columns as P

log = logging.getLogger(__name__)


@dataclass
class Candidates:
    """One query's retrieved candidates, best first: chunk ids, note (doc) ids, texts (object arrays), scores."""

    ids: np.ndarray
    notes: np.ndarray
    texts: np.ndarray
    scores: np.ndarray


class NegativeMiner:
    """Ray Data callable class: pairs (pair_id, note_id, query, passage) -> MINED_SCHEMA rows."""

    REQUIRED = (P.PAIR_ID, P.NOTE_ID, P.QUERY, P.PASSAGE)

    def __init__(self, encoder: dict[str, Any] | Encoder, db_uri: str, table: str, params: dict[str, Any], top_k: int,
                 retrieval: str = "auto", nprobes: int = 20, refine_factor: int | None = 10,
                 storage: Storage = DEFAULT_STORAGE, teacher: str = "dense",
                 lexical_weight: float = DEFAULT_LEXICAL_WEIGHT):
        self.params = SelectParams(**params)
        self.top_k = top_k
        enc = encoder_from_kwargs(**encoder) if isinstance(encoder, dict) else encoder  # kwargs, or a loaded one
        self.retriever = Retriever.open(db_uri, table, enc, storage, nprobes=nprobes,
                                        refine_factor=refine_factor)
        if teacher not in ("dense", "hybrid"):
            raise ValueError(f"mining teacher must be dense or hybrid, not {teacher!r}")
        self.mode = self.retriever.vector_mode({"auto": "vector", "exact": "exact", "ann": "ann"}[retrieval])
        self.lexical: BM25 | None = None
        self.lexical_weight = lexical_weight
        held = teacher == "hybrid" or self.mode == "exact"  # every candidate scored here: rows and vectors, once
        if held:
            rows = self.retriever.rows()
            self.ids, self.notes, self.texts = rows[S.CHUNK_ID], rows[S.DOC_ID], rows[S.TEXT]
            self.lexical = BM25(list(self.texts)) if teacher == "hybrid" else None
            self.retriever.vectors()
        # ann: the index search returns each hit's id, note and text; nothing table-wide is held
        log.info("miner: %s candidates, %s retrieval, %s teacher, top_k=%d",
                 f"{len(self.ids):,}" if held else "indexed",
                 "exact" if self.lexical is not None else self.mode, teacher, top_k)

    def __call__(self, batch: pa.Table, query_vectors: np.ndarray | None = None) -> pa.Table:
        """Triplet rows of ``batch``; ``query_vectors``: the batch's queries, already encoded by this model."""
        missing = [c for c in self.REQUIRED if c not in batch.column_names]
        if missing:
            raise KeyError(f"miner input lacks columns {missing}; got {batch.column_names}")
        queries = batch[P.QUERY].to_pylist()
        passages = batch[P.PASSAGE].to_pylist()
        notes = batch[P.NOTE_ID].to_pylist()
        pos_ids = [M.positive_id(p) for p in passages]
        qvecs = self.retriever.encode(queries) if query_vectors is None else query_vectors
        if self.lexical is not None:
            pos_scores, cand_idx, cand_scores = self._hybrid(queries, qvecs, pos_ids)
            cands = [self._held(ci, cs) for ci, cs in zip(cand_idx, cand_scores)]
        else:
            pos_scores = np.einsum("ij,ij->i", qvecs, self.retriever.vectors_of(pos_ids))
            cands = self._dense(qvecs)
        rows = []
        for i, (pair_id, query, passage, note) in enumerate(zip(batch[P.PAIR_ID].to_pylist(), queries, passages, notes)):
            c = cands[i]
            is_pos = (c.ids == pos_ids[i]) | (c.texts == passage)
            sel = select_negatives(c.scores, is_pos, c.notes == note, float(pos_scores[i]), self.params)
            rows.append(self._row(pair_id, query, passage, note, pos_ids[i], float(pos_scores[i]), c, sel))
        return pa.Table.from_pylist(rows, schema=M.MINED_SCHEMA)

    def _held(self, idx: np.ndarray, scores: np.ndarray) -> Candidates:
        return Candidates(self.ids[idx], self.notes[idx], self.texts[idx], np.asarray(scores))

    def _dense(self, qvecs: np.ndarray) -> list[Candidates]:
        """Top-k candidates per query by cosine: exact over the held vectors, or the index's hits (ann)."""
        if self.mode == "exact":
            return [self._held(ci, cs) for ci, cs in zip(*self.retriever.search_vectors(qvecs, self.top_k, "exact"))]
        obj = lambda col: np.asarray(col.to_pylist(), dtype=object)
        return [Candidates(obj(h[S.CHUNK_ID]), obj(h[S.DOC_ID]), obj(h[S.TEXT]), h[SCORE].to_numpy())
                for h in self.retriever.ann_hits(qvecs, self.top_k, [S.CHUNK_ID, S.DOC_ID, S.TEXT])]

    def _hybrid(self, queries: list[str], qvecs: np.ndarray, pos_ids: list[str]
                ) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
        """Fused scores of every candidate; (positive scores, top-k rows, their scores) per query."""
        fused = hybrid_scores(np.asarray(qvecs, dtype=np.float32) @ self.retriever.vectors().T,
                              self.lexical.scores(queries), self.lexical_weight)
        pos_rows = np.asarray([self.retriever.row_of(p) for p in pos_ids], dtype=np.int64)
        pos_scores = fused[np.arange(len(queries)), pos_rows]
        k = min(self.top_k, fused.shape[1])
        top = np.argpartition(-fused, k - 1, axis=1)[:, :k]
        idx, val = [], []
        for i in range(len(queries)):
            order = top[i][np.argsort(-fused[i, top[i]], kind="stable")]
            idx.append(order)
            val.append(fused[i, order])
        return pos_scores, idx, val

    def _row(self, pair_id: str, query: str, passage: str, note: str, pos_id: str, pos_score: float,
             c: Candidates, sel: Selection) -> dict[str, Any]:
        neg = sel.indices
        return {
            M.QUERY: query, M.POSITIVE: passage, M.NEGATIVES: list(c.texts[neg]),
            M.QUERY_ID: pair_id, M.QUERY_NOTE_ID: note, M.POSITIVE_ID: pos_id,
            M.NEGATIVE_IDS: list(c.ids[neg]), M.NEGATIVE_NOTE_IDS: list(c.notes[neg]),
            M.POSITIVE_SCORE: pos_score, M.NEGATIVE_SCORES: sel.scores, M.N_NEGATIVES: len(sel.indices),
            M.SHORTFALL_REASON: sel.reason, M.ST_RETRIEVED: sel.retrieved, M.ST_SAME_NOTE: sel.removed_same_note,
            M.ST_CONSIDERED: sel.considered, M.ST_ABS_MARGIN: sel.removed_absolute,
            M.ST_REL_MARGIN: sel.removed_relative,
        }
