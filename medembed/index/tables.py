"""LanceDB tables: their names, where they are, their metadata and the model they belong to.

Opening a table is the job's storage context: ``storage.lance_dataset(table_uri(db_uri, name))`` or
``storage.lancedb_connect(db_uri)`` (``runtime.storage.Storage``). The index layer knows tables, not models:
model identity arrives as schema metadata. Writing is
``index.writer``, change detection ``index.changes``, indexes ``index.indexes``, search ``index.search``.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from medembed import schema as S
from medembed.runtime.storage import join

log = logging.getLogger(__name__)


class TableModelMismatch(RuntimeError):
    """The table holds vectors of another model or dimension."""


def table_name(*parts: str, key: str | None = None, configured: str | None = None) -> str:
    """The name of every kind of table medembed writes: ``configured`` when set, else ``parts`` joined by
    ``__`` and, with ``key``, the first 8 hex of its SHA-256 (what the rows depend on beyond the parts):

    - embed, reembed: ``<corpus or serving name>__<model slug>`` (``store.table`` when set)
    - pipeline: ``<corpus>__<model slug>__<8 hex of model id@revision>``
    - evaluation: ``eval__<dataset>__<model slug>__<8 hex of the document key>``
    - mining: ``mining_candidates__<model slug>`` (``candidates.store_table`` when set)
    """
    if configured:
        return configured
    name = "__".join(parts)
    return f"{name}__{hashlib.sha256(key.encode()).hexdigest()[:8]}" if key is not None else name


def table_uri(db_uri: str, table: str) -> str:
    return join(db_uri, f"{table}.lance")


def table_names(db: Any) -> list[str]:
    listed = db.list_tables()
    return list(listed.tables) if hasattr(listed, "tables") else list(listed)


def table_metadata(ds: Any) -> dict[str, str]:
    md = ds.schema.metadata or {}
    return {k.decode(): v.decode() for k, v in md.items()}


def check_model(ds: Any, model_id: str, dim: int, uri: str) -> None:
    md = table_metadata(ds)
    have_model, have_dim = md.get(S.META_MODEL_ID), md.get(S.META_DIM)
    if have_model != model_id or have_dim != str(dim):
        raise TableModelMismatch(
            f"table {uri} holds vectors of model {have_model!r} (dim {have_dim}), not {model_id!r} (dim {dim}); "
            "write to another table (store.table=...) or re-embed it into a new table")


