"""The mining stage: a Ray Data callable class turning a batch of pairs into one triplet row per query.

Each actor loads the encoder and opens the candidate table once (``__init__``). Retrieval is exact
(brute-force inner product over the candidate vectors held in the actor: deterministic) or, when the
table has a vector index, LanceDB ANN search. Vectors are normalized, so inner product = cosine.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pyarrow as pa

from medembed import schema as S
from medembed.config import EmbedConfig, ModelConfig, S3Config
from medembed.embed import build_encoder
from medembed.mining import columns as M
from medembed.mining.selection import SelectParams, Selection, select_negatives, top_k_exact
from medembed.store import connect, open_dataset, table_uri
from medembed.synth import columns as P

log = logging.getLogger(__name__)


def has_vector_index(tbl: Any) -> bool:
    return any(S.VECTOR in i.columns and "FTS" not in str(i.index_type).upper() for i in tbl.list_indices())


class NegativeMiner:
    """Ray Data callable class: pairs (pair_id, note_id, query, passage) -> MINED_SCHEMA rows."""

    REQUIRED = (P.PAIR_ID, P.NOTE_ID, P.QUERY, P.PASSAGE)

    def __init__(self, model_cfg: dict[str, Any], embed_cfg: dict[str, Any], db_uri: str, table: str,
                 params: dict[str, Any], top_k: int, retrieval: str = "auto", nprobes: int = 20,
                 refine_factor: int | None = 10, s3: dict[str, Any] | None = None):
        s3c = S3Config.model_validate(s3) if s3 else None
        self.encoder = build_encoder(ModelConfig.model_validate(model_cfg), EmbedConfig.model_validate(embed_cfg), s3c)
        self.params = SelectParams(**params)
        self.top_k = top_k
        self.nprobes, self.refine_factor = nprobes, refine_factor
        self.tbl = connect(db_uri, s3c).open_table(table)
        self.ann = retrieval == "ann" or (retrieval == "auto" and has_vector_index(self.tbl))
        self.ds = open_dataset(table_uri(db_uri, table), s3c)
        cols = [S.CHUNK_ID, S.DOC_ID, S.TEXT] + ([] if self.ann else [S.VECTOR])
        t = self.ds.to_table(columns=cols)
        self.ids = np.asarray(t[S.CHUNK_ID].to_pylist(), dtype=object)
        self.notes = np.asarray(t[S.DOC_ID].to_pylist(), dtype=object)
        self.texts = np.asarray(t[S.TEXT].to_pylist(), dtype=object)
        self.row_of = {cid: i for i, cid in enumerate(self.ids)}
        self.vectors = None if self.ann else np.asarray(
            t[S.VECTOR].combine_chunks().flatten().to_numpy(zero_copy_only=False), dtype=np.float32).reshape(len(t), -1)
        log.info("miner: %d candidates, %s retrieval, top_k=%d", len(self.ids), "ANN" if self.ann else "exact", top_k)

    def _positive_vectors(self, pos_ids: list[str]) -> np.ndarray:
        if self.vectors is not None:
            return self.vectors[[self.row_of[i] for i in pos_ids]]
        uniq = sorted(set(pos_ids))
        quoted = ", ".join("'" + i.replace("'", "''") + "'" for i in uniq)
        got = self.ds.to_table(columns=[S.CHUNK_ID, S.VECTOR], filter=f"{S.CHUNK_ID} IN ({quoted})")
        vec = dict(zip(got[S.CHUNK_ID].to_pylist(), got[S.VECTOR].to_pylist()))
        return np.asarray([vec[i] for i in pos_ids], dtype=np.float32)

    def _retrieve(self, qvecs: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        if not self.ann:
            idx, val = top_k_exact(qvecs, self.vectors, self.top_k)
            return list(idx), list(val)
        idxs, vals = [], []
        for q in qvecs:
            query = self.tbl.search(q, vector_column_name=S.VECTOR).metric("cosine").nprobes(self.nprobes)
            if self.refine_factor:
                query = query.refine_factor(self.refine_factor)
            hits = query.select([S.CHUNK_ID]).limit(self.top_k).to_arrow()
            idxs.append(np.asarray([self.row_of[c] for c in hits[S.CHUNK_ID].to_pylist()], dtype=np.int64))
            vals.append((1.0 - hits["_distance"].to_numpy()).astype(np.float32))
        return idxs, vals

    def __call__(self, batch: pa.Table) -> pa.Table:
        missing = [c for c in self.REQUIRED if c not in batch.column_names]
        if missing:
            raise KeyError(f"miner input lacks columns {missing}; got {batch.column_names}")
        queries = batch[P.QUERY].to_pylist()
        passages = batch[P.PASSAGE].to_pylist()
        notes = batch[P.NOTE_ID].to_pylist()
        pos_ids = [M.positive_id(p) for p in passages]
        qvecs = self.encoder.encode_queries(queries)
        pos_scores = np.einsum("ij,ij->i", qvecs, self._positive_vectors(pos_ids))
        cand_idx, cand_scores = self._retrieve(qvecs)
        rows = []
        for i, (pair_id, query, passage, note) in enumerate(zip(batch[P.PAIR_ID].to_pylist(), queries, passages, notes)):
            ci = cand_idx[i]
            is_pos = (self.ids[ci] == pos_ids[i]) | (self.texts[ci] == passage)
            sel = select_negatives(cand_scores[i], is_pos, self.notes[ci] == note, float(pos_scores[i]), self.params)
            rows.append(self._row(pair_id, query, passage, note, pos_ids[i], float(pos_scores[i]), ci[sel.indices], sel))
        return pa.Table.from_pylist(rows, schema=M.MINED_SCHEMA)

    def _row(self, pair_id: str, query: str, passage: str, note: str, pos_id: str, pos_score: float,
             neg: np.ndarray, sel: Selection) -> dict[str, Any]:
        return {
            M.QUERY: query, M.POSITIVE: passage, M.NEGATIVES: list(self.texts[neg]),
            M.QUERY_ID: pair_id, M.QUERY_NOTE_ID: note, M.POSITIVE_ID: pos_id,
            M.NEGATIVE_IDS: list(self.ids[neg]), M.NEGATIVE_NOTE_IDS: list(self.notes[neg]),
            M.POSITIVE_SCORE: pos_score, M.NEGATIVE_SCORES: sel.scores, M.N_NEGATIVES: len(sel.indices),
            M.SHORTFALL_REASON: sel.reason, M.ST_RETRIEVED: sel.retrieved, M.ST_SAME_NOTE: sel.removed_same_note,
            M.ST_CONSIDERED: sel.considered, M.ST_ABS_MARGIN: sel.removed_absolute,
            M.ST_REL_MARGIN: sel.removed_relative,
        }
