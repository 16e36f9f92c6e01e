"""Learning-rate schedule and optimizer: linear warmup then cosine decay; AdamW without decay on biases/norms."""

from __future__ import annotations

import math
from typing import Any


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, min_ratio: float = 0.0) -> float:
    """The learning-rate multiplier at ``step`` (0-based): ``(step+1)/warmup`` during warmup, then a cosine
    from 1 down to ``min_ratio`` at ``total_steps``."""
    if total_steps <= 0:
        raise ValueError("total_steps must be positive")
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_steps(total_steps: int, warmup_ratio: float) -> int:
    return int(math.ceil(total_steps * warmup_ratio))


def build_optimizer(model: Any, lr: float, weight_decay: float, total_steps: int, warmup_ratio: float,
                    min_lr_ratio: float) -> tuple[Any, Any]:
    """(AdamW, LambdaLR): weight decay on weight matrices only (not biases or LayerNorm)."""
    import torch

    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "norm" in name.lower() else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=lr)
    warm = warmup_steps(total_steps, warmup_ratio)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, total_steps, warm, min_lr_ratio))
    return opt, sched
