"""Dev split by note (the trainer's rule) and reading pairs or nested triplets for evaluation."""

from __future__ import annotations

import hashlib

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from medembed.evaluation.splits import is_dev_note, note_fraction, read_pair_rows, split_by_note
from medembed.mining import columns as M
from tests.support.builders import sample_pairs_table


def test_note_fraction_is_the_sha256_rule():
    expected = int(hashlib.sha256(b"note-7").hexdigest()[:16], 16) / 2**64
    assert note_fraction("note-7") == expected and 0.0 <= expected < 1.0
    assert is_dev_note("note-7", expected + 1e-9) and not is_dev_note("note-7", expected)
    assert is_dev_note("anything", 1.0)


def test_split_keeps_each_note_on_one_side():
    pairs = sample_pairs_table(30)
    train, dev = split_by_note(pairs, 0.3)
    assert train.num_rows + dev.num_rows == pairs.num_rows and dev.num_rows > 0 and train.num_rows > 0
    assert not set(train["note_id"].to_pylist()) & set(dev["note_id"].to_pylist())
    assert all(note_fraction(n) < 0.3 for n in dev["note_id"].to_pylist())
    with pytest.raises(KeyError, match="no column 'nope'"):
        split_by_note(pairs, 0.3, note_column="nope")


def test_reads_pairs_and_nested_triplets(tmp_path):
    pairs = sample_pairs_table(5)
    pq.write_table(pairs, tmp_path / "pairs.parquet")
    got = read_pair_rows(str(tmp_path / "pairs.parquet"))
    assert got.column_names == ["pair_id", "note_id", "query", "passage"]
    assert sorted(got["pair_id"].to_pylist()) == got["pair_id"].to_pylist() == sorted(pairs["pair_id"].to_pylist())

    trip = pa.table({M.QUERY: ["q1", "q2"], M.POSITIVE: ["p1", "p2"], M.NEGATIVES: [["n"], []],
                     M.QUERY_ID: ["b", "a"], M.QUERY_NOTE_ID: ["n1", "n2"]})
    (tmp_path / "trip").mkdir()
    pq.write_table(trip, tmp_path / "trip" / "part-0.parquet")
    got = read_pair_rows(str(tmp_path / "trip"))
    assert got.to_pylist() == [{"pair_id": "a", "note_id": "n2", "query": "q2", "passage": "p2"},
                               {"pair_id": "b", "note_id": "n1", "query": "q1", "passage": "p1"}]
    pq.write_table(pa.table({"x": [1]}), tmp_path / "bad.parquet")
    with pytest.raises(KeyError, match="neither pairs nor nested triplets"):
        read_pair_rows(str(tmp_path / "bad.parquet"))
    with pytest.raises(FileNotFoundError):
        read_pair_rows(str(tmp_path / "missing"))
