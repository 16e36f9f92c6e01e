"""One optimizer step on a batch of triplet rows, shared by the Ray Train worker loop and plain loops.

No Ray here: the same function runs inside a Ray Train worker (``model`` wrapped in DDP) and in a
single process (the overhead benchmark), so the two differ only by what Ray Train adds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from medembed.training.loss import contrastive_loss, distill_loss, passage_texts, tokenize


def autocast_bf16(tc: Any, device: torch.device) -> bool:
    """Whether a step on ``device`` runs under bfloat16 autocast: ``train.bf16`` on GPUs, and on CPUs only
    with ``train.cpu_bf16`` too."""
    return bool(tc.bf16 and (device.type == "cuda" or (device.type == "cpu" and tc.cpu_bf16)))


def cpu_bf16_is_fast() -> bool:
    """Whether this CPU has native bfloat16 matrix instructions (AVX-512 BF16 or AMX); without them
    bfloat16 autocast is emulated and slower than float32."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def prepare_cpu_worker(tc: Any) -> bool:
    """Set a CPU worker up for training: ``train.cpus_per_worker`` torch threads and, with
    ``train.cpu_keep_memory``, freed memory kept for the next step. Returns whether memory is kept."""
    from medembed.runtime.memory import keep_freed_memory

    torch.set_num_threads(max(1, int(tc.cpus_per_worker)))
    return bool(tc.cpu_keep_memory) and keep_freed_memory()


def train_step(model: torch.nn.Module, st: Any, loss_fn: torch.nn.Module, opt: torch.optim.Optimizer, sched: Any,
               queries: Sequence[str], positives: Sequence[str], negatives: Sequence[Sequence[str]],
               prompts: Mapping[str, str], tc: Any, device: torch.device,
               teacher: Sequence[Sequence[float]] | None = None) -> float:
    """Tokenize (own prompt and max length per side), embed, InfoNCE, backward, clip, AdamW + schedule step.

    ``model`` is the :class:`~medembed.training.loss.DualEncoder` (or its DDP wrapper), ``st`` the
    SentenceTransformer inside it, ``tc`` a ``TrainConfig``. ``teacher``: per query the mining scores of
    [positive, negatives...], needed when ``tc.distill_weight`` > 0. Returns the loss of the step.
    """
    q = tokenize(st, queries, prompts["query"], tc.query_max_length, device)
    d = tokenize(st, passage_texts(positives, negatives, tc.num_negatives), prompts["document"],
                 tc.passage_max_length, device)
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=autocast_bf16(tc, device)):
        q_emb, d_emb = model(q, d)
    loss = contrastive_loss(loss_fn, q_emb, d_emb, tc.num_negatives)
    if tc.distill_weight:
        if teacher is None:
            raise ValueError("train.distill_weight > 0 needs the teacher scores of the batch")
        loss = loss + tc.distill_weight * distill_loss(q_emb, d_emb, torch.tensor(teacher), tc.temperature,
                                                       tc.teacher_temperature)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if tc.max_grad_norm:
        torch.nn.utils.clip_grad_norm_(model.parameters(), tc.max_grad_norm)
    opt.step()
    sched.step()
    return float(loss.detach())
