"""The pure parts of change detection: document hashes, the stored side's consistency, partitions, classes."""

from __future__ import annotations

import pyarrow as pa

from medembed import schema as S
from medembed.embedding.chunking import ChunkParams, add_doc_hashes
from medembed.index.diff import (
    CORPUS_SCHEMA,
    STORED_HASH,
    classify,
    hash_documents,
    partition_of,
    select_to_embed,
    split_by_partition,
    stored_hashes,
)

P = ChunkParams("/nowhere", 32, 4, 0, "m@r")  # hashing never loads the tokenizer


def docs(rows: list[tuple[str, str, str, str]], source: str = "f.jsonl") -> pa.Table:
    return pa.table({S.DOC_ID: [r[0] for r in rows], S.TITLE: [r[1] for r in rows], S.TEXT: [r[2] for r in rows],
                     S.METADATA: [r[3] for r in rows], S.SOURCE: [f"{source}:line {i + 1}" for i in range(len(rows))]})


def stored(rows: list[tuple[str, int, str | None, int | None]]) -> pa.Table:
    return pa.table({S.DOC_ID: [r[0] for r in rows], S.CHUNK_INDEX: pa.array([r[1] for r in rows], pa.int32()),
                     S.DOC_HASH: pa.array([r[2] for r in rows], pa.string()),
                     S.DOC_CHUNKS: pa.array([r[3] for r in rows], pa.int32())})


def test_doc_hash_covers_content_and_parameters_not_location():
    base = ("a", "Title", "Some text.", "{}")
    h = hash_documents(docs([base]), P)[S.DOC_HASH][0].as_py()
    assert h == hash_documents(docs([base], source="elsewhere.jsonl"), P)[S.DOC_HASH][0].as_py()  # moved: same
    variants = [("b", *base[1:]), ("a", "Other", *base[2:]), ("a", "Title", "Some text!", "{}"),
                ("a", "Title", "Some text.", '{"year": 2}'), ("a", "", "Title\nSome text.", "{}")]
    others = hash_documents(docs(variants), P)[S.DOC_HASH].to_pylist()
    assert h not in others and len(set(others)) == len(others)
    for p in (ChunkParams("/nowhere", 64, 4, 0, "m@r"), ChunkParams("/nowhere", 32, 8, 0, "m@r"),
              ChunkParams("/nowhere", 32, 4, 3, "m@r"), ChunkParams("/nowhere", 32, 4, 0, "m@r2")):
        assert hash_documents(docs([base]), p)[S.DOC_HASH][0].as_py() != h, p
    # the tokenizer's path is not part of it (a cache folder may move), the model id is
    assert hash_documents(docs([base]), ChunkParams("/elsewhere", 32, 4, 0, "m@r"))[S.DOC_HASH][0].as_py() == h
    out = hash_documents(docs([base]), P)
    assert out.schema == CORPUS_SCHEMA and out[S.SOURCE].to_pylist() == ["f.jsonl:line 1"]
    assert add_doc_hashes(docs([base]), P).column_names[-1] == S.DOC_HASH


def test_stored_hash_only_for_complete_consistent_documents():
    t = stored([("ok", 1, "h", 2), ("ok", 0, "h", 2),  # any row order
                ("partial", 0, "h", 3), ("partial", 1, "h", 3),  # an interrupted run wrote 2 of its 3 chunks
                ("stale", 0, "h1", 2), ("stale", 1, "h2", 2),  # an old chunk left behind
                ("dup", 0, "h", 2), ("dup", 0, "h", 2),  # a chunk written twice
                ("gap", 0, "h", 2), ("gap", 2, "h", 2),
                ("legacy", 0, None, None),  # a table migrated from before doc_hash
                ("single", 0, "s", 1)])
    got = dict(zip(*stored_hashes(t).select([S.DOC_ID, STORED_HASH]).to_pydict().values()))
    assert got == {"ok": "h", "partial": None, "stale": None, "dup": None, "gap": None, "legacy": None, "single": "s"}
    assert dict(zip(*stored_hashes(t).select([S.DOC_ID, "n_chunks"]).to_pydict().values()))["partial"] == 2
    assert stored_hashes(stored([])).num_rows == 0


def test_classify_new_changed_unchanged_deleted():
    corpus = pa.table({S.DOC_ID: ["a", "b", "c", "e"], S.DOC_HASH: ["s1", "s2-new", "s3", "s5"]})
    table = stored_hashes(stored([("a", 0, "s1", 1), ("b", 0, "s2", 1), ("d", 0, "s4", 1),
                                  ("e", 0, "s5", 2)]))  # e: stored in part -> changed, though its hash matches
    assert classify(corpus, table) == {"new": ["c"], "changed": ["b", "e"], "unchanged": ["a"], "deleted": ["d"]}
    empty = stored_hashes(stored([]))
    assert classify(corpus, empty)["new"] == ["a", "b", "c", "e"]
    assert classify(corpus.slice(0, 0), table)["deleted"] == ["a", "b", "d", "e"]


def test_partitions_are_stable_and_complete():
    ids = [f"doc{i}" for i in range(1000)]
    p = partition_of(ids, 8)
    assert list(p) == list(partition_of(ids, 8)) and set(p) == set(range(8))
    t = pa.table({S.DOC_ID: ids, S.DOC_HASH: ["h"] * 1000})
    parts = split_by_partition(t, 8)
    assert sum(x.num_rows for x in parts) == 1000
    for k, part in enumerate(parts):
        assert set(partition_of(part[S.DOC_ID].to_pylist(), 8)) <= {k}


def test_select_to_embed_keeps_selected_documents_only():
    t = docs([("a", "", "x", "{}"), ("b", "", "y", "{}"), ("c", "", "z", "{}")])
    sets = [pa.array(["c"]), pa.array([], pa.string()), pa.array(["a", "zz"])]
    assert select_to_embed(t, sets)[S.DOC_ID].to_pylist() == ["a", "c"]


def test_join_partition_returns_counts_and_what_to_read_again():
    from medembed.index.diff import _join_partition

    corpus = pa.table({S.DOC_ID: ["a", "b", "n"], S.DOC_HASH: ["h", "x-new", "y"],
                       S.SOURCE: ["f:line 1", "f:line 2", "g:line 1"]})
    table = stored([("a", 0, "h", 2), ("a", 1, "h", 2), ("b", 0, "x", 1), ("gone", 0, "z", 3), ("gone", 1, "z", 3),
                    ("gone", 2, "z", 3)])
    half1, half2 = table.slice(0, 3), table.slice(3)  # two fragments' pieces
    summary, ids, sources = _join_partition._function(1, corpus, half1, half2)
    assert summary["counts"] == {"new": 1, "changed": 1, "unchanged": 1, "deleted": 1}
    assert (summary["chunks_unchanged"], summary["chunks_removed"]) == (2, 4)
    assert (summary["changed"], summary["deleted"]) == (["b"], ["gone"])
    assert sorted(ids.to_pylist()) == ["b", "n"] and sorted(sources.to_pylist()) == ["f:line 2", "g:line 1"]
    empty = _join_partition._function(0)
    assert empty[0]["counts"] == dict.fromkeys(("new", "unchanged", "changed", "deleted"), 0) and len(empty[1]) == 0
