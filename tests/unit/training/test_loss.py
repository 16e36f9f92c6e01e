"""The InfoNCE loss over in-batch + hard negatives, by hand on a tiny case, and the passage order."""

from __future__ import annotations

import math

import pytest
import torch

from medembed.training.loss import build_loss, contrastive_loss, passage_texts


def test_loss_matches_a_hand_computed_infonce_with_hard_negatives():
    # 2 queries, 2 positives, 1 hard negative each; unit vectors so cosine = dot product
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    docs = torch.tensor([[1.0, 0.0], [0.6, 0.8],  # positives of q0, q1
                         [0.8, 0.6], [0.0, -1.0]])  # hard negatives of q0, q1
    temperature = 0.5
    loss = contrastive_loss(build_loss(None, temperature, False), q, docs, num_negatives=1)
    s = 1 / temperature
    # q0 sims: [1, .6, .8, 0], target 0; q1 sims: [0, .8, .6, -1], target 1
    l0 = -s * 1.0 + math.log(sum(math.exp(s * v) for v in (1, 0.6, 0.8, 0)))
    l1 = -s * 0.8 + math.log(sum(math.exp(s * v) for v in (0, 0.8, 0.6, -1)))
    assert loss.item() == pytest.approx((l0 + l1) / 2, rel=1e-5)


def test_lower_temperature_sharpens_and_hard_negatives_raise_the_loss():
    torch.manual_seed(0)
    q, p, n = torch.randn(4, 8), torch.randn(4, 8), torch.randn(4, 8)
    p = q + 0.1 * p
    easy = contrastive_loss(build_loss(None, 0.05, False), q, p, 0)
    hard = contrastive_loss(build_loss(None, 0.05, False), q, torch.cat([p, q + 0.2 * n]), 1)
    assert hard.item() > easy.item()
    with pytest.raises(ValueError, match="expected 8 passage embeddings"):
        contrastive_loss(build_loss(None, 0.05, False), q, p, 1)


def test_passage_order_is_positives_then_each_negative_rank():
    assert passage_texts(["p0", "p1"], [["a0", "b0"], ["a1", "b1"]], 2) == ["p0", "p1", "a0", "a1", "b0", "b1"]
    assert passage_texts(["p0"], [["a0", "b0"]], 1) == ["p0", "a0"]


def test_distill_loss_is_the_kl_from_the_teacher_softmax_and_zero_when_they_agree():
    from medembed.training.loss import distill_loss

    q = torch.tensor([[1.0, 0.0]])
    docs = torch.tensor([[1.0, 0.0], [0.6, 0.8]])  # positive, then one negative (cosines 1.0 and 0.6)
    teacher = torch.tensor([[2.0, 1.0]])
    got = distill_loss(q, docs, teacher, temperature=0.5, teacher_temperature=0.5).item()
    t = [math.exp(4.0) / (math.exp(4.0) + math.exp(2.0)), math.exp(2.0) / (math.exp(4.0) + math.exp(2.0))]
    s = [math.exp(2.0) / (math.exp(2.0) + math.exp(1.2)), math.exp(1.2) / (math.exp(2.0) + math.exp(1.2))]
    assert got == pytest.approx(sum(ti * math.log(ti / si) for ti, si in zip(t, s)), rel=1e-5)
    agree = torch.tensor([[1.0, 0.6]])  # the teacher's scores are the model's cosines
    assert distill_loss(q, docs, agree, 0.5, 0.5).item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="expected 3 passage embeddings"):
        distill_loss(q, docs, torch.tensor([[1.0, 0.5, 0.2]]), 0.5, 0.5)
