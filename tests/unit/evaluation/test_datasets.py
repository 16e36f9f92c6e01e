"""BEIR-layout loading (local, fsspec memory://, the real sets in ../shared/data) and synthetic-pair dev sets."""

from __future__ import annotations

import json
import logging

import fsspec
import pandas as pd
import pyarrow as pa
import pytest

from medembed.evaluation.datasets import DatasetFormatError, dataset_from_pairs, load_beir, passage_id
from tests.support.beir import TINY_CORPUS, TINY_QUERIES, write_beir


def test_tiny_set_loads_one_split(tmp_path):
    ds = load_beir(str(write_beir(tmp_path / "tiny")))
    assert (ds.name, ds.split) == ("tiny", "test")
    assert ds.corpus.ids == ["d1", "d2", "d3", "d4"]
    assert ds.corpus.titles == ["Lamotrigine rash", "Gallstone pancreatitis", "", ""]
    assert ds.corpus.texts[3] == "Gout flare treated with colchicine."
    assert ds.queries.ids == ["q1", "q2"]  # q3 is judged only in train
    assert ds.queries.texts == ["blistering rash on lamotrigine", "pancreatitis gallstones"]
    assert ds.qrels == {"q1": {"d1": 2}, "q2": {"d2": 1, "d4": 0}}
    assert (ds.num_documents, ds.num_queries) == (4, 2)

    train = load_beir(str(tmp_path / "tiny"), "train", name="tiny-set")
    assert (train.name, train.queries.ids, train.qrels) == ("tiny-set", ["q3"], {"q3": {"d3": 1}})


def test_missing_split_names_the_splits_there(tmp_path):
    write_beir(tmp_path / "tiny")
    with pytest.raises(FileNotFoundError, match=r"tiny/qrels/dev.tsv not found .*\['test', 'train'\]"):
        load_beir(str(tmp_path / "tiny"), "dev")


def _lines(rows: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


@pytest.mark.parametrize(("file", "content", "message"), [
    ("qrels/test.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2 d2 1\n",
     r"^tiny/qrels/test.tsv line 3: expected 3 tab-separated fields, got 1$"),
    ("qrels/test.tsv", "query-id\tcorpus-id\tscore\nq1\td1\thigh\n",
     r"^tiny/qrels/test.tsv line 2: score 'high' is not an integer$"),
    ("qrels/test.tsv", "q1\td1\t1\nq1\td1\t2\n",  # no header is fine, a repeated pair is not
     r"^tiny/qrels/test.tsv line 2: duplicate judgment for query 'q1', document 'd1'$"),
    ("corpus.jsonl", _lines(TINY_CORPUS[:2]) + '{"_id": "d3", "text": "unterminated\n',
     r"^tiny/corpus.jsonl line 3: malformed JSON \(Unterminated string"),
    ("corpus.jsonl", _lines(TINY_CORPUS[:1]) + '{"title": "no id", "text": "x"}\n',
     r"^tiny/corpus.jsonl line 2: missing or invalid field '_id'$"),
    ("corpus.jsonl", _lines(TINY_CORPUS[:1]) + '\n{"_id": "d2", "title": "no text"}\n',
     r"^tiny/corpus.jsonl line 3: missing field 'text'$"),  # blank line 2 is skipped but counted
    ("corpus.jsonl", _lines(TINY_CORPUS[:1] * 2), r"^tiny/corpus.jsonl line 2: duplicate _id 'd1'$"),
    ("queries.jsonl", _lines(TINY_QUERIES[:1]) + '["q2", "a list"]\n',
     r"^tiny/queries.jsonl line 2: expected a JSON object, got list$"),
    ("queries.jsonl", '{"_id": "q1", "text": 42}\n', r"^tiny/queries.jsonl line 1: field 'text' is not a string"),
])
def test_malformed_files_name_file_and_line(tmp_path, file, content, message):
    root = write_beir(tmp_path / "tiny")
    (root / file).write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=message) as info:
        load_beir(str(root))
    assert isinstance(info.value, DatasetFormatError)


def test_undecodable_bytes_are_reported(tmp_path):
    root = write_beir(tmp_path / "tiny")
    (root / "queries.jsonl").write_bytes(b'{"_id": "q1", "text": "ok"}\n{"_id": "q2", "text": "\xff"}\n')
    with pytest.raises(DatasetFormatError, match=r"^tiny/queries.jsonl line 2: not valid UTF-8"):
        load_beir(str(root))


