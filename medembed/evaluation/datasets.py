"""Retrieval datasets: BEIR-layout folders (local or ``s3://``) and dev splits of synthetic pairs.

A BEIR folder holds ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl`` (``_id``,
``text``) and ``qrels/<split>.tsv`` (header ``query-id<TAB>corpus-id<TAB>score``). Malformed input
fails with the file and line (``scifact/qrels/test.tsv line 17: expected 3 tab-separated fields``);
qrels that point at unknown documents or queries are dropped with a warning that counts them.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import fsspec

log = logging.getLogger(__name__)

QRELS_HEADER = ("query-id", "corpus-id", "score")


class DatasetFormatError(ValueError):
    """Malformed dataset input; the message names the file (or table) and the line (or row)."""


@dataclass
class Corpus:
    """Documents as parallel lists."""

    ids: list[str] = field(default_factory=list)
    titles: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class Queries:
    """Queries as parallel lists."""

    ids: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class RetrievalDataset:
    """One split of a retrieval set: the whole corpus, the queries judged in the split, their qrels.

    ``qrels[qid][docid]`` is an integer grade (> 0 relevant). Every query has qrels and every qrel
    points at a query and a document of the dataset.
    """

    name: str
    split: str
    corpus: Corpus
    queries: Queries
    qrels: dict[str, dict[str, int]]

    @property
    def num_documents(self) -> int:
        return len(self.corpus)

    @property
    def num_queries(self) -> int:
        return len(self.queries)


# --- BEIR folders ----------------------------------------------------------------------------------

def load_beir(uri: str, split: str = "test", *, name: str | None = None,
              storage_options: Mapping[str, Any] | None = None) -> RetrievalDataset:
    """Load one split of the BEIR-layout folder at ``uri`` (a local path or ``s3://bucket/prefix``).

    ``name`` defaults to the folder's last component; ``storage_options`` go to
    ``fsspec.core.url_to_fs`` (e.g. ``{"client_kwargs": {"endpoint_url": ...}}`` for S3).
    """
    fs, root = fsspec.core.url_to_fs(uri, **dict(storage_options or {}))
    root = root.rstrip("/")
    name = name or root.rsplit("/", 1)[-1]
    qrels_path = f"{root}/qrels/{split}.tsv"
    if not fs.exists(qrels_path):
        found = sorted(p.rsplit("/", 1)[-1].removesuffix(".tsv") for p in fs.glob(f"{root}/qrels/*.tsv"))
        raise FileNotFoundError(f"{name}/qrels/{split}.tsv not found under {uri} (splits there: {found or 'none'})")

    qrels = read_qrels(fs, qrels_path, label=f"{name}/qrels/{split}.tsv")
    corpus = _read_corpus(fs, f"{root}/corpus.jsonl", f"{name}/corpus.jsonl")
    all_queries = _read_queries(fs, f"{root}/queries.jsonl", f"{name}/queries.jsonl")

    doc_ids = set(corpus.ids)
    unknown_docs = sum(d not in doc_ids for judged in qrels.values() for d in judged)
    if unknown_docs:
        log.warning("%s/%s: dropped %d qrels whose corpus-id is not in corpus.jsonl", name, split, unknown_docs)
        qrels = {q: {d: g for d, g in judged.items() if d in doc_ids} for q, judged in qrels.items()}
        qrels = {q: judged for q, judged in qrels.items() if judged}
    unknown_queries = [q for q in qrels if q not in all_queries]
    if unknown_queries:
        log.warning("%s/%s: dropped the qrels of %d queries that are not in queries.jsonl",
                    name, split, len(unknown_queries))
        for q in unknown_queries:
            del qrels[q]

    queries = Queries()
    for qid, text in all_queries.items():
        if qid in qrels:
            queries.ids.append(qid)
            queries.texts.append(text)
    log.info("loaded %s/%s: %d documents, %d queries, %d qrels", name, split, len(corpus), len(queries),
             sum(len(j) for j in qrels.values()))
    return RetrievalDataset(name=name, split=split, corpus=corpus, queries=queries, qrels=qrels)


def read_qrels(fs: fsspec.AbstractFileSystem, path: str, label: str | None = None) -> dict[str, dict[str, int]]:
    """``qrels[qid][docid] = grade`` from a BEIR qrels TSV (the header line is optional)."""
    label = label or path
    qrels: dict[str, dict[str, int]] = {}
    for lineno, line in _lines(fs, path, label):
        fields = line.split("\t")
        if len(fields) != 3:
            raise DatasetFormatError(f"{label} line {lineno}: expected 3 tab-separated fields, got {len(fields)}")
        qid, docid, score = (f.strip() for f in fields)
        if lineno == 1 and (qid, docid, score) == QRELS_HEADER:
            continue
        if not qid or not docid:
            raise DatasetFormatError(f"{label} line {lineno}: empty query-id or corpus-id")
        try:
            grade = int(score)
        except ValueError:
            raise DatasetFormatError(f"{label} line {lineno}: score {score!r} is not an integer") from None
        judged = qrels.setdefault(qid, {})
        if docid in judged:
            raise DatasetFormatError(f"{label} line {lineno}: duplicate judgment for query {qid!r}, document {docid!r}")
        judged[docid] = grade
    return qrels


def _read_corpus(fs: fsspec.AbstractFileSystem, path: str, label: str) -> Corpus:
    corpus, seen = Corpus(), set()
    for lineno, rec in _jsonl(fs, path, label):
        doc_id = _id_of(rec, label, lineno)
        if doc_id in seen:
            raise DatasetFormatError(f"{label} line {lineno}: duplicate _id {doc_id!r}")
        seen.add(doc_id)
        corpus.ids.append(doc_id)
        corpus.titles.append(_str_field(rec, "title", label, lineno, required=False))
        corpus.texts.append(_str_field(rec, "text", label, lineno))
    return corpus


def _read_queries(fs: fsspec.AbstractFileSystem, path: str, label: str) -> dict[str, str]:
    queries: dict[str, str] = {}
    for lineno, rec in _jsonl(fs, path, label):
        qid = _id_of(rec, label, lineno)
        if qid in queries:
            raise DatasetFormatError(f"{label} line {lineno}: duplicate _id {qid!r}")
        queries[qid] = _str_field(rec, "text", label, lineno)
    return queries


def _lines(fs: fsspec.AbstractFileSystem, path: str, label: str) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its newline) of the non-blank lines of a UTF-8 file."""
    if not fs.exists(path):
        raise FileNotFoundError(f"{label} not found ({path})")
    with fs.open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as e:
                raise DatasetFormatError(f"{label} line {lineno}: not valid UTF-8 ({e.reason})") from None
            if line.strip():
                yield lineno, line


def _jsonl(fs: fsspec.AbstractFileSystem, path: str, label: str) -> Iterator[tuple[int, dict]]:
    for lineno, line in _lines(fs, path, label):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise DatasetFormatError(f"{label} line {lineno}: malformed JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(rec, dict):
            raise DatasetFormatError(f"{label} line {lineno}: expected a JSON object, got {type(rec).__name__}")
        yield lineno, rec


def _id_of(rec: dict, label: str, lineno: int) -> str:
    value = rec.get("_id")
    if isinstance(value, bool) or not isinstance(value, (str, int)) or str(value) == "":
        raise DatasetFormatError(f"{label} line {lineno}: missing or invalid field '_id'")
    return str(value)


def _str_field(rec: dict, key: str, label: str, lineno: int, required: bool = True) -> str:
    value = rec.get(key)
    if value is None:
        if required:
            raise DatasetFormatError(f"{label} line {lineno}: missing field {key!r}")
        return ""
    if not isinstance(value, str):
        raise DatasetFormatError(f"{label} line {lineno}: field {key!r} is not a string ({type(value).__name__})")
    return value


# --- dev split of synthetic pairs ------------------------------------------------------------------

PAIR_COLUMNS = ("pair_id", "note_id", "query", "passage")


def passage_id(text: str) -> str:
    """Stable id of a passage: ``p`` + the first 16 hex digits of the SHA-256 of its UTF-8 text."""
    return "p" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def dataset_from_pairs(table: Any, *, name: str = "synthetic-pairs", split: str = "dev") -> RetrievalDataset:
    """A retrieval set from (pair_id, note_id, query, passage) rows (a ``pyarrow.Table`` or pandas frame).

    The corpus is the unique passages (id :func:`passage_id`, in first-seen order), each pair is a
    query (id ``pair_id``) whose only relevant document (grade 1) is its own passage. Rows with an
    empty query or passage are skipped with a warning; a repeated ``pair_id`` is an error.
    """
    rows = _pair_rows(table)
    corpus, queries, qrels = Corpus(), Queries(), {}
    seen_docs: set[str] = set()
    skipped = 0
    for i, row in enumerate(rows):
        qid, query, passage = row["pair_id"], row["query"], row["passage"]
        if not isinstance(qid, str) or not qid:
            raise DatasetFormatError(f"{name} row {i}: missing pair_id")
        if qid in qrels:
            raise DatasetFormatError(f"{name} row {i}: duplicate pair_id {qid!r}")
        if not isinstance(query, str) or not query.strip() or not isinstance(passage, str) or not passage.strip():
            skipped += 1
            continue
        doc_id = passage_id(passage)
        if doc_id not in seen_docs:
            seen_docs.add(doc_id)
            corpus.ids.append(doc_id)
            corpus.titles.append("")
            corpus.texts.append(passage)
        queries.ids.append(qid)
        queries.texts.append(query)
        qrels[qid] = {doc_id: 1}
    if skipped:
        log.warning("%s: skipped %d pairs with an empty query or passage", name, skipped)
    return RetrievalDataset(name=name, split=split, corpus=corpus, queries=queries, qrels=qrels)


def _pair_rows(table: Any) -> list[dict]:
    if hasattr(table, "to_pylist"):  # pyarrow.Table
        columns = list(table.column_names)
    elif hasattr(table, "to_dict") and hasattr(table, "columns"):  # pandas.DataFrame
        columns = [str(c) for c in table.columns]
    else:
        raise TypeError(f"expected a pyarrow.Table or pandas.DataFrame, got {type(table).__name__}")
    missing = [c for c in PAIR_COLUMNS if c not in columns]
    if missing:
        raise ValueError(f"pairs table lacks columns {missing} (has {columns})")
    if hasattr(table, "to_pylist"):
        return table.select(list(PAIR_COLUMNS)).to_pylist()
    return table[list(PAIR_COLUMNS)].to_dict("records")
