"""Builders of test inputs shared by several test modules."""

from __future__ import annotations

import re
from datetime import datetime, timezone

import pyarrow as pa

from medembed.synth import columns as P
from tests.support.paths import sample_notes


def inverse_cloze(n_notes: int | None = None, per_note: int = 3) -> list[tuple[str, str, str]]:
    """(note id, query, passage) from the bundled sample notes: a sentence -> the next two sentences."""
    notes = sample_notes()[:n_notes]
    out = []
    for note in notes:
        sents = [s.strip() for s in re.split(r"(?<=[.!?])\s+", note["text"]) if s.strip()]
        out += [(note["id"], sents[i], " ".join(sents[i + 1:i + 3])) for i in range(min(per_note, len(sents) - 2))]
    return out


def sample_pairs_table(n_notes: int = 30) -> pa.Table:
    """Inverse-cloze pairs (PAIR_SCHEMA) from the bundled sample notes, up to 3 per note."""
    rows = [{P.PAIR_ID: P.pair_id(note, "test", query), P.NOTE_ID: note, P.PART_INDEX: 0, P.QUERY: query,
             P.QUERY_TYPE: "inverse_cloze", P.PASSAGE: passage, P.RELEVANCE: 0.5, P.GENERATOR: "test", P.MODEL: "none",
             P.PROMPT_VERSION: "v0", P.CREATED_AT: datetime(2025, 1, 1, tzinfo=timezone.utc)}
            for note, query, passage in inverse_cloze(n_notes, 3)]
    return pa.Table.from_pylist(rows, schema=P.PAIR_SCHEMA)
