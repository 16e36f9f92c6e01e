"""Index policy: compaction, the full-text index and (past a row threshold) the vector index.

Indexes are maintained incrementally. A table's first run trains them; later runs add what changed:

- full-text (Lance inverted index): ``optimize_indices`` indexes the rows not yet in it (new fragments);
  deleted rows are masked by their deletion vectors at query time, compaction remaps the index.
- vector (``store.ann_index``: IVF_PQ, IVF_HNSW_SQ or IVF_RQ): the new rows are assigned to the trained
  IVF centroids (and quantizer) as a *delta index* (``optimize_indices(num_indices_to_merge=0)``: cost
  proportional to the new rows, no partition split or merge). A search visits every delta (measured at
  1M rows: +0.5 ms p50 per delta on a 6 ms query), so once there would be more than
  ``store.ann_max_deltas`` deltas they are *merged* into the trained index (same centroids, no k-means:
  ``num_indices_to_merge`` = all segments). A *retrain* (new centroids, one index over all rows) happens
  when :func:`retrain_reason` says so: rows added plus rows removed since the last training above
  ``store.ann_retrain_fraction`` of the rows then trained on (the centroids describe an older table), or
  a config whose index type, metric or parameters differ from the trained index's.

The table's schema metadata records the trained index (``medembed.ann_index``: type, parameters, rows
and date of the last training, the search defaults) and why this index type is the default
(``medembed.index_choice``, from ``bench/index_recall.py``, see ``INDEX_CHOICE``).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, TypeVar

from medembed import schema as S
from medembed.config import StoreConfig
from medembed.index.tables import table_metadata, table_uri
from medembed.runtime.offload import run_off_driver
from medembed.runtime.storage import Storage

T = TypeVar("T")

log = logging.getLogger(__name__)

META_ANN = "medembed.ann_index"
META_CHOICE = "medembed.index_choice"
ANN_TYPES = ("IVF_PQ", "IVF_HNSW_SQ", "IVF_RQ")

# Search defaults of the default index (Retriever, eval); measured by bench/index_recall.py. The exact re-ranking
# (refine_factor x k candidates) is what keeps recall as tables grow: 1-bit codes cannot order near-ties, and probing
# more partitions does not help (10M rows: nprobes 20 -> 160 moved recall@10 0.658 -> 0.672; refine 10 -> 50, 0.959).
DEFAULT_NPROBES = 20
DEFAULT_REFINE_FACTOR = 50

INDEX_CHOICE = {
    "default": "IVF_RQ",
    "search": {"nprobes": DEFAULT_NPROBES, "refine_factor": DEFAULT_REFINE_FACTOR},
    "why": ("recall@10 vs exact, bundled MiniLM vectors: IVF_RQ 0.991 on 12,164 real vectors (refine 10); on the real "
            "vectors with small perturbations, 0.978 at 1M rows (refine 50; 0.955-0.969 with refine 10) and 0.959 at "
            "10M rows (0.658 with refine 10: 822 near-copies of each real vector leave 1-bit codes unable to order "
            "near-ties; more probes do not help); p50 13-14 ms at 1M (8 ms with refine 10); built in 46-67 s at 1M "
            "and 568 s at 10M (peak RSS 2.7 GiB), 64 / 618 MiB of index; IVF_PQ (dim/16 sub-vectors) misses 0.95 at "
            "1M (0.895); IVF_HNSW_SQ reaches 0.977-0.979 at 1M for 2-3x the build time and 9x the size"),
    "measured_by": "bench/index_recall.py (bench/RESULTS.md, index_recall, 2026-12-06, 2-core CPU)",
}


def compact(db_uri: str, table: str, storage: Storage) -> int:
    """Merge small fragments into one commit; returns the fragments removed.

    Lance's own ``compact_files``, not LanceDB's ``Table.optimize``: that one also cleans up versions
    older than a week and refuses while such versions are tagged (served tables keep tags; version
    cleanup is ``index.serving.cleanup``'s job, with the configured retention). Indexes are remapped
    to the rewritten fragments by the same commit.
    """
    stats = storage.lance_dataset(table_uri(db_uri, table)).optimize.compact_files()
    return int(getattr(stats, "fragments_removed", 0) or 0)


def ann_params(index_type: str, rows: int, dim: int) -> dict[str, Any]:
    """Build parameters of a vector index over ``rows`` vectors of ``dim`` dimensions.

    IVF partitions: sqrt(rows), at most rows/256 (k-means wants ~256 rows per centroid).
    IVF_PQ: dim/16 sub-vectors (8-bit codes). IVF_HNSW_SQ: m=20, ef_construction=300 (LanceDB's).
    IVF_RQ: 1 bit per dimension (RaBitQ; exact re-ranking via ``refine_factor`` restores the order).
    """
    if index_type not in ANN_TYPES:
        raise ValueError(f"unknown vector index type {index_type!r} ({', '.join(ANN_TYPES)})")
    p: dict[str, Any] = {"partitions": max(1, min(int(math.sqrt(rows)), rows // 256))}
    if index_type == "IVF_PQ":
        p["sub_vectors"] = next(d for d in (dim // 16, dim // 8, dim // 4, 1) if d >= 1 and dim % d == 0)
    elif index_type == "IVF_HNSW_SQ":
        p.update(m=20, ef_construction=300)
    else:
        p["num_bits"] = 1
    return p


def _index_config(index_type: str, metric: str, p: dict[str, Any]) -> Any:
    from lancedb.index import HnswSq, IvfPq, IvfRq

    if index_type == "IVF_PQ":
        return IvfPq(distance_type=metric, num_partitions=p["partitions"], num_sub_vectors=p["sub_vectors"])
    if index_type == "IVF_HNSW_SQ":
        return HnswSq(distance_type=metric, num_partitions=p["partitions"], m=p["m"], ef_construction=p["ef_construction"])
    return IvfRq(distance_type=metric, num_partitions=p["partitions"], num_bits=p["num_bits"])


def _is_fts(index_type: str) -> bool:
    t = str(index_type).upper()
    return "FTS" in t or "INVERTED" in t


def _indices(ds: Any) -> list[dict[str, Any]]:
    return [{"name": i["name"], "type": i["type"], "fields": i["fields"]} for i in ds.list_indices()]


def index_state(ds: Any, name: str) -> dict[str, Any]:
    """Segments and row counts of index ``name``: rows per segment (the trained one first), unindexed rows."""
    os.environ.setdefault("LANCE_INCLUDE_VECTOR_CENTROIDS", "false")  # keep stats small (and quiet)
    s = ds.stats.index_stats(name)
    per = [int(x) for x in s.get("num_indexed_rows_per_delta") or []]
    return {"segments": int(s.get("num_indices", len(per)) or 0), "rows_per_segment": per,
            "indexed_rows": int(s.get("num_indexed_rows", sum(per))), "unindexed_rows": int(s.get("num_unindexed_rows", 0))}


def ann_metadata(ds: Any) -> dict[str, Any] | None:
    """The ``medembed.ann_index`` record of the table (None: no index trained by medembed)."""
    raw = table_metadata(ds).get(META_ANN)
    return json.loads(raw) if raw else None


def changed_since_training(trained: dict[str, Any], state: dict[str, Any]) -> tuple[int, int]:
    """(rows added, rows removed) since the index was trained: the record's running count (kept by every run)
    plus this run's (rows not yet indexed; indexed rows gone since the last run)."""
    removed = max(0, int(trained.get("indexed_rows", trained.get("trained_rows", 0))) - state["indexed_rows"])
    return (int(trained.get("added_rows", 0)) + state["unindexed_rows"], int(trained.get("removed_rows", 0)) + removed)


def retrain_reason(trained: dict[str, Any] | None, state: dict[str, Any], wanted: dict[str, Any],
                   cfg: StoreConfig) -> str | None:
    """Why the vector index must be retrained (a full rebuild) instead of taking a delta; None: a delta will do.

    ``trained``: the table's ``medembed.ann_index`` record; ``state``: :func:`index_state` of the index;
    ``wanted``: type, metric and parameters the config asks for at the table's current size.
    """
    if trained is None:
        return "index not trained by medembed (no medembed.ann_index record)"
    for key in ("type", "metric"):
        if trained.get(key) != wanted[key]:
            return f"config asks for {key} {wanted[key]!r}, the index has {trained.get(key)!r}"
    if trained.get("params", {}).keys() != wanted["params"].keys() or any(
            trained["params"][k] != v for k, v in wanted["params"].items() if k != "partitions"):
        return f"config asks for parameters {wanted['params']}, the index has {trained.get('params')}"
    base = int(trained.get("trained_rows") or 0)
    added, removed = changed_since_training(trained, state)
    if base and (added + removed) > cfg.ann_retrain_fraction * base:
        return (f"{added} rows added and {removed} removed since the last training on {base} rows "
                f"(> {cfg.ann_retrain_fraction:g} of them)")
    return None


def merge_reason(state: dict[str, Any], cfg: StoreConfig) -> str | None:
    """Why this run merges the delta indexes into the trained one (no retraining); None: add a delta."""
    deltas = len(state["rows_per_segment"]) - 1 + (1 if state["unindexed_rows"] else 0)
    if deltas > cfg.ann_max_deltas:
        return f"{deltas} delta indexes (> store.ann_max_deltas {cfg.ann_max_deltas})"
    return None


def _record(ds: Any, values: dict[str, Any]) -> None:
    ds.update_schema_metadata({k: json.dumps(v, sort_keys=True) for k, v in values.items()})


def _build_vector_index(db_uri: str, table: str, cfg: StoreConfig, storage: Storage, n: int, dim: int,
                        reason: str) -> dict[str, Any]:
    params = ann_params(cfg.ann_index, n, dim)
    t0 = time.perf_counter()
    tbl = storage.lancedb_connect(db_uri).open_table(table)
    tbl.create_index(S.VECTOR, config=_index_config(cfg.ann_index, cfg.ann_metric, params), replace=True)
    build_s = time.perf_counter() - t0
    ds = storage.lance_dataset(table_uri(db_uri, table))
    rows = ds.count_rows()
    record = {"type": cfg.ann_index, "metric": cfg.ann_metric, "params": params, "trained_rows": rows,
              "indexed_rows": rows, "added_rows": 0, "removed_rows": 0,
              "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "trained_version": ds.version,
              "build_s": round(build_s, 3), "retrain_fraction": cfg.ann_retrain_fraction,
              "max_deltas": cfg.ann_max_deltas, "search": INDEX_CHOICE["search"]}
    _record(ds, {META_ANN: record, META_CHOICE: INDEX_CHOICE})
    log.info("trained %s index on %d rows of %s (%.1f s): %s", cfg.ann_index, record["trained_rows"], table, build_s,
             reason)
    return {"type": cfg.ann_index, **params, "metric": cfg.ann_metric, "action": "trained", "reason": reason,
            "seconds": round(build_s, 3)}


def _vector_index_name(ds: Any) -> str | None:
    return next((i["name"] for i in _indices(ds) if S.VECTOR in i["fields"] and not _is_fts(i["type"])), None)


def _fts_index_name(ds: Any) -> str | None:
    return next((i["name"] for i in _indices(ds) if S.TEXT in i["fields"] and _is_fts(i["type"])), None)


def finalize_table(db_uri: str, table: str, cfg: StoreConfig, storage: Storage, *,
                   retrain: bool = False) -> dict[str, Any]:
    """Compact, then bring the full-text index and (past ``store.ann_min_rows``) the vector index up to date.

    A table without an index gets it built; an indexed table gets its new rows added incrementally (see
    the module docstring): a delta index, the deltas merged past ``store.ann_max_deltas``, or a retrain when
    :func:`retrain_reason` (or ``retrain=True``) says so. Returns ``rows``, ``fts_index`` (False, or
    ``built``/``updated``/``current``) and ``ann_index`` (None, or type, parameters, ``action``
    trained/delta/merged/current and the reason).

    A table of one fragment without deleted rows has nothing to compact, and LanceDB (seconds of imports
    on a small job) is opened only when an index is to be built.
    """
    uri = table_uri(db_uri, table)
    ds = storage.lance_dataset(uri)
    if ds is None:
        raise FileNotFoundError(f"no table {table!r} in {db_uri} to finalize")
    n = ds.count_rows()
    info: dict[str, Any] = {"rows": n, "fts_index": False, "ann_index": None}
    if cfg.compact and n:
        frags = ds.get_fragments()
        whole = len(frags) == 1 and frags[0].metadata.deletion_file is None
        info["fragments_compacted"] = 0 if whole else compact(db_uri, table, storage)
    ann = n >= max(cfg.ann_min_rows, 256)
    vec_name = _vector_index_name(ds) if n else None
    if not n or not (cfg.fts or ann or vec_name):
        return info
    ds = storage.lance_dataset(uri)
    if cfg.fts:
        info["fts_index"] = _maintain_fts(db_uri, table, ds, storage)
    if ann or vec_name:
        ds = storage.lance_dataset(uri)
        info["ann_index"] = _maintain_vector(db_uri, table, cfg, storage, ds, vec_name, retrain)
    return info


def off_driver(cfg: StoreConfig, rows: int) -> bool:
    """Whether a table of ``rows`` rows has its table-wide steps run off the driver (``store.index_off_driver_rows``;
    only on Ray: without it, e.g. a library call, everything stays in this process)."""
    import ray

    return rows >= cfg.index_off_driver_rows and ray.is_initialized()


def run_table_step(store: StoreConfig | None, rows: int, fn: Callable[..., T], *args: Any,
                   **kwargs: Any) -> tuple[T, dict[str, Any]]:
    """``fn(*args, **kwargs)`` for a table of ``rows`` rows: in the driver below ``store.index_off_driver_rows``
    (or without ``store``, or without Ray), else in a Ray task of its own (``medembed.runtime.offload``, with
    ``store.index_num_cpus`` and ``store.index_memory_gb``). Returns (its result, where it ran: the process, and
    for a task its peak RSS and seconds), which the jobs record in their manifests."""
    if store is None or not off_driver(store, rows):
        return fn(*args, **kwargs), {"process": "driver"}
    out, where = run_off_driver(fn, *args, num_cpus=store.index_num_cpus, memory_gb=store.index_memory_gb, **kwargs)
    log.info("%s ran in a Ray task of its own (a table of %d rows, %.1f s, peak RSS %.0f MiB)", fn.__name__, rows,
             where["seconds"], where["peak_rss_mib"])
    return out, where


def maintain_table(db_uri: str, table: str, cfg: StoreConfig, storage: Storage, *,
                   retrain: bool = False) -> dict[str, Any]:
    """:func:`finalize_table`, in the driver for a small table, else in a Ray task of its own
    (:func:`run_table_step`: its memory grows with the table). The result says where it ran (``ran_in``)."""
    ds = storage.lance_dataset(table_uri(db_uri, table))
    info, where = run_table_step(cfg, ds.count_rows() if ds is not None else 0, finalize_table, db_uri, table, cfg,
                                 storage, retrain=retrain)
    return {**info, "ran_in": where}


def _maintain_fts(db_uri: str, table: str, ds: Any, storage: Storage) -> str:
    name = _fts_index_name(ds)
    if name is None:
        from lancedb.index import FTS

        t0 = time.perf_counter()
        storage.lancedb_connect(db_uri).open_table(table).create_index(S.TEXT, config=FTS(), replace=True)
        log.info("built the full-text index of %s (%.1f s)", table, time.perf_counter() - t0)
        return "built"
    if not index_state(ds, name)["unindexed_rows"]:
        return "current"
    t0 = time.perf_counter()
    ds.optimize.optimize_indices(index_names=[name])
    log.info("full-text index of %s: new rows added (%.1f s)", table, time.perf_counter() - t0)
    return "updated"


def _maintain_vector(db_uri: str, table: str, cfg: StoreConfig, storage: Storage, ds: Any, name: str | None,
                     retrain: bool) -> dict[str, Any] | None:
    n = ds.count_rows()
    dim = ds.schema.field(S.VECTOR).type.list_size
    if name is None:
        return _build_vector_index(db_uri, table, cfg, storage, n, dim, f"no vector index yet ({n} rows)")
    trained = ann_metadata(ds)
    state = index_state(ds, name)
    wanted = {"type": cfg.ann_index, "metric": cfg.ann_metric, "params": ann_params(cfg.ann_index, n, dim)}
    reason = "retrain asked for" if retrain else retrain_reason(trained, state, wanted, cfg)
    if reason:
        return _build_vector_index(db_uri, table, cfg, storage, n, dim, reason)
    out = {"type": trained["type"], **trained["params"], "metric": trained["metric"],
           "trained_rows": trained["trained_rows"], "trained_at": trained["trained_at"]}
    merge = merge_reason(state, cfg)
    added, removed = changed_since_training(trained, state)
    if not state["unindexed_rows"] and not merge:
        if removed != trained.get("removed_rows", 0):  # deletions only: keep the running count
            _record(ds, {META_ANN: {**trained, "removed_rows": removed, "indexed_rows": state["indexed_rows"]}})
        return {**out, "action": "current", "delta_indexes": state["segments"] - 1}
    t0 = time.perf_counter()
    ds.optimize.optimize_indices(index_names=[name], num_indices_to_merge=state["segments"] if merge else 0)
    seconds = time.perf_counter() - t0
    ds = storage.lance_dataset(table_uri(db_uri, table))
    _record(ds, {META_ANN: {**trained, "added_rows": added, "removed_rows": removed,
                            "indexed_rows": index_state(ds, name)["indexed_rows"]}})
    if merge:
        log.info("vector index of %s: %d delta indexes and %d new rows merged into the trained index (%.1f s): %s",
                 table, state["segments"] - 1, state["unindexed_rows"], seconds, merge)
        return {**out, "action": "merged", "reason": merge, "rows_added": state["unindexed_rows"], "delta_indexes": 0,
                "seconds": round(seconds, 3)}
    log.info("vector index of %s: %d new rows as delta index %d (%.1f s)", table, state["unindexed_rows"],
             state["segments"], seconds)
    return {**out, "action": "delta", "rows_added": state["unindexed_rows"], "delta_indexes": state["segments"],
            "seconds": round(seconds, 3)}


def has_vector_index(tbl: Any) -> bool:
    return any(S.VECTOR in i.columns and "FTS" not in str(i.index_type).upper() for i in tbl.list_indices())
