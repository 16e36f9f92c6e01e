"""The embedding stage's wiring helpers shared by the jobs that embed (embed, reembed): chunk parameters from
the model card, a resource check that fails fast, and the embedder actor pool over a Ray Dataset of chunks."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import ray

from medembed.config import EmbedJobConfig
from medembed.embedding.card import ModelCard
from medembed.embedding.chunking import ChunkParams, load_tokenizer
from medembed.embedding.embedder import ChunkEmbedder
from medembed.embedding.encoders import encoder_actor_kwargs
from medembed.index.changes import chunk_selected_documents
from medembed.runtime.memory import cpu_actor_options
from medembed.runtime.ray_setup import require_resources
from medembed.runtime.storage import DEFAULT_STORAGE, Storage


def chunk_params(cfg: EmbedJobConfig, model: ModelCard) -> ChunkParams:
    seq = model.max_seq_length
    max_tokens = min(cfg.chunking.max_tokens or seq, seq)
    prompt_tokens = 0
    if model.prompts.document:
        prompt_tokens = len(load_tokenizer(model.path)(model.prompts.document, add_special_tokens=False)["input_ids"])
    return ChunkParams(model.path, max_tokens, cfg.chunking.overlap_tokens, prompt_tokens,
                       tokenizer_id=f"{model.model_id}@{model.revision}")


def chunk_new_documents(batch: pa.Table, params: ChunkParams, embed_sets: Any = None, counters: Any = None) -> pa.Table:
    """Ray Data UDF: chunk the documents the change detection selected (``embed_sets``; None: all of them);
    the others are dropped before tokenization (``index.changes.chunk_selected_documents``)."""
    return chunk_selected_documents(batch, params, embed_sets, counters)


def check_resources(cfg: EmbedJobConfig) -> None:
    """Refuse an embedding plan the cluster cannot place (see ``runtime.ray_setup.require_resources``)."""
    need_cpu = cfg.embed.num_actors * cfg.embed.num_cpus
    if cfg.embed.num_gpus or cfg.embed.num_cpus != cfg.chunking.num_cpus:
        need_cpu += cfg.chunking.num_cpus  # read+chunk run as separate tasks, not fused into the embedder
    require_resources("the embedding plan", {
        "CPU": (need_cpu, "embed.num_actors x embed.num_cpus + chunking.num_cpus"),
        "GPU": (cfg.embed.num_actors * cfg.embed.num_gpus, "embed.num_actors x embed.num_gpus")}, cfg.ray,
        each={"CPU": (cfg.embed.num_cpus, "embed.num_cpus"), "GPU": (cfg.embed.num_gpus, "embed.num_gpus")})


def embedding_stage(chunks: ray.data.Dataset, cfg: EmbedJobConfig, card: ModelCard,
                    storage: Storage = DEFAULT_STORAGE) -> ray.data.Dataset:
    """The embedder actor pool over chunk rows (``num_gpus`` per actor on clusters)."""
    return chunks.map_batches(
        ChunkEmbedder, fn_constructor_kwargs=encoder_actor_kwargs(cfg.model, cfg.embed, storage, card),
        batch_size=cfg.embed.batch_size, batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=cfg.embed.num_actors),
        num_gpus=cfg.embed.num_gpus, num_cpus=cfg.embed.num_cpus,
        **cpu_actor_options(cfg.embed.num_gpus, cfg.embed.cpu_keep_memory))
