"""The Ray Train worker loop: one DDP rank trains on its shard of each planned global batch.

Everything a restarted worker needs is in the checkpoint it reports every ``checkpoint_every``
steps: model, optimizer and scheduler state, the next step (the data position: the batch plan is
fixed by seed, so step ``s`` is batch ``s``), the plan fingerprint and the steps each attempt
started at. ``ray.train.get_checkpoint()`` hands it back after a worker died (FailureConfig) or
after the whole job was started again with the same run name.
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

STATE_FILE = "state.pt"
STEP_KEY = "train_step"  # rank 0's step, reported to the driver's counters actor (config["progress"])


def staging_dir(storage_path: str, run_name: str) -> Path:
    """Where rank 0 writes a checkpoint before ``ray.train.report`` copies it to storage.

    One directory per run (its name and storage: two runs of the same name elsewhere never share one),
    emptied when each attempt starts and after each report: a worker killed while saving (a fault, a
    killed job) leaves at most one stale checkpoint behind on its node, never one per kill.
    """
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", run_name) or "run"
    where = hashlib.sha256(storage_path.encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / "medembed-checkpoint-staging" / f"{safe}-{where}"


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_state(checkpoint: Any) -> dict[str, Any] | None:
    """The training state of a Ray checkpoint, or None."""
    import torch

    if checkpoint is None:
        return None
    with checkpoint.as_directory() as d:
        return torch.load(Path(d) / STATE_FILE, map_location="cpu", weights_only=False)


def _mean_across_workers(value: float) -> float:
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item()) / dist.get_world_size()


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train entry point; ``config`` is built by :func:`medembed.training.trainer.loop_config`."""
    import ray
    import ray.train
    import ray.train.torch
    from sentence_transformers import SentenceTransformer

    from medembed.mining import columns as M
    from medembed.runtime.memory import kept_from_start
    from medembed.runtime.tracking import StepLogger
    from medembed.training.batching import shard
    from medembed.training.config import TrainConfig
    from medembed.training.loss import DualEncoder, build_loss
    from medembed.training.schedule import build_optimizer
    from medembed.training.step import autocast_bf16, cpu_bf16_is_fast, prepare_cpu_worker, train_step

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    tc = TrainConfig(**config["train"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    seed_everything(tc.seed + rank)
    device = ray.train.torch.get_device()
    memory_kept = device.type == "cpu" and prepare_cpu_worker(tc) and kept_from_start()
    staging = staging_dir(config["storage_path"], ctx.get_experiment_name())
    if rank == 0:
        shutil.rmtree(staging, ignore_errors=True)
    if rank == 0 and autocast_bf16(tc, device) and device.type == "cpu" and not cpu_bf16_is_fast():
        log.warning("train.cpu_bf16 on a CPU without AVX-512 BF16 or AMX: bfloat16 is emulated there and slower "
                    "than float32; set train.cpu_bf16=false")

    table = ray.get(config["data"])
    queries, positives = table[M.QUERY].to_pylist(), table[M.POSITIVE].to_pylist()
    negatives = table[M.NEGATIVES].to_pylist()
    teacher = None
    if tc.distill_weight:
        from medembed.training.data import teacher_scores

        pos_s, neg_s = teacher_scores(table, tc.num_negatives)
        teacher = [[p, *n] for p, n in zip(pos_s, neg_s)]
    plan: list[list[int]] = config["plan"]
    total = len(plan)
    prompts = config["prompts"]

    st = SentenceTransformer(config["model_path"], device="cpu")
    st.max_seq_length = max(tc.query_max_length, tc.passage_max_length)
    state = load_state(ray.train.get_checkpoint())
    start = 0
    attempts: list[int] = []
    first_loss: float | None = None
    if state is not None:
        if state["plan_fingerprint"] != config["plan_fingerprint"]:
            raise RuntimeError(f"checkpoint at step {state['step']} was written for another batch plan "
                               f"({state['plan_fingerprint']} != {config['plan_fingerprint']}): triplets or "
                               "train settings changed; use a new output.run_name")
        st.load_state_dict(state["model"])
        start, attempts, first_loss = int(state["step"]), list(state["attempts"]), state.get("first_loss")
    attempts.append(start)
    # static_graph: the same parameters (all but e.g. BERT's unused pooler) get gradients every step
    model = ray.train.torch.prepare_model(DualEncoder(st), parallel_strategy_kwargs={"static_graph": True})
    st = (model.module if hasattr(model, "module") else model).st
    opt, sched = build_optimizer(st, tc.learning_rate, tc.weight_decay, total, tc.warmup_ratio, tc.min_lr_ratio)
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        log.info("rank %d resumed at step %d of %d", rank, start, total)
    loss_fn = build_loss(st, tc.temperature, tc.gather_across_workers and world > 1)
    model.train()

    window: list[float] = []
    t0 = time.perf_counter()
    steps_log = StepLogger(config.get("mlflow") if rank == 0 else None)  # MLflow, when the job tracks
    for step in range(start, total):
        rows = shard(plan[step], rank, world)
        loss = train_step(model, st, loss_fn, opt, sched, [queries[i] for i in rows], [positives[i] for i in rows],
                          [negatives[i] for i in rows], prompts, tc, device,
                          [teacher[i] for i in rows] if teacher is not None else None)
        window.append(loss)
        if first_loss is None:
            first_loss = _mean_across_workers(window[0])
        done = step + 1
        if rank == 0 and config.get("progress") is not None:  # the driver's progress bar (fire and forget)
            config["progress"].put.remote(STEP_KEY, {STEP_KEY: done})
        if rank == 0 and (done % tc.log_every == 0 or done == total):
            log.info("step %d/%d loss %.4f lr %.2e (%.2f s/step)", done, total, window[-1], sched.get_last_lr()[0],
                     (time.perf_counter() - t0) / (done - start))
            steps_log.log(done, {"train/loss": window[-1], "train/lr": sched.get_last_lr()[0],
                                 "train/steps_per_s": (done - start) / (time.perf_counter() - t0)})
        if done % tc.checkpoint_every == 0 or done == total:
            elapsed = time.perf_counter() - t0
            metrics = {"step": done, "total_steps": total, "loss": _mean_across_workers(sum(window) / len(window)),
                       "first_loss": first_loss, "lr": sched.get_last_lr()[0], "attempt_start_steps": attempts,
                       "resumed_from_step": attempts[-1], "attempt_steps_per_s": (done - start) / elapsed,
                       "cpu_memory_kept": memory_kept}
            window = []
            _report(metrics, rank, staging, {"model": st.state_dict(), "optimizer": opt.state_dict(),
                                    "scheduler": sched.state_dict(), "step": done, "attempts": attempts,
                                    "first_loss": first_loss, "plan_fingerprint": config["plan_fingerprint"]})


def _report(metrics: dict[str, Any], rank: int, staging: Path, state: dict[str, Any]) -> None:
    """Every rank reports (a barrier); rank 0 attaches the checkpoint, staged in ``staging``."""
    import ray.train
    import torch

    if rank != 0:
        ray.train.report(metrics)
        return
    staging.mkdir(parents=True, exist_ok=True)
    try:
        torch.save(state, staging / STATE_FILE)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(str(staging)))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        try:
            staging.parent.rmdir()  # the last run out leaves no empty folder behind
        except OSError:
            pass
