"""Column names, Arrow schemas and shortfall reasons of mined triplets.

Imports no Ray: this is the contract with training (sentence-transformers losses read the first
three columns: ``query``, ``positive``, ``negatives``/``negative``).
"""

from __future__ import annotations

import hashlib

import pyarrow as pa

# --- nested triplets: one row per query ---------------------------------------------------
QUERY = "query"
POSITIVE = "positive"
NEGATIVES = "negatives"  # list<string>, best (hardest) first
QUERY_ID = "query_id"  # the pair's pair_id
QUERY_NOTE_ID = "query_note_id"
POSITIVE_ID = "positive_id"  # candidate id of the positive passage
NEGATIVE_IDS = "negative_ids"
NEGATIVE_NOTE_IDS = "negative_note_ids"
POSITIVE_SCORE = "positive_score"
NEGATIVE_SCORES = "negative_scores"
N_NEGATIVES = "n_negatives"
SHORTFALL_REASON = "shortfall_reason"  # null when the query got num_negatives negatives

NESTED_SCHEMA = pa.schema([
    pa.field(QUERY, pa.string()),
    pa.field(POSITIVE, pa.string()),
    pa.field(NEGATIVES, pa.list_(pa.string())),
    pa.field(QUERY_ID, pa.string()),
    pa.field(QUERY_NOTE_ID, pa.string()),
    pa.field(POSITIVE_ID, pa.string()),
    pa.field(NEGATIVE_IDS, pa.list_(pa.string())),
    pa.field(NEGATIVE_NOTE_IDS, pa.list_(pa.string())),
    pa.field(POSITIVE_SCORE, pa.float32()),
    pa.field(NEGATIVE_SCORES, pa.list_(pa.float32())),
    pa.field(N_NEGATIVES, pa.int32()),
    pa.field(SHORTFALL_REASON, pa.string()),
])

# --- flat triplets: one row per (query, positive, negative), for MultipleNegativesRankingLoss ----
NEGATIVE = "negative"
NEGATIVE_ID = "negative_id"
NEGATIVE_NOTE_ID = "negative_note_id"
NEGATIVE_SCORE = "negative_score"
NEGATIVE_RANK = "negative_rank"  # 0 = hardest negative of the query

FLAT_SCHEMA = pa.schema([
    pa.field(QUERY, pa.string()),
    pa.field(POSITIVE, pa.string()),
    pa.field(NEGATIVE, pa.string()),
    pa.field(QUERY_ID, pa.string()),
    pa.field(QUERY_NOTE_ID, pa.string()),
    pa.field(POSITIVE_ID, pa.string()),
    pa.field(NEGATIVE_ID, pa.string()),
    pa.field(NEGATIVE_NOTE_ID, pa.string()),
    pa.field(POSITIVE_SCORE, pa.float32()),
    pa.field(NEGATIVE_SCORE, pa.float32()),
    pa.field(NEGATIVE_RANK, pa.int32()),
])

# --- per-query filter statistics (internal columns, dropped before writing) ---------------------
ST_RETRIEVED = "_retrieved"
ST_SAME_NOTE = "_removed_same_note"
ST_CONSIDERED = "_considered"  # candidates that reached the false-negative filter
ST_ABS_MARGIN = "_removed_absolute_margin"
ST_REL_MARGIN = "_removed_relative_margin"
STAT_COLUMNS = (ST_RETRIEVED, ST_SAME_NOTE, ST_CONSIDERED, ST_ABS_MARGIN, ST_REL_MARGIN)
MINED_SCHEMA = NESTED_SCHEMA
for _c in STAT_COLUMNS:
    MINED_SCHEMA = MINED_SCHEMA.append(pa.field(_c, pa.int32()))

# --- why a query got fewer than num_negatives (stable strings, counted in run manifests) ---------
R_TOO_FEW_CANDIDATES = "too_few_candidates"  # the retrieved list minus the positive cannot fill the window
R_SAME_NOTE = "same_note_exclusion"  # enough candidates before removing passages of the query's note
R_FALSE_NEGATIVE_FILTER = "false_negative_filter"  # enough candidates before the margin filter
SHORTFALL_REASONS = (R_TOO_FEW_CANDIDATES, R_SAME_NOTE, R_FALSE_NEGATIVE_FILTER)

POSITIVE_PREFIX = "pos:"


def positive_id(passage: str) -> str:
    """Candidate id of a pair passage: passages are deduplicated by text."""
    return POSITIVE_PREFIX + hashlib.sha256(passage.encode("utf-8")).hexdigest()[:24]
