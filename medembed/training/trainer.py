"""Driver side of a fine-tuning run: the batch plan, the Ray Train ``TorchTrainer``, its result.

The run lives at ``<storage>/<name>`` (Ray Train V2): starting it again with the same name and
storage path resumes from its latest checkpoint; FailureConfig restarts a worker group that lost a
worker from the latest checkpoint too.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import ray

from medembed.config import RayConfig
from medembed.embedding.card import ModelCard
from medembed.mining import columns as M
from medembed.runtime.ray_setup import require_resources
from medembed.training.batching import BatchPlan, plan_batches
from medembed.training.config import TrainConfig
from medembed.training.loop import STEP_KEY, load_state, train_loop_per_worker

log = logging.getLogger(__name__)


@dataclass
class FitResult:
    state: dict[str, Any]  # the final checkpoint's training state (model weights under "model")
    metrics: dict[str, Any]  # the last report of rank 0
    checkpoint_path: str
    plan: BatchPlan


def make_plan(train: pa.Table, tc: TrainConfig) -> BatchPlan:
    return plan_batches(train[M.POSITIVE_ID].to_pylist(), train[M.QUERY_NOTE_ID].to_pylist(), tc.batch_size,
                        tc.num_workers, tc.seed, tc.epochs, tc.max_steps)


def storage_path(output_dir: str) -> str:
    """Ray Train wants an absolute local path (or a URI)."""
    return output_dir if "://" in output_dir else os.path.abspath(os.path.expanduser(output_dir))


def check_resources(tc: TrainConfig, ray_cfg: RayConfig) -> None:
    """Refuse a worker group the cluster cannot place (see ``runtime.ray_setup.require_resources``)."""
    require_resources("the training worker group", {
        "CPU": (tc.num_workers * tc.cpus_per_worker, "train.num_workers x train.cpus_per_worker"),
        "GPU": (tc.num_workers if tc.use_gpu else 0, "train.num_workers x train.use_gpu")}, ray_cfg,
        each={"CPU": (tc.cpus_per_worker, "train.cpus_per_worker"), "GPU": (1 if tc.use_gpu else 0, "train.use_gpu")})


def fit(train: pa.Table, tc: TrainConfig, card: ModelCard, output_dir: str, run_name: str,
        mlflow_target: dict[str, str] | None = None) -> FitResult:
    """Train on ``train`` (TRAIN_COLUMNS, negatives cut to ``tc.num_negatives``) with ``tc.num_workers`` workers."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from medembed.runtime.console import Progress, follow
    from medembed.runtime.counters import Counters
    from medembed.runtime.memory import keep_memory_runtime_env

    plan = make_plan(train, tc)
    if not plan.batches:
        raise ValueError(f"no batches: {train.num_rows} training triplets cannot fill a step of "
                         f"{tc.num_workers} workers")
    store = storage_path(output_dir)
    steps = Counters.remote()  # rank 0 reports its step here; the driver's progress bar follows it
    config = {"train": tc.model_dump(), "model_path": card.path, "data": ray.put(train), "plan": plan.batches,
              "plan_fingerprint": plan.fingerprint(), "storage_path": store, "progress": steps,
              "prompts": {"query": card.prompts.query, "document": card.prompts.document},
              "mlflow": mlflow_target}  # rank 0 logs its steps into this MLflow run (runtime.tracking)
    resources = {"CPU": tc.cpus_per_worker, **({"GPU": 1} if tc.use_gpu else {})}
    # set at the worker's start: glibc reads them once, and Ray Train runs the loop in a thread (runtime/memory.py)
    worker_env = keep_memory_runtime_env(tc.use_gpu, tc.cpu_keep_memory)
    trainer = TorchTrainer(
        train_loop_per_worker, train_loop_config=config,
        scaling_config=ScalingConfig(num_workers=tc.num_workers, use_gpu=tc.use_gpu, resources_per_worker=resources),
        run_config=RunConfig(name=run_name, storage_path=store,
                             failure_config=FailureConfig(max_failures=tc.max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=tc.checkpoints_to_keep),
                             worker_runtime_env=worker_env))
    log.info("training %d steps (%s per epoch, %d rows left out of tail batches) on %d workers; run %s/%s",
             len(plan.batches), plan.steps_per_epoch, plan.left_out, tc.num_workers, store, run_name)
    try:
        with Progress("training", total=len(plan.batches), unit="steps") as bar, \
                follow(lambda: ray.get(steps.get.remote(), timeout=10).get(STEP_KEY, 0), bar):
            result = trainer.fit()
    finally:
        ray.kill(steps)
    if result.error is not None:
        raise RuntimeError(f"training failed: {result.error}") from result.error
    if result.checkpoint is None:
        raise RuntimeError("training finished without a checkpoint")
    state = load_state(result.checkpoint)
    if state is None or state["step"] != len(plan.batches):
        raise RuntimeError(f"final checkpoint is at step {state and state['step']}, expected {len(plan.batches)}")
    return FitResult(state=state, metrics=dict(result.metrics or {}), checkpoint_path=result.checkpoint.path,
                     plan=plan)
