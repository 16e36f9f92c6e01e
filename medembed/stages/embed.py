"""The embed stage: the embedder as one object, as Ray's ``ray.llm`` batch stages bundle a UDF with its
constructor arguments, ``map_batches`` arguments and the input columns it needs.

Every place that embeds chunk rows on a Ray actor pool (the embed and reembed jobs, evaluation's corpus
tables, mining's candidate table) builds an :class:`EmbedStage` from its model and ``embed`` configs and
applies it; the one-actor paths build their worker from the same constructor arguments. Also here: the
resource check of an embedding plan. The chunking UDF that drops documents the change detection did not
select is ``index.changes.chunk_selected_documents``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import ray

from medembed.config import EmbedConfig, EmbedJobConfig, ModelConfig
from medembed.embedding.card import ModelCard
from medembed.embedding.embedder import ChunkEmbedder
from medembed.embedding.encoders import encoder_actor_kwargs
from medembed.runtime.memory import cpu_actor_options
from medembed.runtime.ray_setup import require_resources
from medembed.runtime.storage import Storage


@dataclass(frozen=True)
class EmbedStage:
    """The embedder callable class (``fn``), its constructor kwargs (plain data: they rebuild the encoder in
    each actor), the ``map_batches`` kwargs (batch size, actor pool, CPUs/GPUs per actor, memory options)
    and the columns its input must have."""

    fn_constructor_kwargs: dict[str, Any]
    map_batches_kwargs: dict[str, Any]
    fn: type = ChunkEmbedder
    input_columns: tuple[str, ...] = field(default=ChunkEmbedder.REQUIRED)

    @classmethod
    def create(cls, model_cfg: ModelConfig, embed: EmbedConfig, storage: Storage, card: ModelCard) -> EmbedStage:
        """The stage of ``card`` with the pool of ``embed`` (``embed.num_actors`` actors of ``embed.num_cpus``
        CPUs and ``embed.num_gpus`` GPUs, ``embed.batch_size`` rows per call)."""
        return cls(fn_constructor_kwargs=encoder_actor_kwargs(model_cfg, embed, storage, card),
                   map_batches_kwargs={"batch_size": embed.batch_size, "batch_format": "pyarrow",
                                       "compute": ray.data.ActorPoolStrategy(size=embed.num_actors),
                                       "num_gpus": embed.num_gpus, "num_cpus": embed.num_cpus,
                                       **cpu_actor_options(embed.num_gpus, embed.cpu_keep_memory)})

    @property
    def batch_size(self) -> int:
        return self.map_batches_kwargs["batch_size"]

    def check_input(self, columns: Sequence[str]) -> None:
        """Fail on the driver, before any actor starts, when the input lacks a column the embedder reads."""
        missing = [c for c in self.input_columns if c not in columns]
        if missing:
            raise KeyError(f"embedder input lacks columns {missing}; got {list(columns)}")

    def __call__(self, rows: ray.data.Dataset) -> ray.data.Dataset:
        """The embedder pool over the chunk rows of ``rows`` (lazy); each actor checks its batches' columns."""
        return rows.map_batches(self.fn, fn_constructor_kwargs=self.fn_constructor_kwargs, **self.map_batches_kwargs)

    def over_table(self, rows: pa.Table) -> ray.data.Dataset:
        """The pool over an in-memory table of chunk rows (checked here), cut into zero-copy blocks of one batch."""
        self.check_input(rows.column_names)
        step = self.batch_size
        blocks = [rows.slice(i, step) for i in range(0, rows.num_rows, step)] or [rows]
        return self(ray.data.from_arrow(blocks))


def check_resources(cfg: EmbedJobConfig) -> None:
    """Refuse an embedding plan the cluster cannot place (see ``runtime.ray_setup.require_resources``)."""
    need_cpu = cfg.embed.num_actors * cfg.embed.num_cpus
    if cfg.embed.num_gpus or cfg.embed.num_cpus != cfg.chunking.num_cpus:
        need_cpu += cfg.chunking.num_cpus  # read+chunk run as separate tasks, not fused into the embedder
    require_resources("the embedding plan", {
        "CPU": (need_cpu, "embed.num_actors x embed.num_cpus + chunking.num_cpus"),
        "GPU": (cfg.embed.num_actors * cfg.embed.num_gpus, "embed.num_actors x embed.num_gpus")}, cfg.ray,
        each={"CPU": (cfg.embed.num_cpus, "embed.num_cpus"), "GPU": (cfg.embed.num_gpus, "embed.num_gpus")})
