"""The SciFact train-split subsample the single-process recipe probes score on (shared by the probes).

Every document judged for a train-split claim plus a seeded sample of the others, used as an unlabelled corpus;
the train-split claims score the result (never the test split; no claim or qrel is trained on).
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import NamedTuple

from medembed.embedding.chunking import document_input
from medembed.evaluation.datasets import RetrievalDataset, load_beir

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MEDEMBED_SHARED_DATA", REPO.parent / "shared" / "data"))


class Subsample(NamedTuple):
    ds: RetrievalDataset
    doc_ids: list[str]
    by_id: dict[str, tuple[str, str]]  # doc id -> (title, text)
    docs: list[str]  # the documents as the model reads them (title + text)
    qtext: dict[str, str]
    qids: list[str]  # judged train-split claims, sorted


def scifact_train_subsample(n_docs: int, seed: int = 0) -> Subsample:
    ds = load_beir(str(DATA / "scifact"), "train")
    judged = sorted({d for rel in ds.qrels.values() for d in rel})
    rest = sorted(set(ds.corpus.ids) - set(judged))
    random.Random(seed).shuffle(rest)
    doc_ids = judged + rest[:max(0, n_docs - len(judged))]
    by_id = {i: (t or "", x) for i, t, x in zip(ds.corpus.ids, ds.corpus.titles, ds.corpus.texts)}
    qtext = dict(zip(ds.queries.ids, ds.queries.texts))
    return Subsample(ds, doc_ids, by_id, [document_input(*by_id[d]) for d in doc_ids], qtext,
                     sorted(q for q in ds.qrels if q in qtext))
