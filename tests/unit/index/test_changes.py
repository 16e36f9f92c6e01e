"""Chunking after change detection: documents the diff did not select never reach the tokenizer, and the counts
a re-run task reports replace its earlier ones."""

from __future__ import annotations

import pyarrow as pa

from medembed import schema as S
from medembed.embedding import chunking
from medembed.embedding.chunking import ChunkParams
from medembed.index.changes import chunk_selected_documents
from medembed.runtime.counters import block_key


class FakeCounters:
    """Records ``put`` calls as the Counters actor does (``.put.remote(key, counts)``), summing over keys."""

    def __init__(self) -> None:
        self.keyed: dict[str, dict[str, int]] = {}
        self.put = self

    def remote(self, key: str, counts: dict[str, int]) -> None:
        self.keyed[key] = dict(counts)

    def totals(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for c in self.keyed.values():
            for k, v in c.items():
                out[k] = out.get(k, 0) + v
        return out


def docs(ids: list[str], words: int = 80) -> pa.Table:
    n = len(ids)
    return pa.table({S.DOC_ID: ids, S.TITLE: [f"Case {d}" for d in ids],
                     S.TEXT: [" ".join(f"{d} finding{k} creatinine" for k in range(words)) for d in ids],
                     S.METADATA: ["{}"] * n, S.SOURCE: [f"f.jsonl:line {i}" for i in range(n)]})


def test_unselected_documents_are_not_tokenized(bundled_model_path):
    params = ChunkParams(bundled_model_path, 32, 4, 0, "m@r")
    batch = docs([f"d{i}" for i in range(10)])
    before = dict(chunking.TOKENIZED)
    c = FakeCounters()
    out = chunk_selected_documents(batch, params, [pa.array(["d3"]), pa.array(["d7", "gone"])], c)
    assert chunking.TOKENIZED["documents"] - before["documents"] == 2  # d3 and d7 only
    assert sorted(set(out[S.DOC_ID].to_pylist())) == ["d3", "d7"]
    n3 = out[S.DOC_ID].to_pylist().count("d3")
    assert n3 > 1 and out.filter(pa.compute.equal(out[S.DOC_ID], "d3"))[S.DOC_CHUNKS].to_pylist() == [n3] * n3
    assert set(out[S.DOC_HASH].to_pylist()) == {S.doc_hash(d, f"Case {d}", batch[S.TEXT][int(d[1])].as_py(), "{}",
                                                           params.key) for d in ("d3", "d7")}
    assert c.totals() == {"documents_read_for_chunking": 10, "documents_tokenized": 2, "chunks_tokenized": out.num_rows}

    # nothing selected: no tokenizer call at all, an empty block of chunk columns
    calls = chunking.TOKENIZED["calls"]
    empty = chunk_selected_documents(batch, params, [pa.array([], pa.string())], c)
    assert empty.num_rows == 0 and list(empty.column_names) == list(S.CHUNK_COLUMNS)
    assert chunking.TOKENIZED["calls"] == calls

    # no selection (a first run): every document
    all_docs = chunk_selected_documents(batch, params, None, None)
    assert len(set(all_docs[S.DOC_ID].to_pylist())) == 10


def test_a_rerun_batch_replaces_its_counts_instead_of_adding(bundled_model_path):
    params = ChunkParams(bundled_model_path, 32, 4, 0, "m@r")
    c = FakeCounters()
    batch1, batch2 = docs(["a", "b"], 2), docs(["c"], 2)
    for batch in (batch1, batch2, batch1, batch1):  # batch1 re-run twice (lost node, restarted actor)
        chunk_selected_documents(batch, params, None, c)
    assert c.totals() == {"documents_read_for_chunking": 3, "documents_tokenized": 3, "chunks_tokenized": 3}
    assert len(c.keyed) == 2


def test_block_key_is_order_free_and_distinct():
    assert block_key(["a", "b"]) == block_key(["b", "a"])
    assert block_key(["a", "b"]) != block_key(["a", "b", "c"]) != block_key(["ab"])
