"""The bulk embedding pipeline: read -> normalize -> chunk -> embed -> write, streaming on Ray Data.

Stages are wired here and only here; each keeps its resources (batch size, actors, GPUs) apart
from its logic, so the same functions run on a laptop and on a GPU cluster.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import ray
from tqdm import tqdm

from medembed import schema as S
from medembed.chunking import ChunkParams, chunk_batch, load_tokenizer
from medembed.config import EmbedJobConfig
from medembed.counters import Counters
from medembed.embed import ChunkEmbedder
from medembed.ingest import documents_accepted, read_documents, read_quarantine_counts
from medembed.manifest import RunManifest
from medembed.models import ResolvedModel, max_seq_length, resolve_model
from medembed.store import (Committer, FragmentWriter, check_model, existing_signatures, filter_unchanged_docs,
                            finalize_table, open_dataset, table_uri)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TargetTable:
    db_uri: str
    name: str
    uri: str


def target_table(cfg: EmbedJobConfig, model: ResolvedModel) -> TargetTable:
    name = cfg.store.table or f"{cfg.store.corpus_name}__{model.slug}"
    return TargetTable(cfg.store.uri, name, table_uri(cfg.store.uri, name))


def model_dim(model: ResolvedModel) -> int:
    """Embedding dimension from the model's config files (no weights loaded in the driver)."""
    import json
    import os

    for rel in ("1_Pooling/config.json", "config.json"):
        p = os.path.join(model.path, rel)
        if os.path.exists(p):
            with open(p, encoding="utf-8") as f:
                cfg = json.load(f)
            for key in ("word_embedding_dimension", "hidden_size", "d_model"):
                if key in cfg:
                    return int(cfg[key])
    from sentence_transformers import SentenceTransformer  # hub model: resolve once in the driver

    return int(SentenceTransformer(model.path, device="cpu").get_sentence_embedding_dimension())


def chunk_params(cfg: EmbedJobConfig, model: ResolvedModel) -> ChunkParams:
    seq = max_seq_length(model, cfg.model)
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


def chunk_new_documents(batch: pa.Table, params: ChunkParams, known: Any, counters: Any = None) -> pa.Table:
    """Ray Data UDF: chunk documents, then drop those the table already holds unchanged."""
    return filter_unchanged_docs(chunk_batch(batch, params), known, counters)


