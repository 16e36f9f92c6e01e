"""Column names, Arrow schemas and id/hash helpers shared by every stage.

This module imports no Ray, LanceDB or torch: it is the contract between stages.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa

# --- normalized documents (output of ingest) -------------------------------------------
DOC_ID = "doc_id"
TITLE = "title"
TEXT = "text"
METADATA = "metadata"  # JSON-encoded object (string) so heterogeneous corpora share a schema
SOURCE = "source"  # where the record came from: "path:line" or "hf:name/split:row"

DOC_COLUMNS = (DOC_ID, TITLE, TEXT, METADATA, SOURCE)

DOC_SCHEMA = pa.schema(
    [
        pa.field(DOC_ID, pa.string(), nullable=False),
        pa.field(TITLE, pa.string()),
        pa.field(TEXT, pa.string(), nullable=False),
        pa.field(METADATA, pa.string()),
        pa.field(SOURCE, pa.string()),
    ]
)

# --- chunks (output of chunking) ---------------------------------------------------------
CHUNK_ID = "chunk_id"
CHUNK_INDEX = "chunk_index"
CONTENT_HASH = "content_hash"
N_TOKENS = "n_tokens"

# hash of everything that determines a document's chunks (id, title, text, metadata, chunking parameters,
# tokenizer): computed before chunking, stored on every chunk row of tables written by embed/reembed
DOC_HASH = "doc_hash"
DOC_CHUNKS = "doc_chunks"  # how many chunks the document has: a document stored in part is not unchanged

CHUNK_COLUMNS = (CHUNK_ID, DOC_ID, CHUNK_INDEX, TITLE, TEXT, METADATA, CONTENT_HASH, N_TOKENS, DOC_HASH, DOC_CHUNKS)


def chunk_schema(doc_hash: bool = True) -> pa.Schema:
    """Arrow schema of chunk rows (the embedder's input). ``doc_hash``: with ``DOC_HASH`` and ``DOC_CHUNKS``
    (chunks of ``embedding.chunking``); without: one chunk per whole document (evaluation corpora, mining
    positives), whose rows no change detection sees."""
    return pa.schema([
        pa.field(CHUNK_ID, pa.string()),
        pa.field(DOC_ID, pa.string()),
        pa.field(CHUNK_INDEX, pa.int32()),
        pa.field(TITLE, pa.string()),
        pa.field(TEXT, pa.string()),
        pa.field(METADATA, pa.string()),
        pa.field(CONTENT_HASH, pa.string()),
        pa.field(N_TOKENS, pa.int32()),
        *([pa.field(DOC_HASH, pa.string()), pa.field(DOC_CHUNKS, pa.int32())] if doc_hash else []),
    ])


CHUNK_SCHEMA = chunk_schema()

# --- embedded chunks (rows of a LanceDB table) -------------------------------------------
VECTOR = "vector"
MODEL_ID = "model_id"
EMBEDDED_AT = "embedded_at"

# keys of the table-level metadata (Arrow schema metadata of the Lance dataset)
META_MODEL_ID = "medembed.model_id"
META_MODEL_REVISION = "medembed.model_revision"
META_DIM = "medembed.dim"
META_SCHEMA_VERSION = "medembed.schema_version"
META_BACKEND = "medembed.backend"  # torch, onnx, onnx-int8 (tables written before: absent = torch)
META_PRECISION = "medembed.precision"  # float32, bfloat16, int8, auto (absent = float32)
META_INSTRUMENT = "medembed.instrument"  # "true": vectors of the benchmark instrument (embedding.instrument), no model
SCHEMA_VERSION = "1"
SCHEMA_VERSION_DOC_HASH = "2"  # tables with the ``doc_hash`` and ``doc_chunks`` columns
DOC_HASH_FIELDS = (pa.field(DOC_HASH, pa.string()), pa.field(DOC_CHUNKS, pa.int32()))


def table_schema(dim: int, model_id: str = "", model_revision: str = "", backend: str = "torch",
                 precision: str = "float32", doc_hash: bool = False) -> pa.Schema:
    """Arrow schema of an embedding table, with model id/revision/dim and encoder backend/precision in its metadata.

    ``doc_hash``: the table carries ``DOC_HASH`` and ``DOC_CHUNKS`` (the corpus tables of ``embed``/``reembed``, whose nightly runs
    detect unchanged documents before chunking them); derived tables (evaluation, mining) do not need it.
    """
    extra = list(DOC_HASH_FIELDS) if doc_hash else []
    return pa.schema(
        [
            pa.field(CHUNK_ID, pa.string(), nullable=False),
            pa.field(DOC_ID, pa.string(), nullable=False),
            pa.field(CHUNK_INDEX, pa.int32()),
            pa.field(TITLE, pa.string()),
            pa.field(TEXT, pa.string()),
            pa.field(METADATA, pa.string()),
            pa.field(VECTOR, pa.list_(pa.float32(), dim)),
            pa.field(MODEL_ID, pa.string()),
            pa.field(CONTENT_HASH, pa.string()),
            pa.field(N_TOKENS, pa.int32()),
            pa.field(EMBEDDED_AT, pa.timestamp("us", tz="UTC")),
            *extra,
        ],
        metadata={
            META_MODEL_ID: model_id,
            META_MODEL_REVISION: model_revision,
            META_DIM: str(dim),
            META_SCHEMA_VERSION: SCHEMA_VERSION_DOC_HASH if doc_hash else SCHEMA_VERSION,
            META_BACKEND: backend,
            META_PRECISION: precision,
            **({META_INSTRUMENT: "true"} if backend == "instrument" else {}),
        },
    )


# --- model folders ------------------------------------------------------------------------
CARD_FILE = "medembed_model.json"  # the model card (embedding.card) saved next to a model medembed produced


# --- quarantine ----------------------------------------------------------------------------
Q_SOURCE = "source"  # file or dataset
Q_LOCATION = "location"  # line / row number inside the source
Q_REASON = "reason"
Q_DETAIL = "detail"
Q_RECORD = "record"  # the raw record, truncated

QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field(Q_SOURCE, pa.string()),
        pa.field(Q_LOCATION, pa.string()),
        pa.field(Q_REASON, pa.string()),
        pa.field(Q_DETAIL, pa.string()),
        pa.field(Q_RECORD, pa.string()),
    ]
)

# quarantine reasons (stable strings: they are counted in run manifests)
R_MALFORMED_JSON = "malformed_json"
R_MALFORMED_CSV = "malformed_csv"
R_NOT_AN_OBJECT = "not_an_object"
R_MISSING_ID = "missing_id"
R_MISSING_TEXT = "missing_text"
R_EMPTY_TEXT = "empty_text"
R_UNDECODABLE = "undecodable_bytes"
R_DUPLICATE_ID = "duplicate_id"
R_TOO_LONG = "too_long"
R_UNREADABLE_FILE = "unreadable_file"

RECORD_PREVIEW_CHARS = 500


def chunk_id(doc_id: str, index: int) -> str:
    """Deterministic chunk id: the document id and the chunk's position in it."""
    return f"{doc_id}#{index}"


def content_hash(*parts: str) -> str:
    """Stable hash of a chunk's content (title + text); changes iff the content changes."""
    h = hashlib.sha256()
    for p in parts:
        h.update((p or "").encode("utf-8"))
        h.update(b"\x1f")
    return h.hexdigest()[:32]


def doc_hash(doc_id: str, title: str, text: str, metadata: str, params_key: str) -> str:
    """Hash of a normalized document and the chunking parameters (``ChunkParams.key``): equal hashes mean
    equal chunks, so a document whose hash the table holds needs no re-tokenization."""
    h = hashlib.blake2b(digest_size=16)
    for p in (params_key, doc_id, title, metadata, text):
        b = (p or "").encode("utf-8", "surrogatepass")
        h.update(len(b).to_bytes(8, "little"))  # length-prefixed: no two field splits hash alike
        h.update(b)
    return h.hexdigest()


def vectors_to_arrow(vectors: np.ndarray) -> pa.FixedSizeListArray:
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1), pa.float32())
    return pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])
