"""A failing write names the table location and the last version that stays readable; a replaced document's new
chunks survive when they span several commits."""

from __future__ import annotations

import pyarrow as pa
import pytest

from medembed import schema as S
from medembed.index.writer import Committer, FragmentWriter, WriteError
from medembed.runtime.storage import DEFAULT_STORAGE


def test_a_failed_commit_names_the_location_and_last_version(tmp_path):
    import lance

    schema = S.table_schema(4, "m", "r")
    uri = str(tmp_path / "t.lance")
    row = {S.CHUNK_ID: "d#0", S.DOC_ID: "d", S.CHUNK_INDEX: 0, S.TITLE: "", S.TEXT: "t", S.METADATA: "{}",
           S.CONTENT_HASH: "h", S.N_TOKENS: 1, S.VECTOR: [0.5] * 4}
    lance.write_dataset(pa.Table.from_pylist([{k: row.get(k) for k in schema.names}], schema=schema), uri,
                        schema=schema)  # version 1, readable
    c = Committer(uri, schema, DEFAULT_STORAGE, {}, every=100)
    c.pending = ["not fragment metadata"]  # what a corrupted hand-off or a storage failure makes commit raise on
    with pytest.raises(WriteError, match=rf"cannot commit to {uri}: .*readable at version 1"):
        c.flush()
    assert lance.dataset(uri).version == 1


def test_a_failed_data_file_write_names_the_location(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    uri = str(blocker / "t.lance")  # a path under a regular file: the write must fail
    schema = pa.schema([pa.field("a", pa.int64())])
    with pytest.raises(WriteError, match=rf"cannot write data files to {uri}"):
        FragmentWriter(uri, schema)(pa.table({"a": [1, 2]}))


def test_a_replaced_document_spanning_commits_keeps_all_its_new_chunks(tmp_path):
    """A killed run left 2 of a document's chunks; the resumed run writes its 4 chunks in two commits: the old ones
    are deleted once, at the first, and the second commit does not delete what the first wrote."""
    import lance

    schema = S.table_schema(4, "m", "r")
    uri = str(tmp_path / "t.lance")

    def rows(ids: list[str]) -> pa.Table:
        return pa.Table.from_pylist([{S.CHUNK_ID: i, S.DOC_ID: i.split("#")[0], S.CHUNK_INDEX: int(i.split("#")[1]),
                                      S.TITLE: "", S.TEXT: i, S.METADATA: "{}", S.CONTENT_HASH: i, S.N_TOKENS: 1,
                                      S.VECTOR: [0.5] * 4} for i in ids], schema=schema)

    lance.write_dataset(rows(["d#0", "d#1", "e#0"]), uri, schema=schema)  # d partial, e complete
    c = Committer(uri, schema, DEFAULT_STORAGE, {"d": "partial-signature"}, every=1)
    for part in (["d#0", "d#1"], ["d#2", "d#3"]):
        frag = FragmentWriter(uri, schema)(rows(part))
        c.add(frag["fragment"][0].as_py(), 2, ["d"], 2)
    assert sorted(lance.dataset(uri).to_table(columns=[S.CHUNK_ID]).column(0).to_pylist()) == \
        ["d#0", "d#1", "d#2", "d#3", "e#0"]
    assert c.stats.documents_replaced == 1 and c.stats.commits == 2


def test_fragments_written_elsewhere_commit_like_the_streaming_path(tmp_path):
    """``commit_fragments``: a model actor writes the data files, the driver commits them; rows land once."""
    import lance

    from medembed.index.writer import commit_fragments

    schema = S.table_schema(4, "m", "r")
    uri = str(tmp_path / "t.lance")
    ids = [f"d{k}#0" for k in range(10)]
    table = pa.Table.from_pylist([{S.CHUNK_ID: i, S.DOC_ID: i.split("#")[0], S.CHUNK_INDEX: 0, S.TITLE: "", S.TEXT: i,
                                   S.METADATA: "{}", S.CONTENT_HASH: i, S.N_TOKENS: 3, S.VECTOR: [0.5] * 4}
                                  for i in ids], schema=schema)
    frags = pa.concat_tables([FragmentWriter(uri, schema)(table.slice(k, 4)) for k in range(0, 10, 4)])
    with pytest.raises(ValueError):  # data files alone are no table: nothing is visible before the commit
        lance.dataset(uri)
    result = commit_fragments(frags, uri, schema, commit_every=2)
    assert (result.stats.rows, result.stats.tokens, result.stats.fragments, result.stats.commits) == (10, 30, 3, 2)
    assert sorted(lance.dataset(uri).to_table(columns=[S.CHUNK_ID]).column(0).to_pylist()) == sorted(ids)
