"""Retrieval metrics at cutoffs k, computed the way trec_eval (and so pytrec_eval) computes them.

Inputs are plain dicts: ``run[qid][docid] = score`` and ``qrels[qid][docid] = grade``. No benchmark
knowledge lives here. Conventions, all checked against ``pytrec_eval`` in the tests:

- A run is ranked by score descending, ties broken by doc id descending (trec_eval's order; the
  order of the dict and any rank the retriever gave are ignored).
- A doc is relevant when its grade is > 0; unjudged docs and grades <= 0 are non-relevant and
  have gain 0.
- ``ndcg_at_k``: trec_eval ``ndcg_cut.k``: gain = grade, discount log2(rank + 1), ideal DCG from
  all judged relevant docs of the query sorted by grade, cut at k.
- ``map_at_k``: ``map_cut.k``: sum of precision at each relevant rank <= k, divided by the number
  of relevant docs of the query (not by min(k, R)).
- ``recall_at_k``: ``recall.k``: relevant in top k / relevant docs of the query.
- ``precision_at_k``: ``P.k``: relevant in top k / k (k even when fewer docs were retrieved).
- ``mrr_at_k``: 1 / rank of the first relevant doc within the top k, else 0 (BEIR/MTEB's MRR@k;
  trec_eval's ``recip_rank`` is the same without a cutoff).

Queries evaluated: every query of ``qrels`` with at least one relevant doc; a query missing from
the run scores 0 everywhere (trec_eval ``-c``). Run queries absent from qrels are ignored.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

log = logging.getLogger(__name__)

DEFAULT_K: tuple[int, ...] = (1, 3, 5, 10, 100)
METRICS: tuple[str, ...] = ("ndcg", "map", "recall", "precision", "mrr")

Run = Mapping[str, Mapping[str, float]]
Qrels = Mapping[str, Mapping[str, int]]


@dataclass(frozen=True)
class RetrievalScores:
    """Per-query scores (``{qid: {"ndcg_at_10": ...}}``) and their mean over the evaluated queries."""

    per_query: dict[str, dict[str, float]]
    mean: dict[str, float]

    @property
    def num_queries(self) -> int:
        return len(self.per_query)


def metric_names(k_values: Iterable[int] = DEFAULT_K) -> list[str]:
    """Score keys in output order, e.g. ``ndcg_at_1 ... mrr_at_100``."""
    ks = _check_k(k_values)
    return [f"{m}_at_{k}" for m in METRICS for k in ks]


def rank(hits: Mapping[str, float]) -> list[str]:
    """Doc ids of one query's hits in trec_eval order: score descending, then doc id descending."""
    return [doc for doc, _ in sorted(hits.items(), key=lambda kv: (float(kv[1]), kv[0]), reverse=True)]


def drop_self_hits(run: Run) -> dict[str, dict[str, float]]:
    """The run without hits whose doc id equals the query id (for sets whose queries are corpus docs)."""
    return {qid: {doc: s for doc, s in hits.items() if doc != qid} for qid, hits in run.items()}


def evaluate_query(ranked: list[str], grades: Mapping[str, int], k_values: Iterable[int] = DEFAULT_K
                   ) -> dict[str, float]:
    """All metrics at all k for one query: ``ranked`` doc ids (best first), ``grades`` its qrels."""
    ks = _check_k(k_values)
    ideal = sorted((g for g in grades.values() if g > 0), reverse=True)
    n_rel = len(ideal)
    if n_rel == 0:
        raise ValueError("a query without relevant docs cannot be evaluated")
    depth = min(len(ranked), ks[-1])
    gains = [max(int(grades.get(doc, 0)), 0) for doc in ranked[:depth]]

    # prefix sums over ranks 1..depth: DCG, number of relevant, sum of precision at relevant ranks
    dcg, hits, ap_sum, first_rel = [0.0], [0], [0.0], 0
    for i, g in enumerate(gains, start=1):
        dcg.append(dcg[-1] + (g / math.log2(i + 1) if g else 0.0))
        hits.append(hits[-1] + (g > 0))
        ap_sum.append(ap_sum[-1] + (hits[-1] / i if g else 0.0))
        if g and not first_rel:
            first_rel = i
    idcg = [0.0]
    for i, g in enumerate(ideal[: ks[-1]], start=1):
        idcg.append(idcg[-1] + g / math.log2(i + 1))

    out: dict[str, float] = {}
    for k in ks:
        d, di = min(k, depth), min(k, n_rel)
        out[f"ndcg_at_{k}"] = dcg[d] / idcg[di]
        out[f"map_at_{k}"] = ap_sum[d] / n_rel
        out[f"recall_at_{k}"] = hits[d] / n_rel
        out[f"precision_at_{k}"] = hits[d] / k
        out[f"mrr_at_{k}"] = 1.0 / first_rel if first_rel and first_rel <= k else 0.0
    return {name: out[name] for name in metric_names(ks)}


def evaluate(run: Run, qrels: Qrels, k_values: Iterable[int] = DEFAULT_K) -> RetrievalScores:
    """Score ``run`` against ``qrels``: per query (queries with a relevant doc) and the mean over them."""
    ks = _check_k(k_values)
    per_query: dict[str, dict[str, float]] = {}
    missing = 0
    for qid, grades in qrels.items():
        if not any(g > 0 for g in grades.values()):
            continue
        hits = run.get(qid)
        missing += hits is None
        per_query[qid] = evaluate_query(rank(hits) if hits else [], grades, ks)
    if missing:
        log.warning("%d of %d evaluated queries have no hits in the run (scored 0)", missing, len(per_query))
    extra = len(set(run) - set(qrels))
    if extra:
        log.info("ignored %d run queries that have no qrels", extra)
    names = metric_names(ks)
    n = len(per_query)
    mean = {name: (math.fsum(s[name] for s in per_query.values()) / n if n else 0.0) for name in names}
    return RetrievalScores(per_query=per_query, mean=mean)


def _check_k(k_values: Iterable[int]) -> list[int]:
    given = list(k_values)
    ks = sorted({int(k) for k in given})
    if not ks or ks[0] < 1:
        raise ValueError(f"k values must be positive integers, got {given}")
    return ks
