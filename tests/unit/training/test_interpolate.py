"""Weight interpolation math and picking alpha by dev nDCG@10 (exact top-k: tests/unit/evaluation/test_exact_retrieval.py)."""

from __future__ import annotations

import pytest
import torch

from medembed.training.interpolate import choose_alpha, interpolate_state


def test_interpolation_is_linear_per_float_tensor_and_keeps_int_buffers():
    base = {"w": torch.tensor([0.0, 2.0]), "ids": torch.tensor([1, 2])}
    tuned = {"w": torch.tensor([4.0, 6.0]), "ids": torch.tensor([3, 4])}
    assert interpolate_state(base, tuned, 0.25)["w"].tolist() == [1.0, 3.0]
    assert interpolate_state(base, tuned, 1.0)["w"].tolist() == [4.0, 6.0]
    assert interpolate_state(base, tuned, 0.0)["w"].tolist() == [0.0, 2.0]
    assert interpolate_state(base, tuned, 0.5)["ids"].tolist() == [3, 4]
    with pytest.raises(ValueError, match="differ in keys"):
        interpolate_state(base, {"w": tuned["w"]}, 0.5)


class Holder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))


def test_choose_alpha_picks_the_best_dev_score_and_leaves_its_weights():
    model = Holder()
    base, tuned = {"w": torch.tensor([0.0])}, {"w": torch.tensor([1.0])}

    def score(m):  # best at w = 0.5
        return {"ndcg_at_10": 1.0 - abs(float(m.w.detach()) - 0.5)}

    alpha, results = choose_alpha(model, base, tuned, [0.25, 0.5, 1.0], score)
    assert alpha == 0.5
    assert sorted(results) == [0.0, 0.25, 0.5, 1.0]  # the base (0.0) is scored for reference
    assert results[0.0]["ndcg_at_10"] == 0.5
    assert float(model.w.detach()) == 0.5
    alpha, _ = choose_alpha(model, base, tuned, [0.25, 0.75], score)  # a tie goes to the larger alpha
    assert alpha == 0.75 and float(model.w.detach()) == 0.75
