"""Reading pairs and building the candidate table (positives + optional corpus chunks) in LanceDB.

Positives are embedded by the job's embed stage (``stages.embed.EmbedStage``, document side) and written with
the one write path (``index.writer.write_dataset``); corpus chunks come from a ``medembed embed`` table
of the same model and are copied, not re-embedded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import ray

from medembed import schema as S
from medembed.config import StoreConfig
from medembed.embedding.card import ModelCard
from medembed.embedding.chunking import whole_document_chunks
from medembed.index import serving
from medembed.index.indexes import maintain_table
from medembed.index.tables import check_model, table_name, table_uri
from medembed.index.writer import commit_fragments, write_dataset
from medembed.mining import columns as M
from medembed.mining.config import MineNegativesJobConfig
from medembed.runtime.storage import DEFAULT_STORAGE, Storage, join
from medembed.synth import columns as P

log = logging.getLogger(__name__)

PAIR_INPUT_COLUMNS = (P.PAIR_ID, P.NOTE_ID, P.QUERY, P.PASSAGE)


def read_pairs(path: str, storage: Storage = DEFAULT_STORAGE, limit: int | None = None) -> pa.Table:
    """Pairs (PAIR_INPUT_COLUMNS) from a Parquet file/folder or a synth output_dir, sorted by pair id."""
    from medembed.synth.ledger import read_pairs_from

    table = read_pairs_from(path, storage)
    missing = [c for c in PAIR_INPUT_COLUMNS if c not in table.column_names]
    if missing:
        raise KeyError(f"pairs at {path} lack columns {missing}; got {table.column_names}")
    table = table.select(list(PAIR_INPUT_COLUMNS)).cast(pa.schema([(c, pa.string()) for c in PAIR_INPUT_COLUMNS]))
    table = table.filter(pc.and_(pc.is_valid(table[P.QUERY]), pc.is_valid(table[P.PASSAGE])))
    table = table.sort_by(P.PAIR_ID)
    return table.slice(0, limit) if limit else table


def positive_rows(pairs: pa.Table) -> pa.Table:
    """Unique positive passages as chunk rows (CHUNK_COLUMNS); each keeps the note id of its first pair."""
    seen: dict[str, tuple[str, str]] = {}
    for note, passage in zip(pairs[P.NOTE_ID].to_pylist(), pairs[P.PASSAGE].to_pylist()):
        pid = M.positive_id(passage)
        if pid not in seen:
            seen[pid] = (note, passage)
    ids = sorted(seen)
    texts = [seen[i][1] for i in ids]
    return whole_document_chunks(ids, [seen[i][0] for i in ids], [""] * len(ids), texts)


@dataclass(frozen=True)
class CandidateTable:
    db_uri: str
    name: str
    uri: str
    rows: int
    positives: int
    corpus_chunks: int
    index: dict[str, Any]


def split_table(table: pa.Table, rows: int) -> list[pa.Table]:
    """Zero-copy slices of ``rows`` rows (at least one, possibly empty, slice)."""
    return [table.slice(i, rows) for i in range(0, table.num_rows, rows)] or [table]


def build_candidate_table(cfg: MineNegativesJobConfig, card: ModelCard, pairs: pa.Table,
                          write_positives: Callable[[pa.Table, str, pa.Schema], pa.Table] | None = None,
                          storage: Storage = DEFAULT_STORAGE,
                          embed_rows: Callable[[pa.Table], ray.data.Dataset] | None = None) -> CandidateTable:
    """(Re)build the candidate table for this run; returns where it is and what it holds.

    Positives are embedded by ``embed_rows`` (the job's embed stage, ``stages.embed.EmbedStage.over_table``:
    a pool of ``embed.num_actors``) and streamed to the table, or, with ``write_positives(rows, uri, schema)``,
    embedded and written as Lance data files by the caller's actor (it returns the ``FragmentWriter`` output),
    then committed here. Corpus chunks (``candidates.table``) are read from their table and written after them.
    """
    cc = cfg.candidates
    name = table_name("mining_candidates", card.slug, configured=cc.store_table)
    uri = table_uri(cc.store_uri, name)
    schema = S.table_schema(card.dim, card.model_id, card.revision, card.backend, card.precision)
    if storage.lance_dataset(uri) is not None:  # derived data: rebuilt so stale candidates never leak in
        log.info("dropping the previous candidate table %s", uri)
        storage.lancedb_connect(cc.store_uri).drop_table(name)

    positives = positive_rows(pairs)
    corpus = corpus_candidates(cfg, card, schema, storage)
    write = {"storage": storage, "commit_every": cc.commit_every, "progress": "candidates written"}
    if write_positives is None:
        if embed_rows is None:
            raise ValueError("build_candidate_table needs embed_rows (the job's embed stage) or write_positives")
        pos_ds = embed_rows(positives)
        rows_in = pos_ds.union(corpus) if corpus is not None else pos_ds
        rows = write_dataset(rows_in, uri, schema, block_mib=cfg.embed.block_mib, **write).stats.rows
    else:
        rows = commit_fragments(write_positives(positives, uri, schema), uri, schema, **write).stats.rows
        if corpus is not None:
            rows += write_dataset(corpus, uri, schema, block_mib=cfg.embed.block_mib, **write).stats.rows
    store_cfg = StoreConfig(uri=cc.store_uri, table=name, fts=False, ann_min_rows=cc.ann_min_rows, compact=True)
    index = maintain_table(cc.store_uri, name, store_cfg, storage) if rows else {"rows": 0, "ann_index": None}
    log.info("candidate table %s: %d rows (%d positives, %d corpus chunks)", uri, rows, positives.num_rows,
             rows - positives.num_rows)
    return CandidateTable(cc.store_uri, name, join(uri), rows, positives.num_rows, rows - positives.num_rows, index)


def corpus_candidates(cfg: MineNegativesJobConfig, card: ModelCard, schema: pa.Schema,
                      storage: Storage = DEFAULT_STORAGE) -> ray.data.Dataset | None:
    """The rows of ``candidates.table`` (a table, or a serving name at its served version), if one is set."""
    cc = cfg.candidates
    if not cc.table:
        return None
    corpus_table, corpus_version = serving.resolve(cc.uri, cc.table, storage)
    corpus_uri = table_uri(cc.uri, corpus_table)
    corpus = storage.lance_dataset(corpus_uri)
    if corpus is None:
        raise FileNotFoundError(f"candidates.table {cc.table!r} not found in {cc.uri}")
    check_model(corpus, card.model_id, card.dim, corpus_uri)
    return ray.data.read_lance(corpus_uri, version=corpus_version, columns=schema.names,
                               storage_options=storage.lance_options(corpus_uri))
