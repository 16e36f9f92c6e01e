"""Index policy: compaction, the full-text index and (past a row threshold) the IVF_PQ vector index."""

from __future__ import annotations

import math
from typing import Any

from medembed import schema as S
from medembed.config import S3Config, StoreConfig
from medembed.index.tables import connect, open_dataset, table_uri


def compact(db_uri: str, table: str, s3: S3Config | None) -> int:
    """Merge small fragments into one commit; returns the fragments removed.

    Lance's own ``compact_files``, not LanceDB's ``Table.optimize``: that one also cleans up versions
    older than a week and refuses while such versions are tagged (served tables keep tags; version
    cleanup is ``index.serving.cleanup``'s job, with the configured retention).
    """
    stats = open_dataset(table_uri(db_uri, table), s3).optimize.compact_files()
    return int(getattr(stats, "fragments_removed", 0) or 0)


def finalize_table(db_uri: str, table: str, cfg: StoreConfig, s3: S3Config | None) -> dict[str, Any]:
    """Compact, then build the full-text index and (past the threshold) the ANN index.

    A table of one fragment without deleted rows has nothing to compact, and LanceDB (seconds of imports
    on a small job) is opened only when an index is to be built."""
    uri = table_uri(db_uri, table)
    ds = open_dataset(uri, s3)
    if ds is None:
        raise FileNotFoundError(f"no table {table!r} in {db_uri} to finalize")
    n = ds.count_rows()
    info: dict[str, Any] = {"rows": n, "fts_index": False, "ann_index": None}
    if cfg.compact and n:
        frags = ds.get_fragments()
        whole = len(frags) == 1 and frags[0].metadata.deletion_file is None
        info["fragments_compacted"] = 0 if whole else compact(db_uri, table, s3)
    ann = n >= max(cfg.ann_min_rows, 256)
    if not n or not (cfg.fts or ann):
        return info
    tbl = connect(db_uri, s3).open_table(table)
    if cfg.fts:
        tbl.create_fts_index(S.TEXT, replace=True)
        info["fts_index"] = True
    if ann:
        dim = tbl.schema.field(S.VECTOR).type.list_size
        partitions = max(1, min(int(math.sqrt(n)), n // 256))  # k-means needs ~256 rows per partition
        sub_vectors = next(d for d in (dim // 16, dim // 8, dim // 4, 1) if d >= 1 and dim % d == 0)
        tbl.create_index(metric=cfg.ann_metric, vector_column_name=S.VECTOR, index_type="IVF_PQ",
                         num_partitions=partitions, num_sub_vectors=sub_vectors, replace=True)
        info["ann_index"] = {"type": "IVF_PQ", "partitions": partitions, "sub_vectors": sub_vectors,
                             "metric": cfg.ann_metric}
    return info


def has_vector_index(tbl: Any) -> bool:
    return any(S.VECTOR in i.columns and "FTS" not in str(i.index_type).upper() for i in tbl.list_indices())
