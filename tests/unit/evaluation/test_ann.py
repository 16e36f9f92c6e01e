"""`retrieval: ann` in evaluation: a reused corpus table gets its vector index when store.ann_min_rows asks
for one (else ann would silently scan every row), and ANN runs agree with exact runs."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pytest

from medembed import schema as S
from medembed.config import EmbedConfig, ModelConfig
from medembed.embedding.card import resolve_card
from medembed.evaluation.config import EvalStoreConfig
from medembed.evaluation.corpus_table import corpus_fingerprint, corpus_table_name, document_key, ensure_corpus_table
from medembed.evaluation.datasets import Corpus
from medembed.evaluation.retrieval import retrieve
from medembed.index.search import Retriever
from medembed.index.tables import table_uri
from medembed.runtime import artifacts
from medembed.runtime.storage import DEFAULT_STORAGE

N = 600


def _reusable_table(tmp_path) -> tuple[Corpus, object, ModelConfig, np.ndarray, str]:
    """A complete corpus table (rows, vectors, marker) as an earlier eval run with a high ann_min_rows left it."""
    model = ModelConfig()
    card = resolve_card(model)
    corpus = Corpus([f"doc{i}" for i in range(N)], [""] * N, [f"text {i}" for i in range(N)])
    rng = np.random.default_rng(0)
    v = rng.normal(size=(N, card.dim)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    t = pa.table({
        S.CHUNK_ID: corpus.ids, S.DOC_ID: corpus.ids, S.CHUNK_INDEX: pa.array([0] * N, pa.int32()),
        S.TITLE: corpus.titles, S.TEXT: corpus.texts, S.METADATA: pa.nulls(N, pa.string()),
        S.VECTOR: S.vectors_to_arrow(v), S.MODEL_ID: [card.model_id] * N,
        S.CONTENT_HASH: [S.content_hash("", x) for x in corpus.texts], S.N_TOKENS: pa.array([3] * N, pa.int32()),
        S.EMBEDDED_AT: pa.array([datetime.now(timezone.utc)] * N, pa.timestamp("us", tz="UTC"))},
        schema=S.table_schema(card.dim, card.model_id, card.revision))
    name = corpus_table_name("set", card, model)
    DEFAULT_STORAGE.lancedb_connect(str(tmp_path)).create_table(name, t)
    artifacts.mark_complete(table_uri(str(tmp_path), name), "eval_corpus_table", "earlier",
                            {"model_id": card.model_id, "revision": card.revision,
                             "document_key": document_key(card, model), "corpus": corpus_fingerprint(corpus),
                             "rows": N})
    return corpus, card, model, v, name


def test_reused_table_gets_the_vector_index_and_ann_agrees_with_exact(tmp_path, monkeypatch):
    corpus, card, model, v, name = _reusable_table(tmp_path)
    high = EvalStoreConfig(uri=str(tmp_path), ann_min_rows=100_000)
    got = ensure_corpus_table("set", corpus, card, model, EmbedConfig(), high, DEFAULT_STORAGE, "run1")
    assert got.reused and not Retriever.open(str(tmp_path), name).has_ann_index
    version = DEFAULT_STORAGE.lance_dataset(table_uri(str(tmp_path), name)).version

    forced = EvalStoreConfig(uri=str(tmp_path), ann_min_rows=256)
    got = ensure_corpus_table("set", corpus, card, model, EmbedConfig(), forced, DEFAULT_STORAGE, "run2")
    assert got.reused and got.rows == N  # reused, not re-embedded (no Ray here)
    assert DEFAULT_STORAGE.lance_dataset(table_uri(str(tmp_path), name)).version > version
    r = Retriever.open(str(tmp_path), name, nprobes=forced.nprobes, refine_factor=forced.refine_factor)
    assert r.has_ann_index
    q = v[[0, 10, 599]] + 0.01
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    with monkeypatch.context() as m:  # the ANN run reads its hits only, never the table's row arrays
        m.setattr(Retriever, "rows", lambda self: pytest.fail("ann retrieval loaded every row"))
        ann = retrieve(r, ["q0", "q1", "q2"], q, 10, "ann")
    exact = retrieve(r, ["q0", "q1", "q2"], q, 10, "exact")
    assert all(len(ann[k]) == 10 and list(ann[k].values()) == sorted(ann[k].values(), reverse=True) for k in ann)
    assert [next(iter(ann[k])) for k in ("q0", "q1", "q2")] == ["doc0", "doc10", "doc599"]
    overlap = np.mean([len(set(ann[k]) & set(exact[k])) / 10 for k in exact])
    assert overlap >= 0.6  # random 384-dim vectors are the hard case for PQ; real embeddings: bench/index_recall.py
