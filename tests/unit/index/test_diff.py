"""The pure parts of change detection: document signatures, partitioning and classification."""

from __future__ import annotations

import pyarrow as pa

from medembed import schema as S
from medembed.index.diff import (
    DOC_SIGNATURE,
    add_doc_signatures,
    classify,
    document_rows,
    partition_of,
    signatures_of_chunks,
    split_by_partition,
)


def chunk_rows(docs: dict[str, list[str]]) -> pa.Table:
    rows = [(d, k, h) for d, hs in docs.items() for k, h in enumerate(hs)]
    return pa.table({S.DOC_ID: [r[0] for r in rows], S.CHUNK_INDEX: pa.array([r[1] for r in rows], pa.int32()),
                     S.CONTENT_HASH: [r[2] for r in rows]})


def test_signature_is_order_of_chunks_not_of_rows():
    t = chunk_rows({"a": ["h1", "h2", "h3"], "b": ["x"]})
    shuffled = t.take(pa.array([3, 2, 0, 1]))  # rows of a table come in any order (compaction, appends)
    sigs = dict(zip(*signatures_of_chunks(shuffled).to_pydict().values()))
    assert sigs == {"a": S.doc_signature(["h1", "h2", "h3"]), "b": S.doc_signature(["x"])}
    assert S.doc_signature(["h2", "h1", "h3"]) != sigs["a"]
    assert signatures_of_chunks(chunk_rows({})).num_rows == 0


def test_document_rows_carry_the_signature_of_the_whole_document():
    chunks = add_doc_signatures(chunk_rows({"a": ["h1", "h2"], "b": ["x"]}))
    assert chunks[DOC_SIGNATURE].to_pylist() == [S.doc_signature(["h1", "h2"])] * 2 + [S.doc_signature(["x"])]
    docs = document_rows(chunks).to_pydict()
    assert docs[S.DOC_ID] == ["a", "b"] and docs["n_chunks"] == [2, 1]


def test_partitions_are_stable_and_complete():
    ids = [f"doc{i}" for i in range(1000)]
    p = partition_of(ids, 8)
    assert list(p) == list(partition_of(ids, 8)) and set(p) == set(range(8))
    t = chunk_rows({d: ["h"] for d in ids})
    parts = split_by_partition(t, 8)
    assert sum(x.num_rows for x in parts) == 1000
    for k, part in enumerate(parts):
        assert set(partition_of(part[S.DOC_ID].to_pylist(), 8)) <= {k}


def test_classify_new_changed_unchanged_deleted():
    corpus = pa.table({S.DOC_ID: ["a", "b", "c"], DOC_SIGNATURE: ["s1", "s2-new", "s3"]})
    stored = pa.table({S.DOC_ID: ["a", "b", "d"], DOC_SIGNATURE: ["s1", "s2", "s4"]})
    assert classify(corpus, stored) == {"new": ["c"], "changed": ["b"], "unchanged": ["a"], "deleted": ["d"]}
