"""Triplets for training: read (a mine-negatives run or any nested-triplets Parquet), clean, split by note.

Pure functions over Arrow tables; no Ray, no torch. The dev split is chosen by a hash of the source
note id, so no note has triplets on both sides and the split does not move between runs.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from medembed.mining import columns as M
from medembed.runtime import artifacts
from medembed.runtime.storage import DEFAULT_STORAGE, Storage

log = logging.getLogger(__name__)

TRAIN_COLUMNS = (M.QUERY, M.POSITIVE, M.NEGATIVES, M.QUERY_ID, M.QUERY_NOTE_ID, M.POSITIVE_ID, M.POSITIVE_SCORE,
                 M.NEGATIVE_SCORES)
_REQUIRED = (M.QUERY, M.POSITIVE, M.NEGATIVES, M.QUERY_NOTE_ID)


TRAIN_SCHEMA = pa.schema([(c, {M.NEGATIVES: pa.list_(pa.string()), M.POSITIVE_SCORE: pa.float32(),
                               M.NEGATIVE_SCORES: pa.list_(pa.float32())}.get(c, pa.string())) for c in TRAIN_COLUMNS])


class TripletsError(ValueError):
    """The triplets input is missing, incomplete or lacks a column; the message names the path."""


@dataclass(frozen=True)
class Triplets:
    """Cleaned triplets (TRAIN_COLUMNS) plus what reading them dropped, by reason."""

    table: pa.Table
    source: str
    run_id: str | None
    dropped: dict[str, int]
    scores: str | None = None  # what positive_score / negative_scores are ("cosine", "hybrid(...)"); None: unknown


def read_triplets(path: str, storage: Storage = DEFAULT_STORAGE, limit: int | None = None) -> Triplets:
    """Nested triplets from a mine-negatives output folder (complete runs only) or a Parquet file/folder."""
    fs, p = storage.fs(path)
    if not fs.exists(p):
        raise TripletsError(f"triplets not found: {path}")
    marker = artifacts.read_marker(path, storage) if fs.isdir(p) else None
    if fs.isdir(p) and marker is None and p.rstrip("/").endswith("/triplets"):
        raise TripletsError(f"{path} has no {artifacts.SUCCESS}: the mine-negatives run that writes it did not "
                            "finish (re-run it, or point triplets.path at a complete run)")
    if marker is not None and marker.get("format") == "flat":
        raise TripletsError(f"{path} holds flat triplets; training reads the nested format "
                            "(mine-negatives --set output.format=nested)")
    try:
        table = storage.read_parquet(path)
    except FileNotFoundError as e:
        raise TripletsError(str(e)) from None
    missing = [c for c in _REQUIRED if c not in table.column_names]
    if missing:
        raise TripletsError(f"triplets at {path} lack columns {missing} (nested format expected); "
                            f"got {table.column_names}")
    table, dropped = clean(table)
    table = table.sort_by(M.QUERY_ID)
    if limit:
        table = table.slice(0, limit)
    if table.num_rows == 0:
        raise TripletsError(f"no usable triplets in {path} (dropped: {dropped})")
    return Triplets(table, path, marker.get("run_id") if marker else None, dropped,
                    (marker or {}).get("scores", "cosine" if marker else None))


def clean(table: pa.Table) -> tuple[pa.Table, dict[str, int]]:
    """TRAIN_COLUMNS with ids filled in; rows without a query, positive or note id dropped (counted by reason)."""
    n = table.num_rows
    cols = {c: table[c].to_pylist() for c in _REQUIRED}
    qids = table[M.QUERY_ID].to_pylist() if M.QUERY_ID in table.column_names else [None] * n
    pids = table[M.POSITIVE_ID].to_pylist() if M.POSITIVE_ID in table.column_names else [None] * n
    pscores = table[M.POSITIVE_SCORE].to_pylist() if M.POSITIVE_SCORE in table.column_names else [None] * n
    nscores = table[M.NEGATIVE_SCORES].to_pylist() if M.NEGATIVE_SCORES in table.column_names else [None] * n
    out: dict[str, list] = {c: [] for c in TRAIN_COLUMNS}
    dropped = {"empty_query": 0, "empty_positive": 0, "missing_note_id": 0, "duplicate_query_id": 0}
    seen: set[str] = set()
    for i in range(n):
        q, pos, note = cols[M.QUERY][i], cols[M.POSITIVE][i], cols[M.QUERY_NOTE_ID][i]
        if not isinstance(q, str) or not q.strip():
            dropped["empty_query"] += 1
            continue
        if not isinstance(pos, str) or not pos.strip():
            dropped["empty_positive"] += 1
            continue
        if note is None or str(note) == "":
            dropped["missing_note_id"] += 1
            continue
        qid = qids[i] or "q:" + hashlib.sha256(f"{note}\x1f{q}\x1f{pos}".encode()).hexdigest()[:24]
        if qid in seen:
            dropped["duplicate_query_id"] += 1
            continue
        seen.add(qid)
        out[M.QUERY].append(q)
        out[M.POSITIVE].append(pos)
        negs = cols[M.NEGATIVES][i] or []
        keep = [j for j, t in enumerate(negs) if isinstance(t, str) and t.strip()]
        out[M.NEGATIVES].append([negs[j] for j in keep])
        ns = nscores[i]
        out[M.NEGATIVE_SCORES].append([ns[j] for j in keep] if ns is not None and len(ns) == len(negs) else None)
        out[M.POSITIVE_SCORE].append(pscores[i])
        out[M.QUERY_ID].append(qid)
        out[M.QUERY_NOTE_ID].append(str(note))
        out[M.POSITIVE_ID].append(pids[i] or M.positive_id(pos))
    for reason, k in dropped.items():
        if k:
            log.warning("triplets: dropped %d rows (%s)", k, reason)
    return pa.table(out, schema=TRAIN_SCHEMA), {k: v for k, v in dropped.items() if v}


def note_bucket(note_id: str) -> float:
    """A stable number in [0, 1) for a note id (first 8 bytes of its SHA-256)."""
    return int.from_bytes(hashlib.sha256(str(note_id).encode("utf-8")).digest()[:8], "big") / 2**64


def split_by_note(table: pa.Table, dev_fraction: float) -> tuple[pa.Table, pa.Table]:
    """(train, dev): a note's triplets all go to dev when its bucket is below ``dev_fraction``."""
    is_dev = [note_bucket(n) < dev_fraction for n in table[M.QUERY_NOTE_ID].to_pylist()]
    mask = pa.array(is_dev, pa.bool_())
    return table.filter(pc.invert(mask)), table.filter(mask)


