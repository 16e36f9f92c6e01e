"""Change detection: which documents a table already holds unchanged (by signature), and dropping them.

A document's signature is its chunk hashes in order (``schema.doc_signature``). Documents whose
signature matches the stored one are skipped before embedding; changed ones keep all their chunks
and replace the stored ones at commit time.
"""

from __future__ import annotations

import itertools
from typing import Any

import pyarrow as pa

from medembed import schema as S


def existing_signatures(ds: Any) -> dict[str, str]:
    """doc_id -> signature (chunk hashes in order) of every document the table holds."""
    if ds is None:
        return {}
    t = ds.to_table(columns=[S.DOC_ID, S.CHUNK_INDEX, S.CONTENT_HASH])
    rows = sorted(zip(t.column(S.DOC_ID).to_pylist(), t.column(S.CHUNK_INDEX).to_pylist(),
                      t.column(S.CONTENT_HASH).to_pylist()))
    out: dict[str, str] = {}
    for doc_id, group in itertools.groupby(rows, key=lambda r: r[0]):
        out[doc_id] = S.doc_signature([h for _, _, h in group])
    return out


_KNOWN_CACHE: dict[str, dict[str, str]] = {}


def _resolve_known(known: Any) -> dict[str, str]:
    """``known`` may be an ObjectRef (large tables): fetch it once per worker process."""
    if isinstance(known, dict):
        return known
    import ray

    key = known.hex()
    if key not in _KNOWN_CACHE:
        _KNOWN_CACHE.clear()
        _KNOWN_CACHE[key] = ray.get(known)
    return _KNOWN_CACHE[key]


def filter_unchanged_docs(chunks: pa.Table, known: Any, counters: Any = None) -> pa.Table:
    """Drop every chunk of documents the table already holds unchanged (same chunk hashes, in order).

    ``chunks`` must hold all chunks of each of its documents (true for the output of one
    ``chunk_batch`` call); a changed document keeps all its chunks and replaces the old ones.
    """
    known = _resolve_known(known)
    docs = chunks.column(S.DOC_ID).to_pylist()
    hashes = chunks.column(S.CONTENT_HASH).to_pylist()
    per_doc: dict[str, list[str]] = {}
    for d, h in zip(docs, hashes):  # chunk_batch emits a document's chunks in order
        per_doc.setdefault(d, []).append(h)
    unchanged = {d for d, hs in per_doc.items() if known.get(d) == S.doc_signature(hs)}
    kept = chunks.filter(pa.array([d not in unchanged for d in docs], pa.bool_())) if unchanged else chunks
    if counters is not None:  # keyed by the batch's documents: a re-run task replaces, not adds, its counts
        from medembed.runtime.counters import block_key

        counters.put.remote(block_key(per_doc), {"chunks_total": chunks.num_rows,
                                                 "chunks_unchanged": chunks.num_rows - kept.num_rows,
                                                 "documents_unchanged": len(unchanged)})
    return kept
