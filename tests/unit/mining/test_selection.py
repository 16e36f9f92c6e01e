"""The per-query negative selection rule on hand-made scores (no model, no Ray)."""

from __future__ import annotations

import numpy as np
import pytest

from medembed.config import ConfigError, load_config
from medembed.mining import columns as M
from medembed.mining.config import MineNegativesJobConfig
from medembed.mining.selection import SelectParams, select_negatives

# candidates 0..7; candidate 1 is the positive (score 0.80), candidates 2 and 5 share the query's note
SCORES = np.array([0.90, 0.80, 0.78, 0.77, 0.70, 0.65, 0.60, 0.50], dtype=np.float32)
IS_POS = np.array([0, 1, 0, 0, 0, 0, 0, 0], dtype=bool)
SAME = np.array([0, 0, 1, 0, 0, 1, 0, 0], dtype=bool)


def test_window_same_note_and_relative_margin():
    # relative 0.05: threshold 0.80 - 0.04 = 0.76 -> drops 0 (0.90) and 3 (0.77); same note drops 2 and 5
    sel = select_negatives(SCORES, IS_POS, SAME, 0.80, SelectParams(num_negatives=2, min_rank=0, max_rank=10))
    assert sel.indices == [4, 6]
    assert sel.scores == pytest.approx([0.70, 0.60])
    assert sel.reason is None
    assert (sel.removed_same_note, sel.considered, sel.removed_relative, sel.removed_absolute) == (2, 5, 2, 0)


def test_min_rank_skips_the_hardest_survivors():
    p = SelectParams(num_negatives=2, min_rank=1, max_rank=10, relative_margin=None, exclude_same_note=False)
    # survivors by score: 0, 2, 3, 4, 5, 6, 7 -> skip 0
    assert select_negatives(SCORES, IS_POS, SAME, 0.80, p).indices == [2, 3]


def test_absolute_margin_matches_sentence_transformers():
    # removed when score + margin > positive: 0.90, 0.78 (0.88>0.8), 0.77 (0.87>0.8); 0.70+0.1 == 0.8 is kept
    p = SelectParams(num_negatives=3, max_rank=10, relative_margin=None, absolute_margin=0.1, exclude_same_note=False)
    sel = select_negatives(SCORES, IS_POS, SAME, 0.80, p)
    assert sel.indices == [4, 5, 6]
    assert sel.removed_absolute == 3


def test_relative_margin_uses_the_magnitude_for_negative_positive_scores():
    scores = np.array([-0.10, -0.25, -0.21, -0.30], dtype=np.float32)
    is_pos = np.array([0, 1, 0, 0], dtype=bool)
    # positive -0.25, margin 0.1: threshold -0.25 - 0.025 = -0.275 (ST), not -0.225 (p * (1 - m))
    p = SelectParams(num_negatives=1, max_rank=4, relative_margin=0.1, exclude_same_note=False)
    sel = select_negatives(scores, is_pos, np.zeros(4, bool), -0.25, p)
    assert sel.indices == [3]
    assert sel.removed_relative == 2


@pytest.mark.parametrize("params, reason", [
    (SelectParams(num_negatives=8, max_rank=10, relative_margin=None, exclude_same_note=False), M.R_TOO_FEW_CANDIDATES),
    (SelectParams(num_negatives=6, max_rank=10, relative_margin=None), M.R_SAME_NOTE),
    (SelectParams(num_negatives=4, max_rank=10), M.R_FALSE_NEGATIVE_FILTER),
    (SelectParams(num_negatives=1, min_rank=3, max_rank=10), M.R_FALSE_NEGATIVE_FILTER),
])
def test_shortfall_reasons_name_the_first_step_that_emptied_the_window(params, reason):
    sel = select_negatives(SCORES, IS_POS, SAME, 0.80, params)
    assert len(sel.indices) < params.num_negatives
    assert sel.reason == reason


def test_a_short_query_keeps_what_it_found():
    sel = select_negatives(SCORES, IS_POS, SAME, 0.80, SelectParams(num_negatives=4, max_rank=10))
    assert sel.indices == [4, 6, 7]
    assert sel.reason == M.R_FALSE_NEGATIVE_FILTER


def test_max_rank_caps_the_window():
    p = SelectParams(num_negatives=2, min_rank=1, max_rank=3, relative_margin=None, exclude_same_note=False)
    assert select_negatives(SCORES, IS_POS, SAME, 0.80, p).indices == [2, 3]  # survivor ranks 1, 2
    with pytest.raises(ValueError, match="do not fit"):
        SelectParams(num_negatives=2, min_rank=1, max_rank=2)


def test_unsorted_input_is_ranked_by_score():
    perm = np.array([7, 3, 0, 5, 1, 6, 2, 4])
    sel = select_negatives(SCORES[perm], IS_POS[perm], SAME[perm], 0.80, SelectParams(num_negatives=2, max_rank=10))
    assert list(perm[sel.indices]) == [4, 6]


def test_config_rejects_a_window_that_cannot_hold_the_negatives():
    with pytest.raises(ConfigError, match="num_negatives"):
        load_config(MineNegativesJobConfig, overrides=["mining.min_rank=95", "mining.num_negatives=10"])
    with pytest.raises(ConfigError, match="top_k"):
        load_config(MineNegativesJobConfig, overrides=["mining.top_k=50"])
    cfg = load_config(MineNegativesJobConfig, "mine_negatives_pmc_patients")
    assert (cfg.mining.min_rank, cfg.mining.max_rank, cfg.mining.retrieve_k) == (10, 100, 132)
