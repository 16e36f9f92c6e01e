"""Exact top-k + run dict + metrics, written once (evaluation.retrieval) for training's dev split and benchmarks."""

from __future__ import annotations

import numpy as np
import pytest

from medembed.evaluation.metrics import evaluate
from medembed.evaluation.retrieval import cosine_scores, exact_scores, run_from_scores


def test_exact_run_ranks_by_cosine():
    q = np.array([[1.0, 0.0], [0.0, 2.0]])
    d = np.array([[3.0, 0.1], [0.0, 1.0], [1.0, 1.0]])
    run = run_from_scores(cosine_scores(q, d), ["q0", "q1"], ["d0", "d1", "d2"], k=2)
    assert sorted(run["q0"], key=run["q0"].get, reverse=True) == ["d0", "d2"]
    assert sorted(run["q1"], key=run["q1"].get, reverse=True) == ["d1", "d2"]
    assert run["q1"]["d1"] == pytest.approx(1.0)
    assert run_from_scores(cosine_scores(q, d), ["q0", "q1"], ["d0", "d1", "d2"], k=5)["q0"].keys() == {"d0", "d1", "d2"}


def test_scores_equal_the_hand_written_argsort_runs_they_replace():
    rng = np.random.default_rng(0)
    scores = rng.standard_normal((40, 300)).astype(np.float32)
    qids, dids = [f"q{i}" for i in range(40)], [f"d{j}" for j in range(300)]
    qrels = {q: {dids[j]: int(g) for j, g in zip(rng.integers(0, 300, 5), rng.integers(0, 3, 5))} for q in qids}
    for k, ks in ((100, (1, 3, 5, 10, 100)), (10, (10,))):
        old = {q: {dids[j]: float(scores[i, j]) for j in np.argsort(-scores[i])[:k]} for i, q in enumerate(qids)}
        assert exact_scores(scores, qids, dids, qrels, k=k, k_values=ks).mean == evaluate(old, qrels, ks).mean
