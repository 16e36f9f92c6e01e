"""BM25 against the formula by hand, the z-normalized hybrid teacher score, and its config rules."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medembed.mining.lexical import BM25, hybrid_scores, zscore_rows


def test_bm25_matches_the_okapi_formula_by_hand():
    docs = ["aspirin reduces fever", "fever in children with fever", "statin therapy lowers cholesterol"]
    scores = BM25(docs, k1=0.9, b=0.4).scores(["fever aspirin", "the"])
    n, lengths = 3, [3, 3, 4]  # "in", "with" are stop words: doc 2 is "fever children fever"
    avg = sum(lengths) / n

    def term(tf: int, df: int, dl: int) -> float:
        idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
        return idf * tf * 1.9 / (tf + 0.9 * (1 - 0.4 + 0.4 * dl / avg))

    assert scores[0, 0] == pytest.approx(term(1, 2, 3) + term(1, 1, 3), rel=1e-5)
    assert scores[0, 1] == pytest.approx(term(2, 2, 3), rel=1e-5)
    assert scores[0, 2] == 0.0
    assert not scores[1].any()  # a stop-word-only query matches nothing
    with pytest.raises(ValueError, match="at least one passage"):
        BM25([])


def test_hybrid_is_the_sum_of_row_z_scores():
    dense = np.array([[0.9, 0.5, 0.1], [0.2, 0.2, 0.2]], dtype=np.float32)
    lex = np.array([[0.0, 6.0, 0.0], [1.0, 0.0, 2.0]], dtype=np.float32)
    z = zscore_rows(dense)
    assert np.allclose(z[0].mean(), 0, atol=1e-6) and np.allclose(z[0].std(), 1, atol=1e-5)
    assert not z[1].any()  # a constant row carries no ranking
    fused = hybrid_scores(dense, lex, 0.5)
    assert np.allclose(fused, zscore_rows(dense) + 0.5 * zscore_rows(lex))
    assert fused[0].argmax() == 0 and hybrid_scores(dense, lex, 1.0)[0].argmax() == 1  # BM25 can overturn
    with pytest.raises(ValueError, match="differ in shape"):
        hybrid_scores(dense, lex[:1])


def test_hybrid_teacher_config_rules():
    from medembed.mining.config import MineNegativesJobConfig

    cfg = MineNegativesJobConfig.model_validate({"mining": {"teacher": "hybrid"}})
    assert cfg.mining.relative_margin is None  # the cosine default does not apply to fused scores
    with pytest.raises(ValueError, match="set mining.relative_margin=null"):
        MineNegativesJobConfig.model_validate({"mining": {"teacher": "hybrid", "relative_margin": 0.05}})
    with pytest.raises(ValueError, match="needs candidates.retrieval exact or auto"):
        MineNegativesJobConfig.model_validate({"mining": {"teacher": "hybrid"}, "candidates": {"retrieval": "ann"}})