def embed_corpus(cfg: EmbedJobConfig, manifest: RunManifest) -> dict[str, Any]:
    """Run the pipeline; returns the counts also recorded in ``manifest``."""
    s3 = cfg.s3
    model = resolve_model(cfg.model, s3)
    dim = model_dim(model)
    target = target_table(cfg, model)
    schema = S.table_schema(dim, model.model_id, model.revision)
    manifest.set("model", {"source": model.source, "model_id": model.model_id, "revision": model.revision,
                           "dim": dim, "query_prompt": model.prompts.query, "document_prompt": model.prompts.document})
    manifest.set("table", {"db_uri": target.db_uri, "name": target.name, "uri": target.uri})
    quarantine_dir = manifest.path("quarantine")
    manifest.set("quarantine_dir", quarantine_dir)

    existing = open_dataset(target.uri, s3)
    if existing is not None:
        check_model(existing, model.model_id, dim, target.uri)
    known = existing_signatures(existing)
    rows_before = existing.count_rows() if existing is not None else 0
    params = chunk_params(cfg, model)
    log.info("embedding into %s (model %s, dim %d, %d tokens/chunk, %d rows already there)", target.uri,
             model.model_id, dim, params.max_tokens, rows_before)

    check_resources(cfg)
    docs = read_documents(cfg.input, quarantine_dir, s3)
    counters = Counters.remote()
    chunks = docs.map_batches(chunk_new_documents, batch_format="pyarrow", batch_size=cfg.chunking.batch_size,
                              num_cpus=cfg.chunking.num_cpus,
                              fn_kwargs={"params": params, "known": ray.put(known), "counters": counters})
    embedded = chunks.map_batches(
        ChunkEmbedder,
        fn_constructor_kwargs={"model_cfg": cfg.model.model_dump(), "embed_cfg": cfg.embed.model_dump(),
                               "s3": s3.model_dump()},
        batch_size=cfg.embed.batch_size, batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=cfg.embed.num_actors),
        num_gpus=cfg.embed.num_gpus, num_cpus=cfg.embed.num_cpus)
    written = embedded.map_batches(
        FragmentWriter, fn_constructor_kwargs={"uri": target.uri, "schema": schema, "s3": s3.model_dump()},
        batch_format="pyarrow", batch_size=None, compute=ray.data.ActorPoolStrategy(size=1), num_cpus=0)

    # Ray Data buffers a map stage's output until a block reaches target_max_block_size (128 MiB by
    # default). Our UDF outputs are ~1-2 MiB (one chunking or embedding batch), and read -> chunk -> embed
    # fuse into the embedder actor, so with the default a 5k-chunk corpus left the actor as ONE block at the
    # very end: nothing was written until everything was embedded, and the actor held up to 128 MiB of
    # rows. A small target (this execution only, not the global context) makes every batch flow on.
    written.context.target_max_block_size = int(cfg.embed.block_mib * (1 << 20))
    committer = Committer(target.uri, schema, s3, known, cfg.store.commit_every)
    t0 = time.perf_counter()
    first_row_at = None
    first_rows = first_tokens = 0  # what the first written fragment carried (excluded from steady state)
    with manifest.timed("embed_pipeline"), tqdm(desc="chunks written", unit="chunk", disable=None) as bar:
        for row in written.iter_rows():
            if first_row_at is None:
                first_row_at = time.perf_counter() - t0
                first_rows, first_tokens = int(row["rows"]), int(row["tokens"])
            committer.add(row["fragment"], int(row["rows"]), list(row["doc_ids"]), int(row["tokens"]))
            bar.update(int(row["rows"]))
        committer.flush()
    elapsed = time.perf_counter() - t0
    with manifest.timed("indexes"):
        if committer.stats.rows:
            index_info = finalize_table(target.db_uri, target.name, cfg.store, s3)
        else:  # nothing new: the table (and its indexes) are as the last run left them
            index_info = {"rows": rows_before, "unchanged": True}
    quarantine = read_quarantine_counts(quarantine_dir, s3)
    st = committer.stats
    # steady state: from the first written fragment reaching the driver to the last commit; excludes
    # start-up (actor and model load, the first block's read/chunk/embed), the first fragment and indexes
    steady_s = elapsed - first_row_at if first_row_at is not None else 0.0
    counts = {
        "documents_accepted": documents_accepted(quarantine_dir),
        "quarantined": sum(quarantine.values()),
        "quarantine_by_reason": quarantine,
        "chunks_written": st.rows,
        "documents_replaced": st.documents_replaced,
        "rows_before": rows_before,
        "rows_after": index_info.get("rows", 0),
        "tokens_embedded": st.tokens,
        "fragments": st.fragments,
        "commits": st.commits,
    }
    stage_counts = ray.get(counters.get.remote())
    counts["chunks_total"] = stage_counts.get("chunks_total", 0)
    counts["chunks_unchanged_skipped"] = stage_counts.get("chunks_unchanged", 0)
    counts["documents_unchanged_skipped"] = stage_counts.get("documents_unchanged", 0)
    for k, v in counts.items():
        manifest.count(k, v)
    manifest.set("indexes", index_info)
    manifest.set("throughput", {
        "chunks_per_s": round(st.rows / elapsed, 2) if elapsed else None,
        "tokens_per_s": round(st.tokens / elapsed, 2) if elapsed else None,
        "pipeline_s": round(elapsed, 3),
        "first_write_s": round(first_row_at, 3) if first_row_at is not None else None,
        "first_write_rows": first_rows,
        "steady_s": round(steady_s, 3),
        "steady_chunks_per_s": round((st.rows - first_rows) / steady_s, 2) if steady_s > 0 else None,
        "steady_tokens_per_s": round((st.tokens - first_tokens) / steady_s, 2) if steady_s > 0 else None,
    })
    return counts
