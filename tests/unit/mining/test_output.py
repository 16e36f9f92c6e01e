"""Flat triplets and the guarded Hub upload (no Ray, no network)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from medembed.mining import columns as M
from medembed.mining.output import HubUploadError, flat_rows, push_to_hub


def _nested() -> pa.Table:
    return pa.Table.from_pylist([
        {M.QUERY: "q1", M.POSITIVE: "p1", M.NEGATIVES: ["a", "b"], M.QUERY_ID: "1", M.QUERY_NOTE_ID: "n1",
         M.POSITIVE_ID: "pos:1", M.NEGATIVE_IDS: ["ia", "ib"], M.NEGATIVE_NOTE_IDS: ["n2", "n3"],
         M.POSITIVE_SCORE: 0.9, M.NEGATIVE_SCORES: [0.5, 0.4], M.N_NEGATIVES: 2, M.SHORTFALL_REASON: None},
        {M.QUERY: "q2", M.POSITIVE: "p2", M.NEGATIVES: [], M.QUERY_ID: "2", M.QUERY_NOTE_ID: "n2",
         M.POSITIVE_ID: "pos:2", M.NEGATIVE_IDS: [], M.NEGATIVE_NOTE_IDS: [], M.POSITIVE_SCORE: 0.8,
         M.NEGATIVE_SCORES: [], M.N_NEGATIVES: 0, M.SHORTFALL_REASON: M.R_FALSE_NEGATIVE_FILTER},
        {M.QUERY: "q3", M.POSITIVE: "p3", M.NEGATIVES: ["c"], M.QUERY_ID: "3", M.QUERY_NOTE_ID: "n3",
         M.POSITIVE_ID: "pos:3", M.NEGATIVE_IDS: ["ic"], M.NEGATIVE_NOTE_IDS: ["n1"], M.POSITIVE_SCORE: 0.7,
         M.NEGATIVE_SCORES: [0.3], M.N_NEGATIVES: 1, M.SHORTFALL_REASON: M.R_SAME_NOTE},
    ], schema=M.NESTED_SCHEMA)


def test_flat_rows_one_row_per_negative():
    flat = flat_rows(_nested())
    assert flat.schema == M.FLAT_SCHEMA
    rows = [(r[M.QUERY], r[M.POSITIVE], r[M.NEGATIVE], r[M.NEGATIVE_ID], r[M.NEGATIVE_RANK]) for r in flat.to_pylist()]
    assert rows == [("q1", "p1", "a", "ia", 0), ("q1", "p1", "b", "ib", 1), ("q3", "p3", "c", "ic", 0)]
    assert flat[M.NEGATIVE_SCORE].to_pylist() == pytest.approx([0.5, 0.4, 0.3])


def test_push_to_hub_needs_a_token_from_the_environment(monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(HubUploadError, match="HF_TOKEN is not in the environment"):
        push_to_hub("/nowhere", "me/triplets")


def test_push_to_hub_refuses_offline_and_never_shows_the_token(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_SECRET123")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubUploadError, match="HF_HUB_OFFLINE") as e:
        push_to_hub("/nowhere", "me/triplets")
    assert "hf_SECRET123" not in str(e.value)
