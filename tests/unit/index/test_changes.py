"""Change detection drops unchanged documents and reports counts that a re-run task cannot double."""

from __future__ import annotations

import pyarrow as pa

from medembed import schema as S
from medembed.index.changes import filter_unchanged_docs
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


def chunks(docs: dict[str, list[str]]) -> pa.Table:
    rows = [(d, i, h) for d, hs in docs.items() for i, h in enumerate(hs)]
    return pa.table({S.DOC_ID: [r[0] for r in rows], S.CHUNK_INDEX: [r[1] for r in rows],
                     S.CONTENT_HASH: [r[2] for r in rows]})


def test_unchanged_documents_are_dropped_and_counted():
    known = {"a": S.doc_signature(["h1", "h2"]), "b": S.doc_signature(["old"])}
    c = FakeCounters()
    kept = filter_unchanged_docs(chunks({"a": ["h1", "h2"], "b": ["new"], "c": ["x", "y", "z"]}), known, c)
    assert kept.column(S.DOC_ID).to_pylist() == ["b", "c", "c", "c"]
    assert c.totals() == {"chunks_total": 6, "chunks_unchanged": 2, "documents_unchanged": 1}


def test_a_rerun_batch_replaces_its_counts_instead_of_adding():
    c = FakeCounters()
    batch1, batch2 = chunks({"a": ["1", "2"], "b": ["3"]}), chunks({"c": ["4"]})
    for batch in (batch1, batch2, batch1, batch1):  # batch1 re-run twice (lost node, restarted actor)
        filter_unchanged_docs(batch, {}, c)
    assert c.totals() == {"chunks_total": 4, "chunks_unchanged": 0, "documents_unchanged": 0}
    assert len(c.keyed) == 2


def test_block_key_is_order_free_and_distinct():
    assert block_key(["a", "b"]) == block_key(["b", "a"])
    assert block_key(["a", "b"]) != block_key(["a", "b", "c"]) != block_key(["ab"])
