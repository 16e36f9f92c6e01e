"""Job body of ``medembed embed``: read -> normalize -> (skip unchanged) -> chunk -> embed -> write, streaming.

Into a table that already holds documents, a first read hashes every document (no tokenizer) and a
partitioned join on Ray (``index.diff.diff_hashes``) against the table's ``doc_hash`` column picks the new
and changed ones; only they are read again, chunked and embedded. The driver gets counts and the ids of
changed documents (their old chunks are replaced at commit), never a per-document map of the table.

Stages are wired here and only here; each keeps its resources (batch size, actors, GPUs) apart
from its logic, so the same functions run on a laptop and on a GPU cluster.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import ray

from medembed import schema as S
from medembed.config import EmbedJobConfig
from medembed.embedding.card import ModelCard, resolve_card
from medembed.embedding.chunking import ChunkParams, chunk_params
from medembed.embedding.quality import require_quality_passed
from medembed.index.changes import chunk_selected_documents, ensure_doc_hash
from medembed.index.diff import Diff, diff_hashes, hash_documents
from medembed.index.indexes import maintain_table
from medembed.index.tables import check_model, table_name, table_uri
from medembed.index.writer import CommitStats, WriteResult, commit_fragments, write_dataset
from medembed.ingest import ReadPlan, documents_accepted, plan_read, read_quarantine_counts
from medembed.runtime import artifacts
from medembed.runtime.counters import driver_counters
from medembed.runtime.manifest import RunManifest
from medembed.stages import one_actor
from medembed.stages.embed import EmbedStage, check_resources

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TargetTable:
    db_uri: str
    name: str
    uri: str


def target_table(cfg: EmbedJobConfig, model: ModelCard) -> TargetTable:
    name = table_name(cfg.store.corpus_name, model.slug, configured=cfg.store.table)
    return TargetTable(cfg.store.uri, name, table_uri(cfg.store.uri, name))


def detect_changes(cfg: EmbedJobConfig, plan: ReadPlan, worker: Any, existing: Any, uri: str,
                   params: ChunkParams) -> Diff:
    """Hash every document of ``plan`` (no tokenizer) and join the hashes with the table's on Ray."""
    if worker is not None:  # the one actor reads and hashes; its table goes to the join without the driver
        corpus = [one_actor.document_hashes(worker, plan, params)]
    else:
        corpus = plan.dataset().map_batches(hash_documents, batch_format="pyarrow", batch_size=None,
                                            num_cpus=cfg.chunking.num_cpus,
                                            fn_kwargs={"params": params}).materialize().to_arrow_refs()
    return diff_hashes(corpus, uri, existing.version, storage=plan.storage)


def write_new_chunks(cfg: EmbedJobConfig, card: ModelCard, plan: ReadPlan, worker: Any, target: TargetTable,
                     schema: pa.Schema, params: ChunkParams, diff: Diff | None, counters: Any) -> WriteResult:
    """Chunk, embed and commit every new or changed document of ``plan`` (``diff`` None: every document): in
    ``worker`` (one actor, one commit) or, when it is None, streaming (Ray Data: read -> chunk -> embedder pool
    -> writer, commits as blocks land). Documents the diff did not select are not read again."""
    storage = plan.storage
    known = {d: "" for d in diff.changed} if diff is not None else {}  # their stored chunks are replaced
    embed_sets = diff.embed_sets if diff is not None else None
    if diff is not None and not diff.to_embed:  # nothing to read again, no model pool to start
        return WriteResult(CommitStats())
    if diff is not None:
        plan = plan.restrict(diff.sources())
    write = {"storage": storage, "known": known, "commit_every": cfg.store.commit_every, "progress": "chunks written"}
    if worker is not None:
        fragments = one_actor.embed_and_write(worker, plan, params, embed_sets, counters, target.uri, schema,
                                              storage, cfg.embed.stall_timeout_s)
        return commit_fragments(fragments, target.uri, schema, **write)
    stage = EmbedStage.create(cfg.model, cfg.embed, storage, card)
    waves = plan.waves(cfg.embed.wave_mib)
    if len(waves) > 1:
        log.info("input in %d waves of up to embed.wave_mib=%g MiB: one Ray Data execution each, one committer",
                 len(waves), cfg.embed.wave_mib)

    def embedded(wave: ReadPlan) -> ray.data.Dataset:
        chunks = wave.dataset().map_batches(
            chunk_selected_documents, batch_format="pyarrow", batch_size=cfg.chunking.batch_size,
            num_cpus=cfg.chunking.num_cpus, fn_kwargs={"params": params, "embed_sets": embed_sets, "counters": counters})
        return stage(chunks)

    return write_dataset((embedded(w) for w in waves), target.uri, schema, block_mib=cfg.embed.block_mib,
                         stall_timeout_s=cfg.embed.stall_timeout_s, writers=cfg.embed.writer_actors, **write)


