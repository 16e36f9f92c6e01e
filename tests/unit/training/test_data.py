"""Reading triplets (complete runs only, clear errors), cleaning, splitting by note, negatives cut."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from medembed.mining import columns as M
from medembed.training import data
from tests.support.triplets import sample_triplets_table, write_triplets_run


def test_reads_complete_mine_negatives_run_with_its_run_id(tmp_path):
    table = sample_triplets_table(n_notes=8)
    path = write_triplets_run(tmp_path, table, run_id="mine_negatives-x")
    trip = data.read_triplets(str(path))
    assert trip.run_id == "mine_negatives-x"
    assert trip.table.num_rows == table.num_rows == 16
    assert trip.table.column_names == list(data.TRAIN_COLUMNS)
    assert trip.table[M.QUERY_ID].to_pylist() == sorted(table[M.QUERY_ID].to_pylist())


def test_incomplete_run_and_missing_columns_are_named(tmp_path):
    path = write_triplets_run(tmp_path, sample_triplets_table(n_notes=2))
    (path / "_SUCCESS.json").unlink()
    with pytest.raises(data.TripletsError, match="_SUCCESS.json"):
        data.read_triplets(str(path))
    bad = tmp_path / "flat.parquet"
    pq.write_table(pa.table({"query": ["q"], "positive": ["p"], "negative": ["n"]}), bad)
    with pytest.raises(data.TripletsError, match=r"lack columns \['negatives', 'query_note_id'\]"):
        data.read_triplets(str(bad))
    with pytest.raises(data.TripletsError, match="not found"):
        data.read_triplets(str(tmp_path / "nope"))


def test_clean_drops_bad_rows_by_reason_and_fills_ids():
    t = pa.table({M.QUERY: ["a", "", "c", "d", "a"], M.POSITIVE: ["pa", "pb", None, "pd", "pa"],
                  M.NEGATIVES: [["x", ""], None, ["z"], None, ["x"]], M.QUERY_NOTE_ID: ["n1", "n2", "n3", None, "n1"]})
    out, dropped = data.clean(t)
    assert dropped == {"empty_query": 1, "empty_positive": 1, "missing_note_id": 1, "duplicate_query_id": 1}
    assert out[M.QUERY].to_pylist() == ["a"]
    assert out[M.NEGATIVES].to_pylist() == [["x"]]  # empty negative text removed
    assert out[M.POSITIVE_ID].to_pylist() == [M.positive_id("pa")]
    assert out[M.QUERY_ID].to_pylist()[0].startswith("q:")


def test_split_by_note_keeps_each_note_on_one_side_and_is_stable():
    notes = [f"note-{i // 3}" for i in range(300)]
    t = pa.table({M.QUERY_NOTE_ID: notes, M.QUERY: [str(i) for i in range(300)]})
    train, dev = data.split_by_note(t, 0.2)
    assert train.num_rows + dev.num_rows == 300
    train_notes, dev_notes = set(train[M.QUERY_NOTE_ID].to_pylist()), set(dev[M.QUERY_NOTE_ID].to_pylist())
    assert not train_notes & dev_notes
    assert 10 <= len(dev_notes) <= 30  # ~20 of 100 notes
    assert dev_notes == {n for n in set(notes) if data.note_bucket(n) < 0.2}
    train2, dev2 = data.split_by_note(t.slice(150), 0.2)  # the split of a note does not depend on the others
    assert set(dev2[M.QUERY_NOTE_ID].to_pylist()) == {n for n in dev_notes if int(n.split("-")[1]) >= 50}
    assert data.split_by_note(t, 0.0)[1].num_rows == 0


def test_with_negatives_cuts_to_the_hardest_and_counts_short_rows():
    t = pa.table({M.QUERY: ["a", "b", "c"], M.NEGATIVES: [["n1", "n2", "n3"], ["m1"], ["k1", "k2"]]})
    kept, short = data.with_negatives(t, 2)
    assert short == 1
    assert kept[M.QUERY].to_pylist() == ["a", "c"]
    assert kept[M.NEGATIVES].to_pylist() == [["n1", "n2"], ["k1", "k2"]]
    none, short0 = data.with_negatives(t, 0)
    assert short0 == 0 and none[M.NEGATIVES].to_pylist() == [[], [], []]


def test_teacher_scores_travel_with_their_negatives_and_missing_ones_are_named():
    t = pa.table({M.QUERY: ["a", "b"], M.POSITIVE: ["pa", "pb"], M.NEGATIVES: [["x", "", "y"], ["z", "w"]],
                  M.QUERY_NOTE_ID: ["n1", "n2"], M.QUERY_ID: ["qa", "qb"], M.POSITIVE_SCORE: [5.0, None],
                  M.NEGATIVE_SCORES: [[3.0, 2.5, 2.0], [1.0, 0.5]]})
    out, _ = data.clean(t)
    assert out[M.NEGATIVES].to_pylist() == [["x", "y"], ["z", "w"]]
    assert out[M.NEGATIVE_SCORES].to_pylist() == [[3.0, 2.0], [1.0, 0.5]]  # the empty negative's score went too
    kept, short = data.with_negatives(out, 1)
    assert short == 0 and kept[M.NEGATIVE_SCORES].to_pylist() == [[3.0], [1.0]]
    first = kept.slice(0, 1)
    assert data.teacher_scores(first, 1) == ([5.0], [[3.0]])
    with pytest.raises(data.TripletsError, match="1 of 2 triplets lack them \\(first: qb\\)"):
        data.teacher_scores(kept, 1)
