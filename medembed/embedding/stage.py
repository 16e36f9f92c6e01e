"""The embedding stage's wiring helpers shared by the jobs that embed (embed, reembed): chunk parameters from
the model card, a resource check that fails fast, and the embedder actor pool over a Ray Dataset of chunks."""

from __future__ import annotations

import logging
import os

import ray

from medembed.config import EmbedJobConfig
from medembed.embedding.card import ModelCard
from medembed.embedding.chunking import ChunkParams, load_tokenizer
from medembed.embedding.embedder import ChunkEmbedder
from medembed.embedding.encoders import encoder_actor_kwargs

log = logging.getLogger(__name__)


def chunk_params(cfg: EmbedJobConfig, model: ModelCard) -> ChunkParams:
    seq = model.max_seq_length
    max_tokens = min(cfg.chunking.max_tokens or seq, seq)
    prompt_tokens = 0
    if model.prompts.document:
        prompt_tokens = len(load_tokenizer(model.path)(model.prompts.document, add_special_tokens=False)["input_ids"])
    return ChunkParams(model.path, max_tokens, cfg.chunking.overlap_tokens, prompt_tokens)


def check_resources(cfg: EmbedJobConfig) -> None:
    """Refuse a plan the cluster cannot run (it would wait forever), naming the fields to change."""
    have = ray.cluster_resources()
    need_cpu = cfg.embed.num_actors * cfg.embed.num_cpus
    if cfg.embed.num_gpus or cfg.embed.num_cpus != cfg.chunking.num_cpus:
        need_cpu += cfg.chunking.num_cpus  # read+chunk run as separate tasks, not fused into the embedder
    need_gpu = cfg.embed.num_actors * cfg.embed.num_gpus
    problems = []
    if have.get("CPU", 0) < need_cpu:
        problems.append(f"{need_cpu:g} CPUs (embed.num_actors x embed.num_cpus + chunking.num_cpus) but the cluster "
                        f"has {have.get('CPU', 0):g}")
    if have.get("GPU", 0) < need_gpu:
        problems.append(f"{need_gpu:g} GPUs (embed.num_actors x embed.num_gpus) but the cluster has "
                        f"{have.get('GPU', 0):g}")
    if problems:
        msg = "the embedding plan needs " + "; and ".join(problems)
        if cfg.ray.address or os.environ.get("RAY_ADDRESS"):
            log.warning("%s (waiting for the autoscaler, if any)", msg)
        else:
            raise RuntimeError(msg)


def embedding_stage(chunks: ray.data.Dataset, cfg: EmbedJobConfig, card: ModelCard) -> ray.data.Dataset:
    """The embedder actor pool over chunk rows (``num_gpus`` per actor on clusters)."""
    return chunks.map_batches(
        ChunkEmbedder, fn_constructor_kwargs=encoder_actor_kwargs(cfg.model, cfg.embed, cfg.s3, card),
        batch_size=cfg.embed.batch_size, batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=cfg.embed.num_actors),
        num_gpus=cfg.embed.num_gpus, num_cpus=cfg.embed.num_cpus)