def embed(cfg: EmbedJobConfig, manifest: RunManifest) -> dict[str, Any]:
    """Run the pipeline; returns the counts also recorded in ``manifest``."""
    storage = manifest.storage
    card = resolve_card(cfg.model, storage)
    quality = require_quality_passed(card, cfg.model.cache_dir)  # onnx* vectors only after a passed check
    target = target_table(cfg, card)
    schema = S.table_schema(card.dim, card.model_id, card.revision, card.backend, card.precision, doc_hash=True)
    manifest.set("model", card.to_dict())
    if quality:
        manifest.set("backend_quality", quality)
    manifest.set("table", {"db_uri": target.db_uri, "name": target.name, "uri": target.uri})
    quarantine_dir = manifest.path("quarantine")
    manifest.set("quarantine_dir", quarantine_dir)

    check_resources(cfg)
    plan = plan_read(cfg.input, quarantine_dir, storage)
    small = one_actor.is_small(plan, cfg.embed.one_actor_max_mib)
    manifest.set("execution", "one actor" if small else "streaming")
    worker = None
    if small:  # start it first: its model loads while the driver reads the table's state
        log.info("input <= embed.one_actor_max_mib (%g MiB): one actor reads, chunks, embeds and writes",
                 cfg.embed.one_actor_max_mib)
        worker = one_actor.start_worker(EmbedStage.create(cfg.model, cfg.embed, storage, card).fn_constructor_kwargs,
                                        cfg.embed.num_cpus, cfg.embed.num_gpus, keep_memory=cfg.embed.cpu_keep_memory)
    try:
        existing = storage.lance_dataset(target.uri)
        if existing is not None:
            check_model(existing, card.model_id, card.dim, target.uri)
        existing, migrated = ensure_doc_hash(existing)  # a table from before doc_hash: each document changed once
        rows_before = existing.count_rows() if existing is not None else 0
        params = chunk_params(cfg, card)
        manifest.set("change_detection", {"key": "doc_hash", "params": params.key, "table_migrated": migrated})
        log.info("embedding into %s (model %s, dim %d, %d tokens/chunk, %d rows already there)", target.uri,
                 card.model_id, card.dim, params.max_tokens, rows_before)
        diff = None
        if rows_before:
            with manifest.timed("change_detection"):
                diff = detect_changes(cfg, plan, worker, existing, target.uri, params)
        counters = driver_counters()
        with manifest.timed("embed_pipeline"):
            written = write_new_chunks(cfg, card, plan, worker, target, schema, params, diff, counters)
    finally:
        if worker is not None:
            ray.kill(worker)
    st = written.stats
    with manifest.timed("indexes"):
        if st.rows:
            index_info = maintain_table(target.db_uri, target.name, cfg.store, storage)
        else:  # nothing new: the table (and its indexes) are as the last run left them
            index_info = {"rows": rows_before, "unchanged": True}
    if st.rows or artifacts.read_marker(target.uri, storage) is None:
        artifacts.mark_complete(target.uri, "table", manifest.run_id,
                                {"version": st.versions[-1] if st.versions else existing.version,
                                 "rows": index_info.get("rows", 0), "model_id": card.model_id}, storage)
    quarantine = read_quarantine_counts(quarantine_dir, storage)
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
    ray.kill(counters)
    unchanged_chunks = diff.chunks_unchanged if diff is not None else 0
    counts["documents_tokenized"] = stage_counts.get("documents_tokenized", 0)
    counts["chunks_tokenized"] = stage_counts.get("chunks_tokenized", 0)
    counts["chunks_total"] = unchanged_chunks + counts["chunks_tokenized"]
    counts["chunks_unchanged_skipped"] = unchanged_chunks
    counts["documents_unchanged_skipped"] = diff.counts["unchanged"] if diff is not None else 0
    for k, v in counts.items():
        manifest.count(k, v)
    manifest.set("indexes", index_info)
    manifest.set("throughput", written.throughput())
    manifest.set("ray_data_executions", written.executions)  # > 1: the input ran in waves (embed.wave_mib)
    if written.runner_peak_rss_mib is not None:  # each execution ran in a process of its own, not in the driver
        manifest.set("wave_runner_peak_rss_mib", round(written.runner_peak_rss_mib, 1))
    manifest.set("output", {"artifact": target.uri})
    return counts
