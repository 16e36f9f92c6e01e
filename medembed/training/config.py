"""Configuration of contrastive fine-tuning (`jobs/train.py`, `medembed train`).

Imports no Ray, LanceDB or torch.
"""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from medembed.config import JobConfig, ModelConfig, OutputConfig, _Model


class TripletsConfig(_Model):
    path: str = Field("./output/triplets", description="a `mine-negatives` output folder <dir>/<run id>/triplets "
                      "(must hold _SUCCESS.json), or any nested-triplets Parquet file or folder")
    limit: int | None = Field(None, gt=0, description="use at most this many triplets (debugging)")


class TrainConfig(_Model):
    """Hyperparameters and the distributed layout of one fine-tuning run."""

    num_workers: int = Field(2, gt=0, description="Ray Train workers (DDP ranks)")
    use_gpu: bool = Field(False, description="one GPU per worker (clusters); CPU workers otherwise")
    cpus_per_worker: float = Field(1.0, gt=0)
    epochs: int = Field(1, gt=0)
    max_steps: int | None = Field(None, gt=0, description="stop after this many optimizer steps (debugging)")
    batch_size: int = Field(32, gt=1, description="queries per worker per step; the global batch is "
                            "batch_size * num_workers")
    num_negatives: int = Field(3, ge=0, description="mined hard negatives per query (hardest first); "
                               "triplets with fewer are left out of training and counted")
    temperature: float = Field(0.02, gt=0, description="InfoNCE temperature (scale = 1/temperature); "
                               "0.02 like FlagEmbedding")
    gather_across_workers: bool = Field(True, description="every query also sees the other workers' "
                                        "passages as negatives (all-gather with gradients)")
    distill_weight: float = Field(0.0, ge=0, description="weight of a listwise distillation term added to "
                                  "InfoNCE: KL divergence from the teacher's softmax over each query's positive and "
                                  "hard negatives (their mining scores / teacher_temperature) to the model's; "
                                  "0: off. Mine with mining.teacher=hybrid to distil the BM25 + dense ranking")
    teacher_temperature: float = Field(0.5, gt=0, description="temperature of the teacher's scores in the "
                                       "distillation term (0.5 suits hybrid z-scores; ~0.02 suits cosine)")
    query_max_length: int = Field(64, gt=4, description="tokens per query (prompt included)")
    passage_max_length: int = Field(256, gt=4, description="tokens per passage (prompt included)")
    learning_rate: float = Field(2e-5, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="share of the steps with linear warmup")
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="cosine decay floor as a share of learning_rate")
    max_grad_norm: float | None = Field(1.0, gt=0, description="gradient clipping; null: off")
    bf16: bool = Field(True, description="bfloat16 autocast on GPU workers")
    cpu_bf16: bool = Field(False, description="bfloat16 autocast on CPU workers too (with bf16 on): 1.9x the steps/s "
                           "on a CPU with AVX-512 BF16 or AMX (MiniLM, 2 cores); slower without them (a warning "
                           "says so); weights, optimizer state and the losses stay float32")
    cpu_keep_memory: bool = Field(True, description="CPU workers keep freed memory for the next step (glibc "
                                  "settings in the worker's environment, runtime/memory.py) instead of mapping and "
                                  "zero-filling it again: 1.4-1.5x the steps/s of MiniLM at 256 tokens; memory "
                                  "stays at one step's peak")
    seed: int = 42
    dev_fraction: float = Field(0.1, ge=0, lt=1, description="share of source notes (by hash of note id) "
                                "whose triplets form the dev split")
    checkpoint_every: int = Field(50, gt=0, description="report a checkpoint every this many steps")
    checkpoints_to_keep: int = Field(2, gt=0)
    max_failures: int = Field(2, ge=0, description="worker-group restarts from the latest checkpoint")
    log_every: int = Field(10, gt=0)
    interpolate: list[float] | None = Field(
        None, description="weight interpolation with the base model: merged = a*tuned + (1-a)*base, a chosen "
        "from this grid by dev nDCG@10 (e.g. [0.25, 0.5, 0.75, 1.0]); null: keep the tuned weights")
    dev_eval_max_queries: int = Field(2000, gt=0, description="dev queries used to pick the interpolation weight")

    @field_validator("interpolate")
    @classmethod
    def _grid(cls, v: list[float] | None) -> list[float] | None:
        if v is not None:
            if not v:
                raise ValueError("train.interpolate must be null or a non-empty list")
            if any(not 0.0 <= a <= 1.0 for a in v):
                raise ValueError("train.interpolate weights must lie in [0, 1]")
        return v


class TrainOutputConfig(OutputConfig):
    dir: str = Field("./output/models", description="model goes to <dir>/<run id>/model; Ray Train "
                     "checkpoints to <dir>/<run id>/checkpoints (same run_name: resume)")
    model_name: str | None = Field(None, description="model id recorded with every vector; default "
                                   "medembed-<base model>-<run id>")


class TrainJobConfig(JobConfig):
    """Config of `jobs/train.py` / `medembed train`."""

    triplets: TripletsConfig = Field(default_factory=TripletsConfig)
    model: ModelConfig = Field(default_factory=lambda: ModelConfig(name="BAAI/bge-base-en-v1.5"))
    train: TrainConfig = Field(default_factory=TrainConfig)
    output: TrainOutputConfig = Field(default_factory=TrainOutputConfig)

    @model_validator(mode="after")
    def _dev_split(self) -> TrainJobConfig:
        if self.train.distill_weight and self.train.num_negatives == 0:
            raise ValueError("train.distill_weight > 0 distils over the mined negatives: set train.num_negatives > 0")
        if self.train.interpolate and self.train.dev_fraction == 0:
            raise ValueError("train.interpolate needs a dev split: set train.dev_fraction > 0")
        return self
