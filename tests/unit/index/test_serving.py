"""Serving pointer (switch, rollback, pinned reads through the one retriever) and the one-transaction sync commit."""

from __future__ import annotations

import lance
import numpy as np
import pyarrow as pa
import pytest
from lance.fragment import write_fragments

from medembed import schema as S
from medembed.index import serving
from medembed.index.search import Retriever
from medembed.index.sync import Staged, commit_sync

DIM = 4


def rows(doc_chunks: dict[str, int], tag: str = "v1", seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    out = []
    for d, n in doc_chunks.items():
        for k in range(n):
            v = rng.normal(size=DIM).astype(np.float32)
            out.append({S.CHUNK_ID: S.chunk_id(d, k), S.DOC_ID: d, S.CHUNK_INDEX: k, S.TITLE: d,
                        S.TEXT: f"{d} chunk {k} {tag}", S.METADATA: "{}", S.VECTOR: (v / np.linalg.norm(v)).tolist(),
                        S.MODEL_ID: "m", S.CONTENT_HASH: S.content_hash(d, str(k), tag), S.N_TOKENS: 5,
                        S.EMBEDDED_AT: None})
    return pa.Table.from_pylist(out, schema=S.table_schema(DIM, "m"))


def make_table(db, name: str, doc_chunks: dict[str, int]) -> str:
    uri = str(db / f"{name}.lance")
    lance.write_dataset(rows(doc_chunks), uri, schema=S.table_schema(DIM, "m"), max_rows_per_file=3)
    return uri


def stage(uri: str, t: pa.Table) -> Staged:
    frags = write_fragments(t, uri, schema=S.table_schema(DIM, "m"))
    return Staged(fragments=frags, rows=t.num_rows)


def test_sync_commit_is_one_version_with_adds_and_removals(tmp_path):
    uri = make_table(tmp_path, "t", {"a": 2, "b": 3, "c": 1, "d": 2})
    v0 = lance.dataset(uri).version
    # b changed (3 chunks -> 1), d deleted, e new
    staged = stage(uri, rows({"b": 1, "e": 2}, tag="v2", seed=1))
    out = commit_sync(uri, S.table_schema(DIM, "m"), v0, staged, ["b", "d"])
    ds = lance.dataset(uri)
    assert out.committed and out.version_after == ds.version == v0 + 1
    assert (out.rows_before, out.rows_removed, out.rows_added, out.rows_after) == (8, 5, 3, 6)
    got = ds.to_table(columns=[S.CHUNK_ID, S.TEXT]).to_pydict()
    assert sorted(got[S.CHUNK_ID]) == ["a#0", "a#1", "b#0", "c#0", "e#0", "e#1"]
    assert dict(zip(got[S.CHUNK_ID], got[S.TEXT]))["b#0"] == "b chunk 0 v2"
    assert lance.dataset(uri, version=v0).count_rows() == 8  # the old version is untouched
    # nothing to do: no commit, no version
    again = commit_sync(uri, S.table_schema(DIM, "m"), ds.version, Staged(), [])
    assert not again.committed and lance.dataset(uri).version == ds.version


def test_sync_commit_refuses_when_the_lease_check_fails(tmp_path):
    uri = make_table(tmp_path, "t", {"a": 1})
    v0 = lance.dataset(uri).version

    def lost():
        raise RuntimeError("lease lost")

    with pytest.raises(RuntimeError, match="lease lost"):
        commit_sync(uri, S.table_schema(DIM, "m"), v0, stage(uri, rows({"z": 1})), ["a"], before_commit=lost)
    assert lance.dataset(uri).version == v0 and lance.dataset(uri).count_rows() == 1


def test_switch_rollback_and_pinned_reads(tmp_path):
    db = tmp_path / "db"
    db.mkdir()
    uri_a = make_table(db, "notes__a", {"x": 1, "y": 1})
    va = lance.dataset(uri_a).version
    before, after = serving.switch(str(db), "notes", serving.ServedVersion("notes__a", va, "m", DIM, 2))
    assert before is None and after.current.key == ("notes__a", va) and after.history == []
    # the table moves on (a commit readers of the name must not see yet)
    lance.write_dataset(rows({"z": 1}, seed=3), uri_a, mode="append", schema=S.table_schema(DIM, "m"))
    r = Retriever.open(str(db), "notes")
    assert r.tbl.count_rows() == 2 and r.name == "notes__a"
    assert sorted(r.rows()[S.CHUNK_ID]) == ["x#0", "y#0"]
    # a new table, switched in one step
    uri_b = make_table(db, "notes__b", {"x": 1, "y": 1, "z": 1})
    vb = lance.dataset(uri_b).version
    before, after = serving.switch(str(db), "notes", serving.ServedVersion("notes__b", vb, "m", DIM, 3))
    assert before.current.key == ("notes__a", va)
    assert after.current.key == ("notes__b", vb) and [h.key for h in after.history] == [("notes__a", va)]
    assert Retriever.open(str(db), "notes").tbl.count_rows() == 3
    assert Retriever.open(str(db)).name == "notes__b"  # the only serving name is the default
    # rollback: back to a@va in one step, and no further
    before, after = serving.rollback(str(db), "notes")
    assert after.current.key == ("notes__a", va) and after.history == [] and after.last_action.startswith("rollback")
    r = Retriever.open(str(db), "notes")
    assert r.name == "notes__a" and r.tbl.count_rows() == 2
    with pytest.raises(LookupError, match="no previous"):
        serving.rollback(str(db), "notes")
    with pytest.raises(LookupError, match="no serving name"):
        serving.rollback(str(db), "other")
    assert serving.list_serving_names(str(db)) == ["notes"]


def test_switch_keeps_a_bounded_history(tmp_path):
    db = str(tmp_path)
    for v in range(1, 6):
        serving.switch(db, "n", serving.ServedVersion("t", v), keep_history=2)
    p = serving.read_pointer(db, "n")
    assert p.current.version == 5 and [h.version for h in p.history] == [3, 4]
    assert p.referenced() == {("t", 3), ("t", 4), ("t", 5)}
    # switching to the version already served adds no history entry
    serving.switch(db, "n", serving.ServedVersion("t", 5), keep_history=2)
    assert [h.version for h in serving.read_pointer(db, "n").history] == [3, 4]


def test_corrupt_pointer_is_a_clear_error(tmp_path):
    path = tmp_path / "_medembed" / "serving"
    path.mkdir(parents=True)
    (path / "n.json").write_text("{not json")
    with pytest.raises(ValueError, match="n.json"):
        serving.read_pointer(str(tmp_path), "n")


def test_cleanup_keeps_served_and_remembered_versions_and_drops_the_rest(tmp_path):
    from datetime import timedelta

    db = tmp_path / "db"
    db.mkdir()
    uri = make_table(db, "notes__a", {"x": 1})
    for i in range(3):  # versions 2..4
        lance.write_dataset(rows({f"y{i}": 1}, seed=i), uri, mode="append", schema=S.table_schema(DIM, "m"))
    make_table(db, "notes__old", {"x": 1})  # a table nothing serves any more
    make_table(db, "other__a", {"x": 1})  # another serving name's table: not ours to touch
    ds = lance.dataset(uri)
    for v in (1, 2, 4):
        ds.tags.create(serving.serving_tag(v), v)
    serving.switch(str(db), "notes", serving.ServedVersion("notes__a", 2), keep_history=1)
    _, ptr = serving.switch(str(db), "notes", serving.ServedVersion("notes__a", 4), keep_history=1)
    assert ptr.referenced() == {("notes__a", 2), ("notes__a", 4)}
    out = serving.cleanup(str(db), ptr, timedelta(0))
    assert out["tags_deleted"] == [f"notes__a:{serving.serving_tag(1)}"] and out["tables_dropped"] == ["notes__old"]
    ds = lance.dataset(uri)
    assert [v["version"] for v in ds.versions()] == [2, 4]  # v1 and v3: untagged and past the retention
    assert lance.dataset(uri, version=2).count_rows() == 2
    assert (db / "other__a.lance").exists() and not (db / "notes__old.lance").exists()
    # a long retention removes nothing
    assert serving.cleanup(str(db), ptr, timedelta(days=7)) == {"tags_deleted": [], "versions_removed": 0,
                                                                 "tables_dropped": []}