def test_qrels_to_unknown_docs_and_queries_are_dropped_with_a_count(tmp_path, caplog):
    root = write_beir(tmp_path / "tiny", qrels={"test": [("q1", "d1", 1), ("q1", "gone", 1), ("q2", "gone2", 1),
                                                         ("q9", "d2", 1)]})
    with caplog.at_level(logging.WARNING, logger="medembed.evaluation.datasets"):
        ds = load_beir(str(root))
    assert ds.qrels == {"q1": {"d1": 1}}  # q2 lost its only qrel, q9 has no query text
    assert ds.queries.ids == ["q1"]
    messages = [r.getMessage() for r in caplog.records]
    assert any("dropped 2 qrels whose corpus-id is not in corpus.jsonl" in m for m in messages), messages
    assert any("dropped the qrels of 1 queries that are not in queries.jsonl" in m for m in messages), messages


def test_fsspec_urls_and_storage_options(tmp_path):
    fs = fsspec.filesystem("memory")
    local = write_beir(tmp_path / "tiny")
    for p in local.rglob("*"):
        if p.is_file():
            fs.pipe(f"/bench/tiny/{p.relative_to(local).as_posix()}", p.read_bytes())
    try:
        ds = load_beir("memory://bench/tiny", storage_options={})
        assert (ds.name, ds.queries.ids, ds.corpus.ids) == ("tiny", ["q1", "q2"], ["d1", "d2", "d3", "d4"])
    finally:
        fs.rm("/bench", recursive=True)


# --- the real sets in ../shared/data ----------------------------------------------------------------

@pytest.mark.realdata
@pytest.mark.parametrize(("folder", "split", "docs", "queries", "qrels", "grades"), [
    ("scifact", "test", 5183, 300, 339, {1}),
    ("scifact", "train", 5183, 809, 919, {1}),
    ("med", "test", 1033, 30, 696, {1}),
    ("pubmedqa", "test", 1000, 500, 500, {1}),
    ("pmc_patients/ppr", "test", 1000, 284, 820, {2}),
])
def test_real_sets_match_their_readmes(shared_data, folder, split, docs, queries, qrels, grades):
    ds = load_beir(str(shared_data / folder), split)
    assert ds.num_documents == docs
    assert ds.num_queries == queries
    assert sum(len(j) for j in ds.qrels.values()) == qrels
    assert {g for j in ds.qrels.values() for g in j.values()} == grades
    assert set(ds.queries.ids) == set(ds.qrels)
    assert all(t.strip() for t in ds.queries.texts)
    assert all(t.strip() for t in ds.corpus.texts)


# --- dev split of synthetic pairs -------------------------------------------------------------------

PAIRS = {
    "pair_id": ["p1", "p2", "p3", "p4", "p5"],
    "note_id": ["n1", "n1", "n2", "n2", "n3"],
    "query": ["rash on lamotrigine", "SJS drug cause", "gallstone pancreatitis", "", "gout treatment"],
    "passage": ["Rash after lamotrigine.", "Rash after lamotrigine.", "Pancreatitis from gallstones.", "unused",
                "Colchicine for gout."],
}


@pytest.mark.parametrize("as_table", [pa.table, pd.DataFrame], ids=["arrow", "pandas"])
def test_pairs_become_a_retrieval_set(as_table, caplog):
    with caplog.at_level(logging.WARNING, logger="medembed.evaluation.datasets"):
        ds = dataset_from_pairs(as_table(PAIRS))
    assert (ds.name, ds.split) == ("synthetic-pairs", "dev")
    rash, panc, gout = (passage_id(t) for t in ("Rash after lamotrigine.", "Pancreatitis from gallstones.",
                                                "Colchicine for gout."))
    assert ds.corpus.ids == [rash, panc, gout]  # unique passages, first-seen order
    assert ds.corpus.texts == ["Rash after lamotrigine.", "Pancreatitis from gallstones.", "Colchicine for gout."]
    assert ds.queries.ids == ["p1", "p2", "p3", "p5"]  # p4 has an empty query
    assert ds.qrels == {"p1": {rash: 1}, "p2": {rash: 1}, "p3": {panc: 1}, "p5": {gout: 1}}
    assert any("skipped 1 pairs" in r.getMessage() for r in caplog.records)


def test_passage_id_is_stable():
    # "p" + the first 16 hex digits of sha256("Colchicine for gout."): stored runs rely on it never changing
    assert passage_id("Colchicine for gout.") == "p691cdc07c16d96d2"
    assert passage_id("a") != passage_id("a ")


def test_bad_pair_tables():
    with pytest.raises(DatasetFormatError, match="row 1: duplicate pair_id 'p1'"):
        dataset_from_pairs(pa.table({k: v[:2] for k, v in PAIRS.items()} | {"pair_id": ["p1", "p1"]}))
    with pytest.raises(ValueError, match=r"lacks columns \['passage'\]"):
        dataset_from_pairs(pa.table({k: v for k, v in PAIRS.items() if k != "passage"}))
    with pytest.raises(TypeError, match=r"pyarrow\.Table or pandas\.DataFrame"):
        dataset_from_pairs([{"pair_id": "p1"}])