def with_negatives(table: pa.Table, num_negatives: int) -> tuple[pa.Table, int]:
    """Rows with at least ``num_negatives`` negatives, truncated to the hardest ``num_negatives``; and how many
    rows had fewer (left out)."""
    negs = table[M.NEGATIVES].to_pylist()
    keep = pa.array([len(n) >= num_negatives for n in negs], pa.bool_())
    kept = table.filter(keep)
    for col in (c for c in (M.NEGATIVES, M.NEGATIVE_SCORES) if c in kept.column_names):
        vals = kept[col].to_pylist()
        cut = pa.array([v[:num_negatives] if v is not None else None for v in vals], TRAIN_SCHEMA.field(col).type)
        kept = kept.set_column(kept.schema.get_field_index(col), col, cut)
    return kept, table.num_rows - kept.num_rows


def teacher_scores(table: pa.Table, num_negatives: int) -> tuple[list[float], list[list[float]]]:
    """(positive scores, negative scores) for distillation; a clear error when any row lacks them."""
    pos, neg = table[M.POSITIVE_SCORE].to_pylist(), table[M.NEGATIVE_SCORES].to_pylist()
    bad = [i for i, (p, n) in enumerate(zip(pos, neg)) if p is None or n is None or len(n) != num_negatives]
    if bad:
        raise TripletsError(f"train.distill_weight > 0 needs the mining scores of every positive and negative; "
                            f"{len(bad)} of {table.num_rows} triplets lack them (first: "
                            f"{table[M.QUERY_ID][bad[0]].as_py()}); mine them with medembed mine-negatives")
    return [float(p) for p in pos], [[float(x) for x in n] for n in neg]


def dev_pairs(dev: pa.Table) -> pa.Table:
    """The dev split as (pair_id, note_id, query, passage) rows for ``evaluation.datasets.dataset_from_pairs``."""
    return pa.table({"pair_id": dev[M.QUERY_ID], "note_id": dev[M.QUERY_NOTE_ID], "query": dev[M.QUERY],
                     "passage": dev[M.POSITIVE]})
