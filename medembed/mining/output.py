"""Writing triplets as Parquet (nested or flat) and the optional, guarded upload to the HF Hub."""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray

from medembed.mining import columns as M
from medembed.runtime.storage import DEFAULT_STORAGE, Storage, is_remote

log = logging.getLogger(__name__)

HF_TOKEN_ENV = "HF_TOKEN"


class HubUploadError(RuntimeError):
    """The triplets could not be pushed to the Hub; the message never holds the token."""


def nested_rows(batch: pa.Table) -> pa.Table:
    """Ray Data UDF: mined rows -> NESTED_SCHEMA (drops the per-query filter statistics)."""
    return batch.select(M.NESTED_SCHEMA.names).cast(M.NESTED_SCHEMA)


def flat_rows(batch: pa.Table) -> pa.Table:
    """Ray Data UDF: mined rows -> FLAT_SCHEMA, one row per (query, positive, negative)."""
    counts = batch[M.N_NEGATIVES].to_numpy(zero_copy_only=False).astype(np.int64)
    parent = pa.array(np.repeat(np.arange(len(counts)), counts), pa.int64())
    base = batch.select([M.QUERY, M.POSITIVE, M.QUERY_ID, M.QUERY_NOTE_ID, M.POSITIVE_ID, M.POSITIVE_SCORE]).take(parent)
    ranks = [r for k in counts for r in range(int(k))]
    cols = {
        M.NEGATIVE: pc.list_flatten(batch[M.NEGATIVES]),
        M.NEGATIVE_ID: pc.list_flatten(batch[M.NEGATIVE_IDS]),
        M.NEGATIVE_NOTE_ID: pc.list_flatten(batch[M.NEGATIVE_NOTE_IDS]),
        M.NEGATIVE_SCORE: pc.list_flatten(batch[M.NEGATIVE_SCORES]),
        M.NEGATIVE_RANK: pa.array(ranks, pa.int32()),
    }
    data = {name: (base[name] if name in base.column_names else cols[name]) for name in M.FLAT_SCHEMA.names}
    return pa.table(data).cast(M.FLAT_SCHEMA)


def write_triplets(mined: ray.data.Dataset, out_dir: str, fmt: str, storage: Storage = DEFAULT_STORAGE) -> int:
    """Write ``mined`` to ``out_dir`` as Parquet; return the number of rows written."""
    udf, schema = (flat_rows, M.FLAT_SCHEMA) if fmt == "flat" else (nested_rows, M.NESTED_SCHEMA)
    ds = mined.map_batches(udf, batch_format="pyarrow").materialize()
    rows = ds.count()
    fs, path = storage.fs(out_dir)
    fs.makedirs(path, exist_ok=True)
    if rows == 0:  # keep the output loadable: one empty file with the schema
        with fs.open(f"{path}/part-empty.parquet", "wb") as fh:
            pq.write_table(schema.empty_table(), fh)
    elif is_remote(out_dir):
        from pyarrow.fs import FSSpecHandler, PyFileSystem

        ds.write_parquet(path, filesystem=PyFileSystem(FSSpecHandler(fs)))
    else:
        ds.write_parquet(path)
    log.info("wrote %d %s triplet rows to %s", rows, fmt, out_dir)
    return rows


def push_to_hub(out_dir: str, repo: str, private: bool = True) -> dict[str, Any]:
    """Push the written triplets to a Hub dataset repo. Token: env HF_TOKEN only; clear error when offline."""
    token = os.environ.get(HF_TOKEN_ENV)
    if not token:
        raise HubUploadError(f"output.hub_repo={repo!r} is set but {HF_TOKEN_ENV} is not in the environment")
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        raise HubUploadError(f"output.hub_repo={repo!r} is set but HF_HUB_OFFLINE is on; unset it to upload")
    import datasets

    data = datasets.load_dataset("parquet", data_files=f"{out_dir.rstrip('/')}/*.parquet", split="train")
    try:
        data.push_to_hub(repo, private=private, token=token)
    except Exception as e:  # network, auth, missing repo: report without the token
        msg = str(e).replace(token, "***")
        raise HubUploadError(f"push to {repo} failed: {type(e).__name__}: {msg}") from None
    log.info("pushed %d rows to the Hub dataset %s", len(data), repo)
    return {"repo": repo, "rows": len(data), "private": private}
