"""Warmup + cosine multipliers and the AdamW parameter groups."""

from __future__ import annotations

import math

import pytest
import torch

from medembed.training.schedule import build_optimizer, warmup_cosine, warmup_steps


def test_warmup_is_linear_then_cosine_down_to_the_floor():
    assert [warmup_cosine(s, 10, 4) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert warmup_cosine(4, 10, 4) == pytest.approx(1.0)
    assert warmup_cosine(7, 10, 4) == pytest.approx(0.5 * (1 + math.cos(math.pi * 3 / 6)))  # 0.5
    assert warmup_cosine(10, 10, 4) == pytest.approx(0.0)
    assert warmup_cosine(10, 10, 4, min_ratio=0.1) == pytest.approx(0.1)
    assert warmup_cosine(0, 10, 0) == pytest.approx(1.0)
    assert warmup_steps(100, 0.1) == 10 and warmup_steps(7, 0.1) == 1


def test_optimizer_groups_and_scheduler_follow_the_schedule():
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.LayerNorm(3))
    opt, sched = build_optimizer(model, lr=1.0, weight_decay=0.1, total_steps=10, warmup_ratio=0.2,
                                 min_lr_ratio=0.0)
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and len(decay["params"]) == 1  # the Linear weight only
    assert no_decay["weight_decay"] == 0.0 and len(no_decay["params"]) == 3  # bias, norm weight and bias
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:3] == pytest.approx([0.5, 1.0, 1.0])
    assert lrs[-1] == pytest.approx(0.5 * (1 + math.cos(math.pi * 7 / 8)))
