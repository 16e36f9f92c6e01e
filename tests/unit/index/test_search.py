"""The one retriever: exact top-k, ANN (flat and IVF_PQ), full-text, hybrid, query encoding."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pytest

from medembed import schema as S
from medembed.config import StoreConfig
from medembed.index.indexes import finalize_table
from medembed.index.search import Retriever, top_k_exact
from medembed.runtime.storage import DEFAULT_STORAGE

DIM = 16


class FakeEncoder:
    """Maps a query text to the stored vector of the row it names ("doc7" -> row 7's vector)."""

    def __init__(self, vectors: np.ndarray):
        self.vectors = vectors
        self.calls: list[list[str]] = []

    def encode_queries(self, texts):
        self.calls.append(list(texts))
        return np.stack([self.vectors[int(t.split()[0][3:])] for t in texts])


def _table(tmp_path, n=300, seed=0):
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n, DIM)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    words = ["sepsis", "stroke", "pancreatitis", "lamotrigine"]
    t = pa.table({
        S.CHUNK_ID: [S.chunk_id(f"d{i}", 0) for i in range(n)], S.DOC_ID: [f"d{i}" for i in range(n)],
        S.CHUNK_INDEX: pa.array([0] * n, pa.int32()), S.TITLE: [f"title {i}" for i in range(n)],
        S.TEXT: [f"note {i} about {words[i % 4]}" for i in range(n)], S.METADATA: ["{}"] * n,
        S.VECTOR: S.vectors_to_arrow(v), S.MODEL_ID: ["m"] * n,
        S.CONTENT_HASH: [S.content_hash(str(i)) for i in range(n)], S.N_TOKENS: pa.array([5] * n, pa.int32()),
        S.EMBEDDED_AT: pa.array([datetime.now(timezone.utc)] * n, pa.timestamp("us", tz="UTC"))},
        schema=S.table_schema(DIM, "m", "r"))
    db = DEFAULT_STORAGE.lancedb_connect(str(tmp_path))
    db.create_table("t", t)
    return db, v


def test_top_k_exact_is_sorted_and_breaks_ties_by_position():
    q = np.array([[1.0, 0.0]], dtype=np.float32)
    c = np.array([[0.5, 0.0], [0.9, 0.1], [0.5, 0.3], [0.1, 0.0], [0.9, 0.0]], dtype=np.float32)
    idx, val = top_k_exact(q, c, 4)
    assert idx.tolist() == [[1, 4, 0, 2]]
    assert val[0].tolist() == pytest.approx([0.9, 0.9, 0.5, 0.5])


def test_exact_and_flat_ann_agree_with_numpy(tmp_path):
    db, v = _table(tmp_path)
    r = Retriever(db.open_table("t"), FakeEncoder(v))
    assert not r.has_ann_index
    q = v[[3, 50, 299]]
    want = np.argsort(-(q @ v.T), axis=1, kind="stable")[:, :10]
    ex_idx, ex_val = r.search_vectors(q, 10, "exact")
    ann_idx, ann_val = r.search_vectors(q, 10, "ann")  # no index: LanceDB's flat scan
    assert [list(i) for i in ex_idx] == want.tolist() == [list(i) for i in ann_idx]
    np.testing.assert_allclose(np.stack(ex_val), np.stack(ann_val), atol=1e-5)
    assert np.stack(ex_val)[:, 0] == pytest.approx(1.0, abs=1e-5)


def test_text_search_encodes_queries_once_and_returns_hits(tmp_path):
    db, v = _table(tmp_path)
    enc = FakeEncoder(v)
    r = Retriever(db.open_table("t"), enc)
    hits = r.search(["doc7 please", "doc8"], k=3)
    assert enc.calls == [["doc7 please", "doc8"]]
    assert [h[0].doc_id for h in hits] == ["d7", "d8"]
    assert hits[0][0].title == "title 7" and hits[0][0].text == "note 7 about lamotrigine"
    assert hits[0][0].score >= hits[0][1].score >= hits[0][2].score
    np.testing.assert_allclose(r.vectors_of(["d8#0", "d7#0"]), v[[8, 7]])


def test_fts_and_hybrid(tmp_path):
    db, v = _table(tmp_path, n=40)
    finalize_table(str(tmp_path), "t", StoreConfig(uri=str(tmp_path), ann_min_rows=10**9), DEFAULT_STORAGE)
    r = Retriever(db.open_table("t"), FakeEncoder(v))
    fts = r.search("pancreatitis", k=5, mode="fts")[0]
    assert len(fts) == 5 and all("pancreatitis" in h.text for h in fts)
    hybrid = r.search("doc2 pancreatitis", k=5, mode="hybrid")[0]
    assert hybrid[0].doc_id == "d2"  # first in both lists
    with pytest.raises(ValueError, match="unknown search mode"):
        r.search("x", mode="nope")


def test_ivf_pq_index_is_used_and_finds_exact_matches(tmp_path):
    db, v = _table(tmp_path, n=600)
    info = finalize_table(str(tmp_path), "t", StoreConfig(uri=str(tmp_path), ann_min_rows=256, fts=False,
                                                          ann_index="IVF_PQ"), DEFAULT_STORAGE)
    assert info["ann_index"]["type"] == "IVF_PQ"
    r = Retriever(db.open_table("t"), FakeEncoder(v), nprobes=info["ann_index"]["partitions"], refine_factor=50)
    assert r.has_ann_index
    idx, val = r.search_vectors(v[[5, 77]], 5, "vector")  # vector -> ANN when indexed
    assert [int(i[0]) for i in idx] == [5, 77]
    assert [float(s[0]) for s in val] == pytest.approx([1.0, 1.0], abs=1e-4)
    # text search on an indexed table: the hits' columns come with the search, no table-wide rows are loaded
    fresh = Retriever(db.open_table("t"), FakeEncoder(v), nprobes=info["ann_index"]["partitions"], refine_factor=50)
    hits = fresh.search(["doc5", "doc77"], k=5)
    assert fresh._rows is None and fresh._vectors is None
    assert [[h.chunk_id for h in hs] for hs in hits] == [[r.rows()[S.CHUNK_ID][i] for i in ix] for ix in idx]
    assert [[h.score for h in hs] for hs in hits] == [[float(x) for x in s] for s in val]
    assert hits[0][0].doc_id == "d5" and hits[0][0].text == r.rows()[S.TEXT][5] and hits[0][0].text.startswith("note 5")


def test_open_names_missing_tables(tmp_path):
    _table(tmp_path, n=5)
    with pytest.raises(LookupError, match="no table 'x'"):
        Retriever.open(str(tmp_path), "x")
    assert Retriever.open(str(tmp_path)).name == "t"
