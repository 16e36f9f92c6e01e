"""Retrieval metrics: hand-computed cases, graded relevance, ties, and agreement with pytrec_eval."""

from __future__ import annotations

import math
import random
import time

import pytest

from medembed.evaluation.metrics import (
    DEFAULT_K,
    drop_self_hits,
    evaluate,
    evaluate_query,
    metric_names,
    rank,
)

TOL = 1e-9


def approx(x: float) -> pytest.approx:
    return pytest.approx(x, abs=TOL)


def test_binary_case_by_hand():
    # relevant: d1, d3, d5 (R = 3); ranked: d1 d2 d3 d4 (d5 never retrieved)
    run = {"q1": {"d1": 0.9, "d2": 0.8, "d3": 0.7, "d4": 0.6}}
    qrels = {"q1": {"d1": 1, "d3": 1, "d5": 1}}
    s = evaluate(run, qrels, k_values=(1, 3, 5)).per_query["q1"]
    assert s["precision_at_1"] == approx(1.0)          # 1/1
    assert s["precision_at_3"] == approx(2 / 3)        # d1, d3 in top 3
    assert s["precision_at_5"] == approx(0.4)          # 2/5: P divides by k even with 4 hits
    assert s["recall_at_1"] == approx(1 / 3)
    assert s["recall_at_3"] == approx(2 / 3)
    assert s["recall_at_5"] == approx(2 / 3)
    assert s["map_at_1"] == approx(1 / 3)              # (1/1) / R
    assert s["map_at_3"] == approx(0.5555555555555556)  # (1/1 + 2/3) / 3 = 5/9
    assert s["map_at_5"] == approx(0.5555555555555556)
    assert s["mrr_at_1"] == s["mrr_at_3"] == s["mrr_at_5"] == 1.0
    assert s["ndcg_at_1"] == approx(1.0)
    # DCG@3 = 1/log2(2) + 1/log2(4) = 1 + 0.5 = 1.5
    # IDCG@3 = 1 + 1/log2(3) + 1/log2(4) = 1 + 0.6309298 + 0.5 = 2.1309298 -> 1.5 / 2.1309298
    assert s["ndcg_at_3"] == approx(0.7039180890341347)
    assert s["ndcg_at_5"] == approx(0.7039180890341347)  # nothing relevant at ranks 4-5


def test_graded_case_by_hand():
    # grades a=3 b=2 c=1 z=0 (judged non-relevant); x is unjudged. Ranked: c z a x b -> gains 1 0 3 0 2
    run = {"q": {"c": 0.9, "z": 0.8, "a": 0.7, "x": 0.6, "b": 0.5}}
    qrels = {"q": {"a": 3, "b": 2, "c": 1, "z": 0}}
    s = evaluate(run, qrels, k_values=(1, 3, 5)).per_query["q"]
    # IDCG: ideal gains 3 2 1 -> 3/1 = 3; 3 + 2/log2(3) = 4.2618595; + 1/log2(4) = 4.7618595
    assert s["ndcg_at_1"] == approx(1 / 3)                 # 1/1 over 3/1
    assert s["ndcg_at_3"] == approx(0.5250049893849101)    # (1 + 3/log2(4) = 2.5) / 4.7618595
    assert s["ndcg_at_5"] == approx(0.6874847125494647)    # (2.5 + 2/log2(6) = 3.2737056) / 4.7618595
    assert s["precision_at_3"] == approx(2 / 3)            # z (grade 0) does not count
    assert s["recall_at_3"] == approx(2 / 3)
    assert s["map_at_5"] == approx(0.7555555555555556)     # (1/1 + 2/3 + 3/5) / 3
    assert s["mrr_at_1"] == 1.0


def test_ties_break_by_doc_id_descending():
    # equal scores: doc id descending as strings, so "d9" > "d10" > "a"; "b" wins on score
    assert rank({"d10": 1.0, "d9": 1.0, "a": 1.0, "b": 2.0}) == ["b", "d9", "d10", "a"]
    run = {"q": {"a": 0.5, "b": 0.5, "c": 0.5}}
    s = evaluate(run, {"q": {"a": 1}}, k_values=(1, 3)).per_query["q"]
    # ranked c b a: the relevant doc is third
    assert s["mrr_at_1"] == 0.0
    assert s["mrr_at_3"] == approx(1 / 3)
    assert s["ndcg_at_3"] == approx(0.5)   # 1/log2(4) over 1/log2(2)
    assert s["precision_at_1"] == 0.0


def test_ties_agree_with_pytrec_eval():
    pytrec_eval = pytest.importorskip("pytrec_eval", reason="pytrec-eval-terrier not installed")
    run = {"q": {"d10": 1.0, "d9": 1.0, "d1": 1.0, "d2": 0.5, "e": 0.5}}
    qrels = {"q": {"d1": 1, "e": 2}}
    ref = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.1,3,5", "P.1,3,5", "recip_rank"}).evaluate(run)["q"]
    s = evaluate(run, qrels, k_values=(1, 3, 5)).per_query["q"]
    for k in (1, 3, 5):
        assert s[f"ndcg_at_{k}"] == approx(ref[f"ndcg_cut_{k}"])
        assert s[f"precision_at_{k}"] == approx(ref[f"P_{k}"])
    assert s["mrr_at_5"] == approx(ref["recip_rank"])


