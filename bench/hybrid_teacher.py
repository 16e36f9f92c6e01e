"""How good is the hybrid mining teacher? Dense vs BM25 vs their fusion on real claims (issue 10, item 13).

``mining.teacher=hybrid`` ranks candidates by ``z(cosine) + w * z(BM25)`` (``medembed.mining.lexical``).
Distilling that ranking is only worth it if it ranks better than the model alone. This measures
nDCG@10 on SciFact's **train** split queries (never used for training; the test split stays untouched
for the quality benchmark) over a document subsample (every judged document plus a seeded random
sample), for the bundled model, BM25, and the fusion at several weights. Appends to bench/RESULTS.md.

    HF_HUB_OFFLINE=1 python bench/hybrid_teacher.py --docs 1500
"""

from __future__ import annotations

import argparse
import os
import random
import time
from pathlib import Path

import numpy as np
from results_file import append_section, header_lines

from medembed.config import ModelConfig
from medembed.embedding.chunking import document_input
from medembed.embedding.encoders import build_encoder
from medembed.evaluation.datasets import load_beir
from medembed.evaluation.retrieval import exact_scores
from medembed.mining.lexical import BM25, hybrid_scores
from medembed.runtime.storage import DEFAULT_STORAGE

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MEDEMBED_SHARED_DATA", REPO.parent / "shared" / "data"))


def ndcg10(scores: np.ndarray, qids: list[str], doc_ids: list[str], qrels: dict) -> float:
    return 100 * exact_scores(scores, qids, doc_ids, qrels).mean["ndcg_at_10"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="scifact")
    ap.add_argument("--split", default="train", help="queries used to judge the teacher (not the test split)")
    ap.add_argument("--docs", type=int, default=1500)
    ap.add_argument("--weights", default="0.25,0.43,0.7,1.0")
    args = ap.parse_args()
    t0 = time.perf_counter()
    ds = load_beir(str(DATA / args.dataset), args.split)
    judged = sorted({d for rel in ds.qrels.values() for d in rel})
    rest = sorted(set(ds.corpus.ids) - set(judged))
    random.Random(0).shuffle(rest)
    doc_ids = judged + rest[:max(0, args.docs - len(judged))]
    text = {i: document_input(t or "", x) for i, t, x in zip(ds.corpus.ids, ds.corpus.titles, ds.corpus.texts)}
    docs = [text[d] for d in doc_ids]  # title + text, as the embedder and the eval job see a document
    qtext = dict(zip(ds.queries.ids, ds.queries.texts))
    qids = sorted(q for q in ds.qrels if q in qtext)
    queries = [qtext[q] for q in qids]
    enc = build_encoder(ModelConfig(), None, DEFAULT_STORAGE)
    dense = enc.encode_queries(queries) @ enc.encode_documents(docs).T
    lexical = BM25(docs).scores(queries)
    rows = [("bundled MiniLM (dense)", ndcg10(dense, qids, doc_ids, ds.qrels)),
            ("BM25 (k1 0.9, b 0.4)", ndcg10(lexical, qids, doc_ids, ds.qrels))]
    for w in (float(x) for x in args.weights.split(",")):
        rows.append((f"hybrid, lexical_weight {w}", ndcg10(hybrid_scores(dense, lexical, w), qids, doc_ids, ds.qrels)))
    base = rows[0][1]
    lines = [*header_lines("hybrid_teacher", f"HF_HUB_OFFLINE=1 python bench/hybrid_teacher.py --docs {args.docs}"),
             f"- wall time: {time.perf_counter() - t0:.0f} s",
             f"- data: {args.dataset} {args.split} split, {len(qids)} queries, {len(doc_ids)} documents (every judged one "
             "plus a seeded sample); exact search", "",
             "| ranker | nDCG@10 | vs dense |", "|---|---|---|"]
    lines += [f"| {name} | {v:.2f} | {v - base:+.2f} |" for name, v in rows]
    append_section(lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
