"""Change detection, the chunking side: only documents the diff selected are tokenized.

Which documents are new or changed is decided by ``index.diff.diff_hashes`` (a partitioned join on
Ray of document hashes, computed before chunking, against the table's ``doc_hash`` column): the driver
holds counts and the ids of changed documents, never a per-document map of the table. The chunking
UDF here drops every other document BEFORE the tokenizer sees it and reports how many it tokenized.
"""

from __future__ import annotations

import logging
from typing import Any

import pyarrow as pa

from medembed import schema as S
from medembed.embedding.chunking import ChunkParams, add_doc_hashes, chunk_batch
from medembed.index.diff import select_to_embed

log = logging.getLogger(__name__)


def ensure_doc_hash(ds: Any) -> tuple[Any, bool]:
    """A table written before ``doc_hash`` gets the ``doc_hash`` and ``doc_chunks`` columns, all null (a
    metadata-only Lance commit): each of its documents then counts as changed once and is re-embedded with its
    hash. Returns (dataset, whether the columns were added)."""
    if ds is None or S.DOC_HASH in ds.schema.names:
        return ds, False
    log.warning("table %s predates %r: adding the columns (null); every stored document counts as changed once "
                "and is re-embedded", ds.uri, S.DOC_HASH)
    ds.add_columns(list(S.DOC_HASH_FIELDS))  # moves ``ds`` to the new version
    return ds, True


def chunk_selected_documents(batch: pa.Table, params: ChunkParams, embed_sets: Any = None,
                             counters: Any = None) -> pa.Table:
    """Ray Data UDF: documents -> chunks of those selected by the diff (``embed_sets``; None: all of them).

    Unselected documents are dropped before tokenization. Counts go to ``counters`` keyed by the batch's
    documents, so a re-run task replaces, not adds, its counts.
    """
    if S.DOC_ID not in batch.column_names:  # an empty block (a source that yielded no documents)
        return _empty_chunks()
    docs = add_doc_hashes(batch, params)
    selected = select_to_embed(docs, embed_sets) if embed_sets is not None else docs
    chunks = chunk_batch(selected, params) if selected.num_rows else _empty_chunks()
    if counters is not None:
        from medembed.runtime.counters import block_key

        counters.put.remote(block_key(docs.column(S.DOC_ID).to_pylist()), {
            "documents_read_for_chunking": docs.num_rows, "documents_tokenized": selected.num_rows,
            "chunks_tokenized": chunks.num_rows})
    return chunks


def _empty_chunks() -> pa.Table:
    return S.CHUNK_SCHEMA.empty_table()