def test_which_queries_count_in_the_mean():
    qrels = {
        "rel": {"a": 1},
        "absent": {"b": 2},          # in qrels, not in the run: scores 0 and counts
        "none_relevant": {"c": 0},   # no relevant doc: not evaluated
    }
    run = {"rel": {"a": 1.0}, "none_relevant": {"c": 1.0}, "extra": {"a": 1.0}}  # extra: no qrels, ignored
    scores = evaluate(run, qrels, k_values=(1,))
    assert sorted(scores.per_query) == ["absent", "rel"]
    assert scores.num_queries == 2
    assert scores.per_query["absent"] == {name: 0.0 for name in metric_names((1,))}
    assert scores.mean["ndcg_at_1"] == approx(0.5)   # (1 + 0) / 2
    assert list(scores.mean) == metric_names((1,))


def test_metric_names_and_k_validation():
    assert metric_names((10, 1)) == ["ndcg_at_1", "ndcg_at_10", "map_at_1", "map_at_10", "recall_at_1",
                                     "recall_at_10", "precision_at_1", "precision_at_10", "mrr_at_1", "mrr_at_10"]
    with pytest.raises(ValueError, match="positive"):
        evaluate({}, {}, k_values=(0, 5))
    with pytest.raises(ValueError, match="relevant"):
        evaluate_query(["a"], {"a": 0})
    assert evaluate({}, {}).mean == {name: 0.0 for name in metric_names(DEFAULT_K)}


def test_drop_self_hits():
    assert drop_self_hits({"5": {"5": 1.0, "6": 0.5}}) == {"5": {"6": 0.5}}


def _random_case(seed: int, n_queries: int = 60, n_docs: int = 150, hits: int = 120):
    rng = random.Random(seed)
    docs = [f"d{i}" for i in range(n_docs)]
    qrels, run = {}, {}
    for q in range(n_queries):
        qid = f"q{q}"
        judged = rng.sample(docs, rng.randint(1, 25))
        qrels[qid] = {d: rng.choice([0, 0, 1, 1, 2, 3, -1]) for d in judged}
        # scores on a coarse grid so many ties exercise trec_eval's tie breaking
        run[qid] = {d: round(rng.random(), 1) for d in rng.sample(docs, rng.randint(0, hits))}
    return run, qrels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_runs_agree_with_pytrec_eval(seed):
    pytrec_eval = pytest.importorskip("pytrec_eval", reason="pytrec-eval-terrier not installed")
    ks = DEFAULT_K
    run, qrels = _random_case(seed)
    cut = ",".join(map(str, ks))
    measures = {f"ndcg_cut.{cut}", f"map_cut.{cut}", f"recall.{cut}", f"P.{cut}", "recip_rank"}
    ref = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
    ours = evaluate(run, qrels, k_values=ks)
    # MRR@k is trec_eval's recip_rank on the run cut to its top k
    ref_mrr = {k: pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(
        {q: {d: hits[d] for d in rank(hits)[:k]} for q, hits in run.items()}) for k in ks}

    evaluated = [q for q, g in qrels.items() if any(v > 0 for v in g.values())]
    assert sorted(ours.per_query) == sorted(evaluated)
    checked = 0
    for qid in evaluated:
        mine = ours.per_query[qid]
        if qid not in ref:  # empty run for the query: pytrec_eval skips it, we score 0
            assert not run[qid]
            assert set(mine.values()) == {0.0}
            continue
        for k in ks:
            for name, trec in (("ndcg", f"ndcg_cut_{k}"), ("map", f"map_cut_{k}"), ("recall", f"recall_{k}"),
                               ("precision", f"P_{k}")):
                assert mine[f"{name}_at_{k}"] == pytest.approx(ref[qid][trec], abs=1e-6), (qid, name, k)
            assert mine[f"mrr_at_{k}"] == pytest.approx(ref_mrr[k].get(qid, {}).get("recip_rank", 0.0), abs=1e-6)
            checked += 1
    assert checked > 200


def test_fast_enough_for_1000_queries_of_100_hits():
    rng = random.Random(7)
    qrels = {f"q{i}": {f"d{rng.randrange(5000)}": rng.randint(1, 2) for _ in range(3)} for i in range(1000)}
    run = {q: {f"d{rng.randrange(5000)}": rng.random() for _ in range(100)} for q in qrels}
    t0 = time.perf_counter()
    scores = evaluate(run, qrels)
    elapsed = time.perf_counter() - t0
    assert scores.num_queries == 1000
    assert all(math.isfinite(v) for v in scores.mean.values())
    assert elapsed < 5.0, f"took {elapsed:.2f}s"
