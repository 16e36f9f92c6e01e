"""The embedder stage: a Ray Data callable class turning chunk rows into embedded rows.

It knows models, not tables: it adds a normalized float32 ``vector``, the ``model_id`` and
``embedded_at`` to every row. The encoder (and its model) loads once per actor in ``__init__``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from medembed import schema as S
from medembed.embedding.chunking import document_input
from medembed.embedding.encoders import encoder_from_kwargs
from medembed.runtime.storage import DEFAULT_STORAGE, Storage


class ChunkEmbedder:
    """Ray Data callable class: chunk rows -> the same rows with vector, model_id, embedded_at.

    ``n_tokens`` orders the forward passes; null counts are filled here with the model's tokenizer."""

    REQUIRED = (S.TITLE, S.TEXT, S.N_TOKENS)

    def __init__(self, model_cfg: dict[str, Any], embed_cfg: dict[str, Any], storage: Storage = DEFAULT_STORAGE,
                 card: dict[str, Any] | None = None):
        self.encoder = encoder_from_kwargs(model_cfg, embed_cfg, storage, card)

    def __call__(self, batch: pa.Table) -> pa.Table:
        missing = [c for c in self.REQUIRED if c not in batch.column_names]
        if missing:
            raise KeyError(f"embedder input lacks columns {missing}; got {batch.column_names}")
        titles = batch.column(S.TITLE).to_pylist()
        texts = batch.column(S.TEXT).to_pylist()
        inputs = [document_input(t or "", x) for t, x in zip(titles, texts)]
        counts = batch.column(S.N_TOKENS)
        if counts.null_count:  # rows made without the tokenizer (mining positives, evaluation corpora)
            counted = pa.array(self.encoder.count_tokens(inputs), pa.int32())
            batch = batch.set_column(batch.schema.get_field_index(S.N_TOKENS), S.N_TOKENS,
                                     pc.coalesce(counts, counted))
        vecs = self.encoder.encode_documents(inputs, batch.column(S.N_TOKENS).to_pylist())
        n = batch.num_rows
        now = datetime.now(timezone.utc)
        return (batch.append_column(S.VECTOR, S.vectors_to_arrow(vecs))
                .append_column(S.MODEL_ID, pa.array([self.encoder.model.model_id] * n, pa.string()))
                .append_column(S.EMBEDDED_AT, pa.array([now] * n, pa.timestamp("us", tz="UTC"))))
