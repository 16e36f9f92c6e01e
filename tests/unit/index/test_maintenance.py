"""Incremental index maintenance: nightly rows go into the existing FTS and vector indexes (delta
indexes), search stays exact, deleted rows are gone, and the retrain policy fires at its thresholds."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import lance
import numpy as np
import pyarrow as pa

from medembed import schema as S
from medembed.config import StoreConfig
from medembed.index.indexes import META_ANN, META_CHOICE, finalize_table, index_state
from medembed.index.search import Retriever
from medembed.index.tables import table_metadata, table_uri
from medembed.runtime.storage import DEFAULT_STORAGE

DIM = 32
WORDS = ["sepsis", "stroke", "pancreatitis", "lamotrigine"]


def _rows(start: int, n: int, seed: int, word: str | None = None) -> tuple[pa.Table, np.ndarray]:
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n, DIM)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    ids = range(start, start + n)
    t = pa.table({
        S.CHUNK_ID: [S.chunk_id(f"d{i}", 0) for i in ids], S.DOC_ID: [f"d{i}" for i in ids],
        S.CHUNK_INDEX: pa.array([0] * n, pa.int32()), S.TITLE: [f"title {i}" for i in ids],
        S.TEXT: [f"note {i} about {word or WORDS[i % 4]}" for i in ids], S.METADATA: ["{}"] * n,
        S.VECTOR: S.vectors_to_arrow(v), S.MODEL_ID: ["m"] * n,
        S.CONTENT_HASH: [S.content_hash(str(i)) for i in ids], S.N_TOKENS: pa.array([5] * n, pa.int32()),
        S.EMBEDDED_AT: pa.array([datetime.now(timezone.utc)] * n, pa.timestamp("us", tz="UTC"))},
        schema=S.table_schema(DIM, "m", "r"))
    return t, v


def _cfg(tmp_path, **kw) -> StoreConfig:
    return StoreConfig(uri=str(tmp_path), **{"ann_min_rows": 256, "compact": False, **kw})


def _append(tmp_path, start: int, n: int, seed: int, word: str | None = None) -> np.ndarray:
    t, v = _rows(start, n, seed, word)
    lance.write_dataset(t, table_uri(str(tmp_path), "t"), mode="append")
    return v


def _base(tmp_path, n=600) -> tuple[dict, np.ndarray]:
    t, v = _rows(0, n, seed=0)
    DEFAULT_STORAGE.lancedb_connect(str(tmp_path)).create_table("t", t)
    return finalize_table(str(tmp_path), "t", _cfg(tmp_path), DEFAULT_STORAGE), v


def _ann(tmp_path, queries: np.ndarray, k: int = 3) -> list[list[str]]:
    r = Retriever(DEFAULT_STORAGE.lancedb_connect(str(tmp_path)).open_table("t"), nprobes=1000, refine_factor=50)
    assert r.has_ann_index
    idx, _ = r.search_vectors(queries, k, "ann")
    ids = r.rows()[S.CHUNK_ID]
    return [[ids[i] for i in row] for row in idx]


def _fts(tmp_path, text: str, k: int = 50) -> list[str]:
    tbl = DEFAULT_STORAGE.lancedb_connect(str(tmp_path)).open_table("t")
    return tbl.search(text, query_type="fts").select([S.CHUNK_ID]).limit(k).to_arrow()[S.CHUNK_ID].to_pylist()


def _state(tmp_path, name: str = "vector_idx") -> dict:
    return index_state(DEFAULT_STORAGE.lance_dataset(table_uri(str(tmp_path), "t")), name)


def test_first_run_trains_and_records_the_index_in_table_metadata(tmp_path):
    info, _ = _base(tmp_path)
    assert info["fts_index"] == "built"
    ann = info["ann_index"]
    assert ann["action"] == "trained" and ann["type"] == "IVF_RQ" and ann["partitions"] == 2  # min(sqrt, n/256)
    md = table_metadata(DEFAULT_STORAGE.lance_dataset(table_uri(str(tmp_path), "t")))
    rec = json.loads(md[META_ANN])
    assert rec["trained_rows"] == 600 and rec["type"] == "IVF_RQ" and rec["params"] == {"partitions": 2, "num_bits": 1}
    assert rec["trained_at"][:4].isdigit() and json.loads(md[META_CHOICE])["default"] == "IVF_RQ"
    # a second run with nothing new touches nothing
    again = finalize_table(str(tmp_path), "t", _cfg(tmp_path), DEFAULT_STORAGE)
    assert again["fts_index"] == "current" and again["ann_index"]["action"] == "current"


def test_nightly_rows_go_into_delta_indexes_and_search_stays_exact(tmp_path):
    _, v = _base(tmp_path)
    trained_at = json.loads(table_metadata(DEFAULT_STORAGE.lance_dataset(table_uri(str(tmp_path), "t")))[META_ANN])["trained_at"]
    new_v = _append(tmp_path, 600, 40, seed=1, word="tachycardia")
    DEFAULT_STORAGE.lance_dataset(table_uri(str(tmp_path), "t")).delete(f"{S.DOC_ID} IN ('d3', 'd7', 'd11')")  # all about lamotrigine
    info = finalize_table(str(tmp_path), "t", _cfg(tmp_path), DEFAULT_STORAGE)
    assert info["rows"] == 637
    assert info["fts_index"] == "updated"
    assert info["ann_index"]["action"] == "delta" and info["ann_index"]["rows_added"] == 40
    st = _state(tmp_path)
    assert st["segments"] == 2 and st["rows_per_segment"] == [597, 40] and st["unindexed_rows"] == 0
    assert _state(tmp_path, "text_idx")["unindexed_rows"] == 0
    rec = json.loads(table_metadata(DEFAULT_STORAGE.lance_dataset(table_uri(str(tmp_path), "t")))[META_ANN])
    assert rec["trained_at"] == trained_at and rec["trained_rows"] == 600  # not retrained
    # new rows: found by full text and by the vector index (each its own nearest neighbour)
    assert sorted(_fts(tmp_path, "tachycardia")) == sorted(S.chunk_id(f"d{i}", 0) for i in range(600, 640))
    got = _ann(tmp_path, new_v[[0, 17, 39]])
    assert [g[0] for g in got] == [S.chunk_id("d600", 0), S.chunk_id("d617", 0), S.chunk_id("d639", 0)]
    # deleted rows: gone from both
    assert _ann(tmp_path, v[[3, 7, 11]], k=10) and all(
        S.chunk_id(f"d{i}", 0) not in hits for hits in _ann(tmp_path, v[[3, 7, 11]], k=10) for i in (3, 7, 11))
    lamotrigine = _fts(tmp_path, "lamotrigine", k=1000)
    assert len(lamotrigine) == 150 - 3 and S.chunk_id("d3", 0) not in lamotrigine
    # ANN over base and delta equals exact search on every row
    r = Retriever(DEFAULT_STORAGE.lancedb_connect(str(tmp_path)).open_table("t"), nprobes=1000, refine_factor=50)
    q = np.concatenate([v[[0, 100, 599]], new_v[[5]]])
    assert [list(i) for i in r.search_vectors(q, 5, "ann")[0]] == [list(i) for i in r.search_vectors(q, 5, "exact")[0]]


def test_compaction_after_deletes_keeps_indexes_and_deltas_correct(tmp_path):
    _, v = _base(tmp_path)
    new_v = _append(tmp_path, 600, 30, seed=2, word="tachycardia")
    finalize_table(str(tmp_path), "t", _cfg(tmp_path), DEFAULT_STORAGE)
    gone = [f"d{i}" for i in range(0, 140, 2)] + ["d601"]  # 70 of fragment 0's 600 rows: Lance rewrites it
    DEFAULT_STORAGE.lance_dataset(table_uri(str(tmp_path), "t")).delete(f"{S.DOC_ID} IN ({', '.join(repr(d) for d in gone)})")
    info = finalize_table(str(tmp_path), "t", _cfg(tmp_path, compact=True, ann_retrain_fraction=1.0), DEFAULT_STORAGE)
    assert info["rows"] == 559 and info["fragments_compacted"] == 1
    assert info["fts_index"] == "current" and info["ann_index"]["action"] == "current"
    assert _state(tmp_path)["indexed_rows"] == 559 and _state(tmp_path, "text_idx")["unindexed_rows"] == 0
    assert len(_fts(tmp_path, "tachycardia")) == 29
    assert [h[0] for h in _ann(tmp_path, np.concatenate([v[[1, 3]], new_v[[0, 2]]]))] == [
        S.chunk_id(d, 0) for d in ("d1", "d3", "d600", "d602")]
    assert S.chunk_id("d601", 0) not in _ann(tmp_path, new_v[[1]], k=10)[0]
    assert S.chunk_id("d2", 0) not in _ann(tmp_path, v[[2]], k=10)[0]


def test_retrain_when_the_changed_rows_pass_the_fraction(tmp_path):
    _base(tmp_path)
    cfg = _cfg(tmp_path, ann_retrain_fraction=0.1)
    _append(tmp_path, 600, 40, seed=3)                  # 40 / 600 = 6.7%: delta
    assert finalize_table(str(tmp_path), "t", cfg, DEFAULT_STORAGE)["ann_index"]["action"] == "delta"
    _append(tmp_path, 640, 15, seed=4)                  # 55 / 600 = 9.2%: delta
    assert finalize_table(str(tmp_path), "t", cfg, DEFAULT_STORAGE)["ann_index"]["action"] == "delta"
    DEFAULT_STORAGE.lance_dataset(table_uri(str(tmp_path), "t")).delete(f"{S.DOC_ID} IN ('d1', 'd2', 'd4', 'd5', 'd6', 'd8')")
    _append(tmp_path, 655, 1, seed=5)                   # 56 added + 6 removed = 62 > 60: retrain
    info = finalize_table(str(tmp_path), "t", cfg, DEFAULT_STORAGE)["ann_index"]
    assert info["action"] == "trained" and "56 rows added and 6 removed" in info["reason"]
    st = _state(tmp_path)
    assert st["segments"] == 1 and st["rows_per_segment"] == [650] and st["unindexed_rows"] == 0
    assert json.loads(table_metadata(DEFAULT_STORAGE.lance_dataset(table_uri(str(tmp_path), "t")))[META_ANN])["trained_rows"] == 650


def test_deltas_past_the_limit_are_merged_without_retraining_and_still_count_towards_it(tmp_path):
    _, v = _base(tmp_path)
    trained_at = json.loads(table_metadata(DEFAULT_STORAGE.lance_dataset(table_uri(str(tmp_path), "t")))[META_ANN])["trained_at"]
    cfg = _cfg(tmp_path, ann_max_deltas=2, ann_retrain_fraction=0.1, fts=False)
    vs = []
    for night in range(2):
        vs.append(_append(tmp_path, 600 + 5 * night, 5, seed=10 + night))
        assert finalize_table(str(tmp_path), "t", cfg, DEFAULT_STORAGE)["ann_index"]["action"] == "delta"
    assert _state(tmp_path)["rows_per_segment"] == [600, 5, 5]
    vs.append(_append(tmp_path, 610, 5, seed=12))       # would be the third delta: merged instead
    info = finalize_table(str(tmp_path), "t", cfg, DEFAULT_STORAGE)["ann_index"]
    assert info["action"] == "merged" and "3 delta indexes" in info["reason"]
    st = _state(tmp_path)
    assert st["segments"] == 1 and st["rows_per_segment"] == [615] and st["unindexed_rows"] == 0
    rec = json.loads(table_metadata(DEFAULT_STORAGE.lance_dataset(table_uri(str(tmp_path), "t")))[META_ANN])
    assert rec["trained_at"] == trained_at and rec["trained_rows"] == 600  # same centroids
    assert (rec["added_rows"], rec["removed_rows"], rec["indexed_rows"]) == (15, 0, 615)
    new = np.concatenate(vs)
    assert [h[0] for h in _ann(tmp_path, new[[0, 7, 14]])] == [S.chunk_id(f"d{i}", 0) for i in (600, 607, 614)]
    # the merged rows still count as changed since training: 15 + 40 new + 6 removed = 61 > 60 retrains
    DEFAULT_STORAGE.lance_dataset(table_uri(str(tmp_path), "t")).delete(f"{S.DOC_ID} IN ('d1', 'd2', 'd4', 'd5', 'd6', 'd8')")
    assert finalize_table(str(tmp_path), "t", cfg, DEFAULT_STORAGE)["ann_index"]["action"] == "current"
    assert json.loads(table_metadata(DEFAULT_STORAGE.lance_dataset(table_uri(str(tmp_path), "t")))[META_ANN])["removed_rows"] == 6
    _append(tmp_path, 615, 40, seed=13)
    info = finalize_table(str(tmp_path), "t", cfg, DEFAULT_STORAGE)["ann_index"]
    assert info["action"] == "trained" and "55 rows added and 6 removed" in info["reason"]


def test_retrain_when_the_config_changes(tmp_path):
    _base(tmp_path)
    hnsw = finalize_table(str(tmp_path), "t", _cfg(tmp_path, ann_index="IVF_HNSW_SQ", fts=False), DEFAULT_STORAGE)["ann_index"]
    assert hnsw["action"] == "trained" and hnsw["type"] == "IVF_HNSW_SQ" and "type 'IVF_HNSW_SQ'" in hnsw["reason"]
    types = {i.index_type for i in DEFAULT_STORAGE.lancedb_connect(str(tmp_path)).open_table("t").list_indices()}
    assert types == {"FTS", "IvfHnswSq"}
    assert finalize_table(str(tmp_path), "t", _cfg(tmp_path), DEFAULT_STORAGE)["ann_index"]["type"] == "IVF_RQ"  # the config's


def test_maintain_table_stays_in_the_driver_below_the_threshold_or_without_ray(tmp_path):
    """A small table (or any table without Ray) is maintained in this process, and the result says so; the
    off-driver path (a Ray task) is covered by the embed and reembed job tests."""
    import ray

    from medembed.index.indexes import maintain_table, off_driver

    assert not ray.is_initialized()
    t, _ = _rows(0, 300, seed=0)
    DEFAULT_STORAGE.lancedb_connect(str(tmp_path)).create_table("t", t)
    info = maintain_table(str(tmp_path), "t", _cfg(tmp_path, index_off_driver_rows=0), DEFAULT_STORAGE)
    assert info["ran_in"] == {"process": "driver"} and info["rows"] == 300 and info["fts_index"] == "built"
    assert info["ann_index"]["action"] == "trained"
    assert not off_driver(_cfg(tmp_path, index_off_driver_rows=0), 10**9)  # no Ray: never off the driver
