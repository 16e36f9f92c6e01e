"""Column names, Arrow schemas, statuses and failure reasons of synthetic (query, passage) pairs.

Imports no Ray: this is the contract with the triplet/hard-negative stage.
"""

from __future__ import annotations

import hashlib

import pyarrow as pa

# --- pairs ---------------------------------------------------------------------------------
PAIR_ID = "pair_id"  # deterministic: hash(note_id, generator_key, query)
NOTE_ID = "note_id"
PART_INDEX = "part_index"  # which part of a long note the pair came from (0 for short notes)
QUERY = "query"
QUERY_TYPE = "query_type"
PASSAGE = "passage"
RELEVANCE = "relevance"
GENERATOR = "generator"  # backend name: extractive, openai, vllm
MODEL = "model"
PROMPT_VERSION = "prompt_version"
CREATED_AT = "created_at"

PAIR_COLUMNS = (PAIR_ID, NOTE_ID, PART_INDEX, QUERY, QUERY_TYPE, PASSAGE, RELEVANCE, GENERATOR, MODEL,
                PROMPT_VERSION, CREATED_AT)

PAIR_SCHEMA = pa.schema(
    [
        pa.field(PAIR_ID, pa.string(), nullable=False),
        pa.field(NOTE_ID, pa.string(), nullable=False),
        pa.field(PART_INDEX, pa.int32()),
        pa.field(QUERY, pa.string()),
        pa.field(QUERY_TYPE, pa.string()),
        pa.field(PASSAGE, pa.string()),
        pa.field(RELEVANCE, pa.float64()),
        pa.field(GENERATOR, pa.string()),
        pa.field(MODEL, pa.string()),
        pa.field(PROMPT_VERSION, pa.string()),
        pa.field(CREATED_AT, pa.timestamp("us", tz="UTC")),
    ]
)

# --- per-note ledger ---------------------------------------------------------------------------
GENERATOR_KEY = "generator_key"  # generator|model|prompt_version: what "done" is relative to
STATUS = "status"
REASON = "reason"
N_PAIRS = "n_pairs"
N_PARTS = "n_parts"
ATTEMPTS = "attempts"  # HTTP requests made for the note, retries included
DETAIL = "detail"  # short, secret-free description of the failure of each failed part
DROPPED = "dropped"  # JSON object: validation rule -> pairs dropped by it
RUN_ID = "run_id"
FINISHED_AT = "finished_at"

LEDGER_SCHEMA = pa.schema(
    [
        pa.field(NOTE_ID, pa.string(), nullable=False),
        pa.field(GENERATOR_KEY, pa.string()),
        pa.field(STATUS, pa.string()),
        pa.field(REASON, pa.string()),
        pa.field(N_PAIRS, pa.int32()),
        pa.field(N_PARTS, pa.int32()),
        pa.field(ATTEMPTS, pa.int32()),
        pa.field(DETAIL, pa.string()),
        pa.field(DROPPED, pa.string()),
        pa.field(RUN_ID, pa.string()),
        pa.field(FINISHED_AT, pa.timestamp("us", tz="UTC")),
    ]
)

# Rows leaving the generation stage: one per note, the ledger columns plus its pairs (JSON list).
PAIRS_JSON = "pairs_json"
RESULT_SCHEMA = LEDGER_SCHEMA.append(pa.field(PAIRS_JSON, pa.string()))

# statuses
S_OK = "ok"
S_FAILED = "failed"
S_SKIPPED = "skipped"  # already done by an earlier run: never written to the ledger

# failure reasons (stable strings, counted in run manifests)
F_MALFORMED = "malformed_output"
F_REFUSAL = "refusal"
F_TIMEOUT = "timeout"
F_EMPTY = "empty"
F_HTTP_ERROR = "http_error"
F_TRUNCATED = "truncated"
FAILURE_REASONS = (F_MALFORMED, F_REFUSAL, F_TIMEOUT, F_EMPTY, F_HTTP_ERROR, F_TRUNCATED)

# validation rules that drop single pairs (counted in run manifests)
D_SCHEMA = "invalid_schema"
D_LOW_RELEVANCE = "low_relevance"
D_UNGROUNDED = "ungrounded"
D_DUPLICATE = "duplicate_query"
DROP_RULES = (D_SCHEMA, D_LOW_RELEVANCE, D_UNGROUNDED, D_DUPLICATE)

QUERY_TYPES = ("keyword", "question", "diagnosis", "treatment", "procedure", "follow_up", "title",
               "inverse_cloze", "finding", "other")


def generator_key(generator: str, model: str, prompt_version: str) -> str:
    """What a note is "done" relative to: the same backend, model and prompt version."""
    return f"{generator}|{model}|{prompt_version}"


def pair_id(note_id: str, gen_key: str, query: str) -> str:
    h = hashlib.sha256()
    for p in (note_id, gen_key, query):
        h.update(p.encode("utf-8"))
        h.update(b"\x1f")
    return h.hexdigest()[:32]
