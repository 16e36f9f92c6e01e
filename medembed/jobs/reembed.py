"""Job body of ``medembed reembed``: the nightly incremental re-embedding behind a serving name.

lease -> read the corpus and hash each document (no tokenizer) -> change detection on Ray (document
hashes against the table's ``doc_hash`` column) -> read again only the new and changed documents, chunk
and embed them into staged fragments -> ONE commit (adds + removals) -> indexes -> verify -> tag the
version and move the serving pointer in one step -> clean up old versions and tables. An unchanged
document is read and hashed, never tokenized.

The served table is ``<serving name>__<model slug>`` (or ``store.table``): with the same model the
run syncs the table that is served; with a newly promoted model it builds (or resumes) that model's
table, verifies it, and switches the serving name to it. Readers resolve the serving name to a
pinned table version, so they never see a half-done run. Exit codes: see ``medembed.index.config``.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from datetime import timedelta
from typing import Any

import numpy as np
import ray

from medembed import schema as S
from medembed.config import StoreConfig
from medembed.embedding.card import ModelCard, resolve_card
from medembed.embedding.chunking import chunk_params
from medembed.embedding.quality import require_quality_passed
from medembed.index import serving
from medembed.index.changes import chunk_selected_documents, ensure_doc_hash
from medembed.index.config import EXIT_QUARANTINED, ReembedJobConfig
from medembed.index.diff import Diff, diff_hashes, hash_documents
from medembed.index.indexes import maintain_table, run_table_step
from medembed.index.lease import WriterLease
from medembed.index.sync import Staged, SyncCommit, commit_sync, doc_filter, stage_fragments
from medembed.index.tables import check_model, table_name, table_uri
from medembed.ingest import plan_read, read_quarantine_counts
from medembed.runtime import artifacts
from medembed.runtime.counters import driver_counters
from medembed.runtime.manifest import RunManifest
from medembed.runtime.storage import DEFAULT_STORAGE, Storage
from medembed.stages.embed import EmbedStage, check_resources

log = logging.getLogger(__name__)

# quarantine reasons that may hide a document the table holds (its id or its whole source is lost):
# while any occurs, documents missing from the corpus are not deleted
LOSSY_REASONS = frozenset({S.R_UNREADABLE_FILE, S.R_MALFORMED_JSON, S.R_MALFORMED_CSV, S.R_UNDECODABLE,
                           S.R_NOT_AN_OBJECT, S.R_MISSING_ID})
class VerificationError(RuntimeError):
    """A built table failed its checks; the serving name was not switched."""


def verify_table(db_uri: str, table: str, version: int, card: ModelCard, *, expected_rows: int,
                 corpus_docs: ray.data.Dataset | None, partitions: int, sample: int, storage: Storage,
                 store: StoreConfig | None = None) -> dict[str, Any]:
    """Row count, model and dimension, ids and hashes (a second diff: every document unchanged), a sample search
    (:func:`sample_search`; off the driver past ``store.index_off_driver_rows``, in the driver without ``store``)."""
    uri = table_uri(db_uri, table)
    ds = storage.lance_dataset(uri).checkout_version(version)
    check_model(ds, card.model_id, card.dim, uri)
    rows = ds.count_rows()
    problems = []
    if rows != expected_rows:
        problems.append(f"{rows} rows, expected {expected_rows}")
    if ds.schema.field(S.VECTOR).type.list_size != card.dim:
        problems.append(f"vector dimension {ds.schema.field(S.VECTOR).type.list_size}, model has {card.dim}")
    info: dict[str, Any] = {"version": version, "rows": rows}
    if corpus_docs is not None:  # ids and hashes of every document, joined on Ray again
        recheck = diff_hashes(corpus_docs.to_arrow_refs(), uri, version, storage=storage, partitions=partitions)
        info["recheck"] = recheck.counts
        if recheck.counts["new"] or recheck.counts["changed"] or recheck.counts["deleted"]:
            problems.append(f"the table does not hold the corpus: {recheck.counts}")
    if sample and rows:
        # exact scans of every vector: off the driver for a large table
        (scores, found), info["sample_ran_in"] = run_table_step(store, rows, sample_search, db_uri, table, version,
                                                                sample, storage)
        info["sample_scores"] = scores
        problems += found
    if problems:
        raise VerificationError(f"table {uri} version {version} failed verification: " + "; ".join(problems))
    return info


def sample_search(db_uri: str, table: str, version: int, sample: int, storage: Storage) -> tuple[list[float], list[str]]:
    """The first ``sample`` rows' vectors searched exactly (no index, so no quantization error) in the table at
    ``version``: each must be a unit vector and find itself (cosine >= 0.99). Returns (scores, problems)."""
    ds = storage.lance_dataset(table_uri(db_uri, table)).checkout_version(version)
    tbl = storage.lancedb_connect(db_uri).open_table(table)
    tbl.checkout(version)
    probe = ds.to_table(columns=[S.CHUNK_ID, S.VECTOR], limit=sample)
    scores, problems = [], []
    for cid, vec in zip(probe[S.CHUNK_ID].to_pylist(), probe[S.VECTOR].to_pylist()):
        norm = float(np.linalg.norm(vec))
        hit = tbl.search(np.asarray(vec, np.float32), vector_column_name=S.VECTOR).metric("cosine") \
            .bypass_vector_index().select([S.CHUNK_ID, "_distance"]).limit(1).to_arrow()
        score = 1.0 - float(hit["_distance"][0].as_py()) if hit.num_rows else 0.0
        scores.append(round(score, 5))
        if abs(norm - 1.0) > 1e-3 or score < 0.99:
            problems.append(f"sample search for {cid}: norm {norm:.4f}, best score {score:.4f}")
    return scores, problems


def refresh_indexes(cfg: ReembedJobConfig, table: str, fresh: bool, storage: Storage = DEFAULT_STORAGE) -> dict[str, Any]:
    """A new table gets its indexes built; a synced one is compacted and its indexes take in the new rows.

    Both through ``finalize_table``: Lance's own compaction and ``optimize_indices`` (never LanceDB's
    ``Table.optimize``, which refuses while old versions are tagged for serving); a synced table's new rows
    go into the existing FTS and vector indexes (delta indexes, merged or retrained by its policy).
    """
    info = maintain_table(cfg.store.uri, table, cfg.store, storage)
    return info if fresh else {"optimized": True, **info}


def _counts(diff: Diff, deferred: list[str], commit: SyncCommit, n_chunks: int, n_docs: int,
            quarantine: dict[str, int], tokens: int, stage: dict[str, int]) -> dict[str, Any]:
    return {
        "documents_in_corpus": n_docs, "chunks_in_corpus": n_chunks,
        "documents_tokenized": stage.get("documents_tokenized", 0), "chunks_tokenized": stage.get("chunks_tokenized", 0),
        "documents_reread": stage.get("documents_read_for_chunking", 0), "chunks_unchanged": diff.chunks_unchanged,
        "documents_new": diff.counts["new"], "documents_changed": diff.counts["changed"],
        "documents_unchanged": diff.counts["unchanged"], "documents_deleted": len(diff.deleted) - len(deferred),
        "documents_delete_deferred": len(deferred),
        "chunks_embedded": commit.rows_added, "chunks_removed": commit.rows_removed, "tokens_embedded": tokens,
        "rows_before": commit.rows_before, "rows_after": commit.rows_after,
        "quarantined": sum(quarantine.values()), "quarantine_by_reason": quarantine,
    }


def reembed(cfg: ReembedJobConfig, manifest: RunManifest) -> dict[str, Any]:
    """Hold the serving name's writer lease for the whole run; see the module docstring."""
    name = cfg.sync.serving_name or cfg.store.corpus_name
    lease = WriterLease(cfg.store.uri, name, manifest.run_id, ttl_s=cfg.sync.lease_ttl_s,
                        storage=manifest.storage)
    with manifest.timed("lease"):
        lease.acquire(cfg.sync.lease_wait_s)
    manifest.set("lease", {"uri": lease.uri, "took_over": lease.took_over})
    try:
        return _reembed(cfg, manifest, name, lease)
    finally:
        lease.release()


