"""Train/dev split of synthetic pairs by note, and reading pairs (or nested triplets) for evaluation.

The split is by note, so no dev query shares a note with a training pair: a note is dev when the
first 8 bytes of the SHA-256 of its id, read as a number in [0, 1), are below ``dev_fraction`` -- the
rule of ``medembed.training.data.split_by_note``, so the dev queries the pipeline's gate evaluates are
exactly the notes the trainer held out.
"""

from __future__ import annotations

import hashlib
import logging

import pyarrow as pa
import pyarrow.compute as pc

from medembed.evaluation.datasets import PAIR_COLUMNS
from medembed.runtime.storage import DEFAULT_STORAGE, Storage

log = logging.getLogger(__name__)

# nested triplets (medembed.mining.columns) -> pair columns
TRIPLET_TO_PAIR = {"query_id": "pair_id", "query_note_id": "note_id", "query": "query", "positive": "passage"}


def note_fraction(note_id: str) -> float:
    """A stable number in [0, 1) for a note: the first 8 bytes of SHA-256(note_id)."""
    return int.from_bytes(hashlib.sha256(str(note_id).encode("utf-8")).digest()[:8], "big") / 2**64


def is_dev_note(note_id: str, dev_fraction: float) -> bool:
    """Whether a note is held out; ``dev_fraction >= 1`` holds out every note (a dev-only source)."""
    return dev_fraction >= 1.0 or note_fraction(note_id) < dev_fraction


def split_by_note(table: pa.Table, dev_fraction: float, note_column: str = "note_id") -> tuple[pa.Table, pa.Table]:
    """(train rows, dev rows) of ``table``, split by the note in ``note_column``."""
    if note_column not in table.column_names:
        raise KeyError(f"cannot split by note: no column {note_column!r} (columns: {table.column_names})")
    dev = pa.array([is_dev_note(str(n), dev_fraction) for n in table[note_column].to_pylist()], pa.bool_())
    return table.filter(pc.invert(dev)), table.filter(dev)


def read_pair_rows(path: str, storage: Storage = DEFAULT_STORAGE) -> pa.Table:
    """(pair_id, note_id, query, passage) rows from pairs Parquet, a generate-pairs output_dir or nested triplets."""
    from medembed.synth.ledger import read_pairs_from

    table = read_pairs_from(path, storage)
    if all(c in table.column_names for c in TRIPLET_TO_PAIR) and "passage" not in table.column_names:
        table = table.select(list(TRIPLET_TO_PAIR)).rename_columns(list(TRIPLET_TO_PAIR.values()))
    missing = [c for c in PAIR_COLUMNS if c not in table.column_names]
    if missing:
        raise KeyError(f"{path}: neither pairs nor nested triplets (lacks {missing}; columns {table.column_names})")
    table = table.select(list(PAIR_COLUMNS)).cast(pa.schema([(c, pa.string()) for c in PAIR_COLUMNS]))
    return table.sort_by("pair_id")
