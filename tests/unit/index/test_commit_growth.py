"""Commit groups grow with the table past ``COMMIT_GROWTH_FROM`` fragments (each commit's manifest lists every
fragment, so fixed groups cost O(fragments^2) over a run); below it they are ``commit_every`` fragments as before."""

from __future__ import annotations

import json

import pyarrow as pa
from lance.fragment import write_fragments

from medembed import schema as S
from medembed.index import writer as W
from medembed.runtime.storage import DEFAULT_STORAGE


def one_row_fragments(uri: str, schema: pa.Schema, n: int) -> list[str]:
    table = pa.Table.from_pylist([{S.CHUNK_ID: f"d{i}#0", S.DOC_ID: f"d{i}", S.CHUNK_INDEX: 0, S.TITLE: "",
                                   S.TEXT: f"d{i}", S.METADATA: "{}", S.CONTENT_HASH: f"d{i}", S.N_TOKENS: 1,
                                   S.VECTOR: [0.5] * 4} for i in range(n)], schema=schema)
    frags = write_fragments(table, uri, schema=schema, max_rows_per_file=1)  # n fragments of one row
    return [json.dumps(f.to_json()) for f in frags]


def commit_sizes(tmp_path, monkeypatch, n: int, every: int, growth: int, growth_from: int) -> list[int]:
    import lance

    monkeypatch.setattr(W, "COMMIT_GROWTH_FROM", growth_from)
    schema = S.table_schema(4, "m", "r")
    uri = str(tmp_path / f"t{every}-{growth}.lance")
    frags = one_row_fragments(uri, schema, n)
    c = W.Committer(uri, schema, DEFAULT_STORAGE, {}, every, growth=growth)
    sizes = []
    for f in frags:
        before = c.stats.fragments
        c.add(f, 1, [], 1)
        if c.stats.fragments != before:
            sizes.append(c.stats.fragments - before)
    c.flush()
    if sum(sizes) != n:
        sizes.append(n - sum(sizes))
    assert len(lance.dataset(uri).get_fragments()) == n and c.stats.commits == len(sizes)
    return sizes


def test_commit_groups_grow_geometrically_past_the_threshold(tmp_path, monkeypatch):
    # every 2 up to 4 committed fragments, then at least a half (growth 2) of what is committed
    assert commit_sizes(tmp_path, monkeypatch, 30, every=2, growth=2, growth_from=4) == [2, 2, 2, 3, 4, 6, 9, 2]


def test_fixed_groups_without_growth_and_below_the_threshold(tmp_path, monkeypatch):
    assert commit_sizes(tmp_path, monkeypatch, 10, every=3, growth=0, growth_from=1) == [3, 3, 3, 1]
    assert commit_sizes(tmp_path, monkeypatch, 10, every=3, growth=8, growth_from=1024) == [3, 3, 3, 1]