def _reembed(cfg: ReembedJobConfig, manifest: RunManifest, name: str, lease: WriterLease) -> dict[str, Any]:
    storage, db_uri = manifest.storage, cfg.store.uri
    card = resolve_card(cfg.model, storage)
    require_quality_passed(card, cfg.model.cache_dir)  # onnx* vectors only after a passed quality check
    tname = table_name(name, card.slug, configured=cfg.store.table)
    uri = table_uri(db_uri, tname)
    schema = S.table_schema(card.dim, card.model_id, card.revision, card.backend, card.precision, doc_hash=True)
    before = serving.read_pointer(db_uri, name, storage)
    existing = storage.lance_dataset(uri)
    if existing is not None:
        check_model(existing, card.model_id, card.dim, uri)
    manifest.set("model", card.to_dict())
    manifest.set("table", {"db_uri": db_uri, "name": tname, "uri": uri, "serving_name": name})
    manifest.set("serving_before", asdict(before.current) if before else None)
    quarantine_dir = manifest.path("quarantine")
    manifest.set("quarantine_dir", quarantine_dir)

    params = chunk_params(cfg, card)
    check_resources(cfg)
    plan = plan_read(cfg.input, quarantine_dir, storage)
    with manifest.timed("read_hash"):  # read + normalize + hash each document: no tokenizer
        corpus_docs = plan.dataset().map_batches(hash_documents, batch_format="pyarrow", batch_size=None,
                                                 num_cpus=cfg.chunking.num_cpus, fn_kwargs={"params": params}).materialize()
        n_docs = corpus_docs.count()
    quarantine = read_quarantine_counts(quarantine_dir, storage)
    lossy = sorted(r for r in quarantine if r in LOSSY_REASONS)
    if n_docs == 0:
        raise RuntimeError(f"the corpus at {cfg.input.uri} yielded no documents (quarantined: {quarantine}); "
                           "not syncing an empty corpus over the table")
    existing, migrated = ensure_doc_hash(existing)  # under the lease: a table from before doc_hash gets the column
    read_version = existing.version if existing is not None else None
    manifest.set("change_detection", {"key": "doc_hash", "params": params.key, "table_migrated": migrated})
    log.info("re-embedding %r into %s (version %s; serving %s)", name, tname, read_version,
             f"{before.current.table}@v{before.current.version}" if before else "nothing yet")

    with manifest.timed("diff"):
        diff = diff_hashes(corpus_docs.to_arrow_refs(), uri if existing is not None else None, read_version,
                           storage=storage, partitions=cfg.sync.partitions)
    deferred = diff.deleted if lossy else []
    if deferred:
        log.warning("not deleting %d documents missing from the corpus: input was lost (%s)", len(deferred), lossy)
    remove = diff.changed + ([] if lossy else diff.deleted)

    counters = driver_counters()
    with manifest.timed("embed_stage"):  # read again, chunk and embed only the new and changed documents
        if diff.to_embed:
            if read_version is None:
                docs, embed_sets = plan.dataset(), None
            else:
                docs, embed_sets = plan.restrict(diff.sources()).dataset(), diff.embed_sets
            chunks = docs.map_batches(chunk_selected_documents, batch_format="pyarrow", batch_size=cfg.chunking.batch_size,
                                      num_cpus=cfg.chunking.num_cpus,
                                      fn_kwargs={"params": params, "embed_sets": embed_sets, "counters": counters})
            staged = stage_fragments(EmbedStage.create(cfg.model, cfg.embed, storage, card)(chunks), uri, schema,
                                     storage=storage,
                                     block_mib=cfg.embed.block_mib, writers=cfg.embed.writer_actors)
        else:
            staged = Staged()
    stage_counts = ray.get(counters.get.remote())
    ray.kill(counters)
    if stage_counts.get("documents_tokenized", 0) != diff.to_embed:
        raise RuntimeError(f"the second read of {cfg.input.uri} chunked {stage_counts.get('documents_tokenized', 0)} "
                           f"documents, change detection selected {diff.to_embed}: did the input change during the run?")
    with manifest.timed("commit"):
        commit = commit_sync(uri, schema, read_version, staged, remove, storage=storage, before_commit=lease.check)
    manifest.set("versions", {"table": tname, "before": read_version, "after_commit": commit.version_after})
    # the corpus's chunks: the stored ones of unchanged documents plus the ones written now
    n_chunks = diff.chunks_unchanged + staged.rows
    counts = _counts(diff, deferred, commit, n_chunks, n_docs, quarantine, staged.tokens, stage_counts)

    latest = commit.version_after
    needs_switch = before is None or before.current.key != (tname, latest)
    after = before
    if commit.committed or needs_switch:
        if commit.committed:
            artifacts.mark_complete(uri, "table", manifest.run_id, {"version": latest, "rows": commit.rows_after,
                                                                    "model_id": card.model_id}, storage)
        with manifest.timed("indexes"):
            manifest.set("indexes", refresh_indexes(cfg, tname, fresh=read_version is None, storage=storage))
        latest = storage.lance_dataset(uri).version
        fresh_target = before is None or before.current.table != tname
        deferred_rows = 0
        if deferred:
            deferred_rows = storage.lance_dataset(uri).count_rows(doc_filter(deferred))
        with manifest.timed("verify"):
            manifest.set("verification", verify_table(
                db_uri, tname, latest, card, expected_rows=n_chunks + deferred_rows,
                corpus_docs=corpus_docs if fresh_target and not deferred else None,
                partitions=cfg.sync.partitions, sample=cfg.sync.verify_sample, storage=storage, store=cfg.store))
        with manifest.timed("switch"):
            lease.check()
            ds = storage.lance_dataset(uri)
            tag = serving.serving_tag(latest)
            if tag not in ds.tags.list():
                ds.tags.create(tag, latest)
            _, after = serving.switch(db_uri, name, serving.ServedVersion(
                tname, latest, card.model_id, card.dim, ds.checkout_version(latest).count_rows(), manifest.run_id),
                storage, cfg.sync.keep_history)
        if cfg.sync.cleanup:
            with manifest.timed("cleanup"):
                manifest.set("cleanup", serving.cleanup(db_uri, after, timedelta(days=cfg.sync.retention_days), storage))
    else:
        log.info("nothing changed: %s@v%d stays served, no version written", tname, latest)
    manifest.set("versions", {"table": tname, "before": read_version, "after_commit": commit.version_after,
                              "after": latest})
    manifest.set("serving_after", asdict(after.current) if after else None)
    manifest.set("sync", {**commit.to_dict(), "staged_s": round(staged.seconds, 3), "diff_s": round(diff.seconds, 3),
                          "switched": after is not before})
    for k, v in counts.items():
        manifest.count(k, v)
    manifest.set("output", {"artifact": uri, "serving_name": name})
    if quarantine:
        manifest.set("exit_status", "succeeded_with_quarantine")
        manifest.set("exit_code", EXIT_QUARANTINED)
        log.warning("input was quarantined (%s): exit code %d", quarantine, EXIT_QUARANTINED)
    return counts
