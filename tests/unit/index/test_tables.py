from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from medembed import schema as S
from medembed.config import StoreConfig
from medembed.index.changes import ensure_doc_hash
from medembed.index.diff import STORED_COLUMNS, classify, stored_hashes
from medembed.index.indexes import finalize_table
from medembed.index.tables import table_uri
from medembed.index.writer import Committer, FragmentWriter
from medembed.runtime.storage import DEFAULT_STORAGE


def rows(n, dim=16, prefix="d", seed=0):
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n, dim)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    from datetime import datetime, timezone

    return pa.table({
        S.CHUNK_ID: [S.chunk_id(f"{prefix}{i}", 0) for i in range(n)], S.DOC_ID: [f"{prefix}{i}" for i in range(n)],
        S.CHUNK_INDEX: pa.array([0] * n, pa.int32()), S.TITLE: [""] * n,
        S.TEXT: [f"note {i} about {'sepsis' if i % 2 else 'stroke'}" for i in range(n)], S.METADATA: ["{}"] * n,
        S.VECTOR: S.vectors_to_arrow(v), S.MODEL_ID: ["m"] * n, S.CONTENT_HASH: [S.content_hash(str(i)) for i in range(n)],
        S.N_TOKENS: pa.array([5] * n, pa.int32()), S.EMBEDDED_AT: pa.array([datetime.now(timezone.utc)] * n,
                                                                            pa.timestamp("us", tz="UTC"))})


def write(uri, table, known=None, every=2, parts=4):
    schema = S.table_schema(16, "m", "r")
    w = FragmentWriter(uri, schema)
    c = Committer(uri, schema, DEFAULT_STORAGE, known or {}, every)
    for part in np.array_split(np.arange(table.num_rows), parts):
        out = w(table.take(pa.array(part)))
        for r in out.to_pylist():
            c.add(r["fragment"], r["rows"], r["doc_ids"], r["tokens"])
    c.flush()
    return c.stats


def test_two_phase_write_commits_each_fragment_once(tmp_path):
    uri = table_uri(str(tmp_path), "t")
    schema = S.table_schema(16, "m", "r")
    w = FragmentWriter(uri, schema)
    data = rows(300)
    orphan = w(data.slice(0, 10))  # a "failed attempt": written, never committed
    assert orphan.num_rows == 1
    st = write(uri, data)
    assert st.rows == 300 and st.commits == 2 and st.fragments == 4
    ds = DEFAULT_STORAGE.lance_dataset(uri)
    assert ds.count_rows() == 300
    ids = ds.to_table(columns=[S.CHUNK_ID]).column(0).to_pylist()
    assert len(set(ids)) == 300


def test_indexes_fts_and_ann_threshold(tmp_path):
    uri = table_uri(str(tmp_path), "t")
    write(uri, rows(300))
    info = finalize_table(str(tmp_path), "t", StoreConfig(ann_min_rows=1000), DEFAULT_STORAGE)
    assert info["fts_index"] and info["ann_index"] is None
    info = finalize_table(str(tmp_path), "t", StoreConfig(ann_min_rows=256), DEFAULT_STORAGE)
    assert info["ann_index"]["type"] == "IVF_RQ"
    types = {i.index_type for i in DEFAULT_STORAGE.lancedb_connect(str(tmp_path)).open_table("t").list_indices()}
    assert types == {"FTS", "IvfRq"}


