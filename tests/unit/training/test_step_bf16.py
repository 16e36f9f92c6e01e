"""bfloat16 autocast in a training step: on GPUs with ``train.bf16``, on CPUs only with ``train.cpu_bf16`` too."""

from __future__ import annotations

import math

import pytest
import torch

from medembed.training.config import TrainConfig
from medembed.training.step import autocast_bf16

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.mark.parametrize("bf16, cpu_bf16, device, expected", [
    (True, False, CUDA, True), (False, True, CUDA, False), (True, False, CPU, False), (True, True, CPU, True),
    (False, True, CPU, False)])
def test_when_a_step_autocasts(bf16, cpu_bf16, device, expected):
    assert autocast_bf16(TrainConfig(bf16=bf16, cpu_bf16=cpu_bf16), device) is expected


@pytest.mark.parametrize("cpu_bf16", [False, True])
def test_a_cpu_step_runs_its_matmuls_in_the_chosen_dtype_and_keeps_float32_weights(bundled_model_path, cpu_bf16):
    from sentence_transformers import SentenceTransformer

    from medembed.training.loss import DualEncoder, build_loss
    from medembed.training.schedule import build_optimizer
    from medembed.training.step import train_step

    torch.manual_seed(0)
    st = SentenceTransformer(bundled_model_path, device="cpu")
    tc = TrainConfig(cpu_bf16=cpu_bf16, num_negatives=1, query_max_length=16, passage_max_length=32)
    seen: list[torch.dtype] = []
    st[0].auto_model.encoder.layer[0].intermediate.dense.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    opt, sched = build_optimizer(st, 1e-4, 0.0, 10, 0.0, 0.0)
    before = st[0].auto_model.encoder.layer[0].intermediate.dense.weight.detach().clone()
    loss = train_step(DualEncoder(st), st, build_loss(st, 0.05, False), opt, sched,
                      ["chest pain after exercise", "fever and rash in a child"],
                      ["exertional angina in a 60-year-old man", "measles presenting with fever and rash"],
                      [["a fractured wrist"], ["type 2 diabetes follow-up"]], {"query": "", "document": ""}, tc, CPU)
    weight = st[0].auto_model.encoder.layer[0].intermediate.dense.weight
    assert seen == [torch.bfloat16 if cpu_bf16 else torch.float32] * 2  # the query pass and the passage pass
    assert weight.dtype == torch.float32 and not torch.equal(weight, before)  # fp32 master weights, updated
    assert math.isfinite(loss) and loss > 0
