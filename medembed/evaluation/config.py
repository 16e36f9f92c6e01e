"""Configuration of retrieval evaluation (`jobs/evaluate.py`, `medembed evaluate`).

Imports no Ray, LanceDB or torch.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from medembed.config import EmbedConfig, JobConfig, ModelConfig, OutputConfig, _Model
from medembed.evaluation.metrics import DEFAULT_K
from medembed.index.indexes import DEFAULT_NPROBES, DEFAULT_REFINE_FACTOR


class EvalModelConfig(ModelConfig):
    """A model to evaluate (any ``model.name`` medembed takes), with the label it gets in reports."""

    label: str | None = Field(None, description="name in results and the comparison; default: the model id")

    def model_config_only(self) -> ModelConfig:
        """The plain ``ModelConfig`` (without ``label``), as encoders and actors take it."""
        return ModelConfig.model_validate(self.model_dump(exclude={"label"}))


class BeirDatasetConfig(_Model):
    """One split of a BEIR-layout folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv)."""

    name: str = Field(..., pattern=r"^[A-Za-z0-9_.-]+$")
    uri: str = Field(..., description="BEIR folder, local or s3://")
    split: str = "test"


class PairsDevConfig(_Model):
    """The held-out dev notes of a pairs (or nested triplets) Parquet source, as a retrieval set.

    A note is in the dev split when :func:`medembed.evaluation.splits.is_dev_note` says so (a hash of the
    note id below ``dev_fraction``, the trainer's rule); ``dev_fraction: 1.0`` takes every row (a dev file).
    """

    path: str = Field(..., description="pairs Parquet file/folder, a generate-pairs output_dir or nested triplets")
    name: str = Field("pairs-dev", pattern=r"^[A-Za-z0-9_.-]+$")
    dev_fraction: float = Field(0.1, gt=0, le=1, description="as train.dev_fraction of the model's training run")
    limit: int | None = Field(None, gt=0, description="evaluate at most this many dev queries")


class EvalStoreConfig(_Model):
    uri: str = Field("./output/evaluate/lancedb", description="LanceDB database of the per-(model, dataset) corpus "
                     "tables; a complete table of the same model revision and corpus is reused")
    ann_min_rows: int = Field(100_000, ge=0, description="build the vector index (store.ann_index of the embed job's "
                              "default) once a corpus table has this many rows; a reused table gets it then too")
    commit_every: int = Field(64, gt=0)
    nprobes: int = Field(DEFAULT_NPROBES, gt=0, description="IVF partitions probed per query (retrieval: ann)")
    refine_factor: int | None = Field(DEFAULT_REFINE_FACTOR, gt=0, description="retrieval ann: re-rank "
                                      "refine_factor*k index hits with exact scores")


class EvalOutputConfig(OutputConfig):
    dir: str = Field("./output/evaluate", description="results go to <dir>/<run id>/ (results/, comparison.md, "
                     "ndcg_at_10.png)")


class EvaluateJobConfig(JobConfig):
    """Config of `jobs/evaluate.py` / `medembed evaluate`."""

    models: list[EvalModelConfig] = Field(default_factory=lambda: [EvalModelConfig()], min_length=1,
                                          description="the first is the baseline of the comparison")
    datasets: list[BeirDatasetConfig] = Field(default_factory=list)
    pairs_dev: PairsDevConfig | None = None
    k_values: list[int] = Field(default_factory=lambda: list(DEFAULT_K), min_length=1)
    retrieval: Literal["exact", "ann"] = "exact"
    main_metric: str = Field("ndcg_at_10", description="metric of the comparison table and chart")
    query_batch_size: int = Field(256, gt=0)
    embed: EmbedConfig = Field(default_factory=EmbedConfig)
    store: EvalStoreConfig = Field(default_factory=EvalStoreConfig)
    output: EvalOutputConfig = Field(default_factory=EvalOutputConfig)

    @field_validator("k_values")
    @classmethod
    def _positive_sorted(cls, v: list[int]) -> list[int]:
        if any(k <= 0 for k in v):
            raise ValueError("k_values must be positive")
        return sorted(set(v))

    @model_validator(mode="after")
    def _consistent(self) -> EvaluateJobConfig:
        if not self.datasets and self.pairs_dev is None:
            raise ValueError("nothing to evaluate: give datasets and/or pairs_dev")
        names = [d.name for d in self.datasets] + ([self.pairs_dev.name] if self.pairs_dev else [])
        if len(names) != len(set(names)):
            raise ValueError(f"dataset names must be unique, got {names}")
        labels = [m.label for m in self.models if m.label]
        if len(labels) != len(set(labels)):
            raise ValueError(f"model labels must be unique, got {labels}")
        metric, _, k = self.main_metric.partition("_at_")
        if metric not in ("ndcg", "map", "recall", "precision", "mrr") or not k.isdigit() or int(k) not in self.k_values:
            raise ValueError(f"main_metric {self.main_metric!r} must be <ndcg|map|recall|precision|mrr>_at_<k> "
                             f"with k in k_values {self.k_values}")
        return self
