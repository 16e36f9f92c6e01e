"""Mining with the candidate table's ANN index (IVF_PQ + exact refine) agrees with exact retrieval."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone

import pyarrow as pa
import pytest

from medembed import schema as S
from medembed.config import EmbedConfig, ModelConfig, S3Config, StoreConfig
from medembed.embedding.card import resolve_card
from medembed.embedding.encoders import build_encoder, encoder_actor_kwargs
from medembed.index.indexes import finalize_table, has_vector_index
from medembed.index.search import Retriever
from medembed.index.tables import table_uri
from medembed.index.writer import Committer, FragmentWriter
from medembed.mining import columns as M
from medembed.mining.miner import NegativeMiner
from medembed.runtime.storage import DEFAULT_STORAGE
from medembed.sample_corpus import default_path
from medembed.synth import columns as P

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

PARAMS = {"num_negatives": 3, "min_rank": 1, "max_rank": 15, "relative_margin": 0.05, "absolute_margin": None,
          "exclude_same_note": True}


@pytest.fixture(scope="module")
def candidate_db(tmp_path_factory):
    """~800 sentence candidates from the synthetic sample notes, with an IVF_PQ index."""
    notes = [json.loads(x) for x in default_path().read_text().splitlines() if x.startswith("{")]
    rows = {}
    for n in notes:
        for sent in re.split(r"(?<=[.!?])\s+", n["text"]):
            rows.setdefault(sent, n["id"])  # deduplicated by text, like the miner's positives
    texts, docs = list(rows), list(rows.values())
    enc = build_encoder(ModelConfig(), EmbedConfig(torch_threads=2), DEFAULT_STORAGE)
    vecs = enc.encode_documents(texts)
    n = len(texts)
    now = datetime.now(timezone.utc)
    table = pa.table({
        S.CHUNK_ID: [M.positive_id(t) for t in texts], S.DOC_ID: docs, S.CHUNK_INDEX: pa.array([0] * n, pa.int32()),
        S.TITLE: [""] * n, S.TEXT: texts, S.METADATA: ["{}"] * n, S.VECTOR: S.vectors_to_arrow(vecs),
        S.MODEL_ID: [enc.model.model_id] * n, S.CONTENT_HASH: [S.content_hash(t) for t in texts],
        S.N_TOKENS: pa.array([16] * n, pa.int32()), S.EMBEDDED_AT: pa.array([now] * n, pa.timestamp("us", tz="UTC"))})
    db = tmp_path_factory.mktemp("ann") / "db"
    uri = table_uri(str(db), "cands")
    schema = S.table_schema(enc.dim, enc.model.model_id, enc.model.revision)
    committer = Committer(uri, schema, DEFAULT_STORAGE, {}, every=4)
    for r in FragmentWriter(uri, schema)(table).to_pylist():
        committer.add(r["fragment"], r["rows"], r["doc_ids"], r["tokens"])
    committer.flush()
    info = finalize_table(str(db), "cands", StoreConfig(ann_min_rows=256), DEFAULT_STORAGE)
    assert info["ann_index"] is not None and n >= 256
    return str(db), texts, docs


def test_ann_mining_matches_exact(candidate_db, monkeypatch):
    db, texts, docs = candidate_db
    assert has_vector_index(DEFAULT_STORAGE.lancedb_connect(db).open_table("cands"))
    picks = range(0, len(texts), 40)
    batch = pa.table({P.PAIR_ID: [f"q{i}" for i in picks], P.NOTE_ID: [docs[i] for i in picks],
                      P.QUERY: [texts[i].split(" with ")[0] for i in picks], P.PASSAGE: [texts[i] for i in picks]})
    encoder = encoder_actor_kwargs(ModelConfig(), EmbedConfig(torch_threads=2), S3Config(), resolve_card(ModelConfig()))
    common = dict(encoder=encoder, db_uri=db, table="cands", params=PARAMS, top_k=40)
    exact = NegativeMiner(retrieval="exact", **common)(batch).to_pylist()
    # probe every partition and re-rank exactly: ANN must reproduce the exact negatives
    with monkeypatch.context() as m:  # the ANN miner holds no table-wide rows: its hits carry ids, notes and texts
        m.setattr(Retriever, "rows", lambda self: pytest.fail("the ann miner loaded every candidate row"))
        ann = NegativeMiner(retrieval="ann", nprobes=1000, refine_factor=50, **common)(batch).to_pylist()
    assert len(exact) == len(ann) == batch.num_rows
    assert sum(1 for e in exact if e[M.NEGATIVE_IDS]) >= len(exact) // 2  # the comparison has substance
    agree = sum(a[M.NEGATIVE_IDS] == e[M.NEGATIVE_IDS] for a, e in zip(ann, exact))
    assert agree >= 0.9 * len(exact), (agree, len(exact))
    for a, e in zip(ann, exact):
        assert a[M.POSITIVE_SCORE] == pytest.approx(e[M.POSITIVE_SCORE], abs=1e-5)
        assert a[M.QUERY_NOTE_ID] not in a[M.NEGATIVE_NOTE_IDS]
        assert a[M.POSITIVE_ID] not in a[M.NEGATIVE_IDS]
