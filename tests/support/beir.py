"""Builders of small BEIR-layout retrieval sets (corpus.jsonl, queries.jsonl, qrels/<split>.tsv) for tests."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

# A tiny medical set: 4 documents, 3 queries; q3 is judged only in the train split.
TINY_CORPUS = [
    {"_id": "d1", "title": "Lamotrigine rash", "text": "Stevens-Johnson syndrome after starting lamotrigine."},
    {"_id": "d2", "title": "Gallstone pancreatitis", "text": "Acute pancreatitis caused by gallstones."},
    {"_id": "d3", "title": "", "text": "Anticoagulation for pulmonary embolism: apixaban or warfarin."},
    {"_id": "d4", "text": "Gout flare treated with colchicine."},  # no title: loads as ""
]
TINY_QUERIES = [
    {"_id": "q1", "text": "blistering rash on lamotrigine"},
    {"_id": "q2", "text": "pancreatitis gallstones"},
    {"_id": "q3", "text": "how long to anticoagulate after a PE"},
]
TINY_QRELS = {
    "test": [("q1", "d1", 2), ("q2", "d2", 1), ("q2", "d4", 0)],
    "train": [("q3", "d3", 1)],
}


def write_beir(root: str | Path, corpus: list[dict] = TINY_CORPUS, queries: list[dict] = TINY_QUERIES,
               qrels: Mapping[str, list[tuple[str, str, int]]] = TINY_QRELS) -> Path:
    """Write a BEIR folder at ``root`` (created) and return it; qrels maps split -> (qid, docid, grade) rows."""
    root = Path(root)
    (root / "qrels").mkdir(parents=True, exist_ok=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in corpus), encoding="utf-8")
    (root / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries), encoding="utf-8")
    for split, rows in qrels.items():
        lines = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t{g}" for q, d, g in rows]
        (root / "qrels" / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root
