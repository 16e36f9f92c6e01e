"""Builders of test inputs shared by several test modules."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone

import pyarrow as pa

from medembed.synth import columns as P
from tests.support.paths import SAMPLE


def sample_pairs_table(n_notes: int = 30) -> pa.Table:
    """Inverse-cloze pairs from the bundled sample notes: a sentence -> the next two sentences."""
    rows = []
    notes = [json.loads(line) for line in SAMPLE.read_text().splitlines() if line.startswith("{")][:n_notes]
    for note in notes:
        sents = [s.strip() for s in re.split(r"(?<=[.!?])\s+", note["text"]) if s.strip()]
        for i in range(0, min(len(sents) - 2, 3)):
            query, passage = sents[i], " ".join(sents[i + 1:i + 3])
            rows.append({P.PAIR_ID: P.pair_id(note["id"], "test", query), P.NOTE_ID: note["id"], P.PART_INDEX: 0,
                         P.QUERY: query, P.QUERY_TYPE: "inverse_cloze", P.PASSAGE: passage, P.RELEVANCE: 0.5,
                         P.GENERATOR: "test", P.MODEL: "none", P.PROMPT_VERSION: "v0",
                         P.CREATED_AT: datetime(2025, 1, 1, tzinfo=timezone.utc)})
    return pa.Table.from_pylist(rows, schema=P.PAIR_SCHEMA)