def test_table_from_before_doc_hash_is_migrated_and_every_document_changes_once(tmp_path):
    uri = table_uri(str(tmp_path), "t")
    data = rows(6)
    write(uri, data, parts=1)  # the schema of tables written before doc_hash
    ds, added = ensure_doc_hash(DEFAULT_STORAGE.lance_dataset(uri))
    assert added and ds.version == 2 and ds.count_rows() == 6
    assert ds.schema.metadata[S.META_MODEL_ID.encode()] == b"m"  # the model metadata survives
    assert ensure_doc_hash(DEFAULT_STORAGE.lance_dataset(uri))[1] is False
    stored = stored_hashes(DEFAULT_STORAGE.lance_dataset(uri).to_table(columns=STORED_COLUMNS))
    corpus = pa.table({S.DOC_ID: [f"d{i}" for i in range(6)], S.DOC_HASH: ["h"] * 6})
    assert classify(corpus, stored)["changed"] == [f"d{i}" for i in range(6)]
    # re-writing a changed doc (with its hash) replaces its old chunks: no duplicate chunk ids
    schema = S.table_schema(16, "m", "r", doc_hash=True)
    d2 = data.slice(2, 1).append_column(S.DOC_HASH, pa.array(["h"])).append_column(S.DOC_CHUNKS, pa.array([1], pa.int32()))
    w, c = FragmentWriter(uri, schema), Committer(uri, schema, DEFAULT_STORAGE, {"d2": ""}, 1)
    for r in w(d2).to_pylist():
        c.add(r["fragment"], r["rows"], r["doc_ids"], r["tokens"])
    c.flush()
    assert c.stats.documents_replaced == 1
    t = DEFAULT_STORAGE.lance_dataset(uri).to_table()
    assert t.num_rows == 6 and len(set(t.column(S.CHUNK_ID).to_pylist())) == 6
    after = classify(corpus, stored_hashes(DEFAULT_STORAGE.lance_dataset(uri).to_table(columns=STORED_COLUMNS)))
    assert after["unchanged"] == ["d2"] and len(after["changed"]) == 5


def test_absent_dataset_is_none(tmp_path):
    assert DEFAULT_STORAGE.lance_dataset(str(tmp_path / "nothing.lance")) is None


def test_compaction_keeps_tagged_versions(tmp_path):
    """finalize_table compacts with Lance's compact_files: served (tagged) old versions stay readable.

    LanceDB's Table.optimize also cleans up old versions and refuses when one of them is tagged (what
    serving does), so a served table could not be finalized once its tagged version aged past the
    cleanup window; shown here with a zero window.
    """
    from datetime import timedelta

    uri = table_uri(str(tmp_path), "t")
    write(uri, rows(40), every=1, parts=4)
    ds = DEFAULT_STORAGE.lance_dataset(uri)
    first = ds.version
    ds.tags.create("medembed-serving-v1", first)
    write(uri, rows(8, prefix="e", seed=1), every=1, parts=2)
    before = len(DEFAULT_STORAGE.lance_dataset(uri).get_fragments())
    info = finalize_table(str(tmp_path), "t", StoreConfig(ann_min_rows=10_000), DEFAULT_STORAGE)
    after = DEFAULT_STORAGE.lance_dataset(uri)
    assert before == 6 and info["fragments_compacted"] == before and len(after.get_fragments()) == 1
    assert after.count_rows() == 48
    assert DEFAULT_STORAGE.lance_dataset(uri).checkout_version("medembed-serving-v1").count_rows() == 40
    with pytest.raises(Exception, match="(?i)tag"):  # what finalize_table used to call
        DEFAULT_STORAGE.lancedb_connect(str(tmp_path)).open_table("t").optimize(cleanup_older_than=timedelta(0))


def test_finalize_compacts_a_single_fragment_only_when_it_has_deleted_rows(tmp_path):
    uri = table_uri(str(tmp_path), "t")
    write(uri, rows(10), every=1, parts=1)
    cfg = StoreConfig(ann_min_rows=10_000, fts=False)
    v = DEFAULT_STORAGE.lance_dataset(uri).version
    info = finalize_table(str(tmp_path), "t", cfg, DEFAULT_STORAGE)
    assert info == {"rows": 10, "fts_index": False, "ann_index": None, "fragments_compacted": 0}
    assert DEFAULT_STORAGE.lance_dataset(uri).version == v  # nothing rewritten
    DEFAULT_STORAGE.lance_dataset(uri).delete(f"{S.DOC_ID} IN ('d1', 'd3', 'd5', 'd7', 'd9')")  # past Lance's 10% threshold
    info = finalize_table(str(tmp_path), "t", cfg, DEFAULT_STORAGE)
    frags = DEFAULT_STORAGE.lance_dataset(uri).get_fragments()
    assert info["rows"] == 5 and info["fragments_compacted"] == 1
    assert len(frags) == 1 and frags[0].metadata.deletion_file is None and frags[0].physical_rows == 5
    with pytest.raises(FileNotFoundError, match="no table 'absent'"):
        finalize_table(str(tmp_path), "absent", cfg, DEFAULT_STORAGE)
