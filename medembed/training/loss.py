"""The contrastive objective: InfoNCE over in-batch and mined hard negatives (sentence-transformers' MNRL).

Queries and passages are tokenized separately (own prompt, own max length) and embedded in one
forward call of :class:`DualEncoder`, the module DDP wraps, so DDP sees one forward per step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn


class DualEncoder(nn.Module):
    """One shared SentenceTransformer embedding a query batch and a passage batch."""

    def __init__(self, st_model: nn.Module):
        super().__init__()
        self.st = st_model

    def forward(self, queries: dict[str, torch.Tensor], passages: dict[str, torch.Tensor]
                ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.st(queries)["sentence_embedding"], self.st(passages)["sentence_embedding"]


def tokenize(st_model: Any, texts: Sequence[str], prompt: str, max_length: int, device: Any) -> dict[str, Any]:
    """Token ids of ``prompt + text`` for each text, truncated to ``max_length`` tokens, on ``device``."""
    enc = st_model.tokenizer([prompt + t for t in texts], padding=True, truncation=True, max_length=max_length,
                             return_tensors="pt")
    return {k: v.to(device) for k, v in enc.items()}


def build_loss(st_model: Any, temperature: float, gather_across_workers: bool) -> nn.Module:
    """sentence-transformers' MultipleNegativesRankingLoss with ``scale = 1 / temperature``."""
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    return MultipleNegativesRankingLoss(st_model, scale=1.0 / temperature, gather_across_devices=gather_across_workers)


def contrastive_loss(loss_fn: nn.Module, q_emb: torch.Tensor, d_emb: torch.Tensor, num_negatives: int
                     ) -> torch.Tensor:
    """Loss of a batch whose passage embeddings are ``[positives; 1st negatives; 2nd negatives; ...]``."""
    b = q_emb.size(0)
    if d_emb.size(0) != b * (1 + num_negatives):
        raise ValueError(f"expected {b * (1 + num_negatives)} passage embeddings, got {d_emb.size(0)}")
    docs = list(d_emb.float().split(b))
    return loss_fn.compute_loss_from_embeddings([q_emb.float(), *docs], None)


def distill_loss(q_emb: torch.Tensor, d_emb: torch.Tensor, teacher: torch.Tensor, temperature: float,
                 teacher_temperature: float) -> torch.Tensor:
    """Listwise distillation: KL(teacher || model) over each query's own [positive, negatives...].

    ``d_emb`` is laid out as for :func:`contrastive_loss`; ``teacher`` is ``[batch, 1 + num_negatives]``
    (the mining scores, positive first). The model's scores are cosines / ``temperature``.
    """
    b, n = teacher.shape
    if d_emb.size(0) != b * n:
        raise ValueError(f"expected {b * n} passage embeddings for teacher scores {tuple(teacher.shape)}, "
                         f"got {d_emb.size(0)}")
    q = nn.functional.normalize(q_emb.float(), dim=-1)
    d = nn.functional.normalize(d_emb.float(), dim=-1).view(n, b, -1)
    student = torch.einsum("bd,nbd->bn", q, d) / temperature
    target = nn.functional.log_softmax(teacher.float().to(student.device) / teacher_temperature, dim=-1)
    return nn.functional.kl_div(nn.functional.log_softmax(student, dim=-1), target, log_target=True,
                                reduction="batchmean")


def passage_texts(positives: Sequence[str], negatives: Sequence[Sequence[str]], num_negatives: int) -> list[str]:
    """Passages in the order :func:`contrastive_loss` expects: all positives, then each negative rank."""
    out = list(positives)
    for j in range(num_negatives):
        out.extend(n[j] for n in negatives)
    return out
