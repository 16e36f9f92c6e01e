"""Run ids and the one completion convention for every artifact medembed writes.

An artifact (a pairs run folder, a triplets folder, a model folder, evaluation results, a LanceDB
table) is complete when its folder holds ``_SUCCESS.json``, written last by the run that produced
it. The marker names the artifact kind, the run id, when it was written and a summary (counts,
inputs), so a later stage (or a rerun of the pipeline) asks one question everywhere:
``read_marker(uri)`` is None -> redo; else reuse. For a LanceDB table the marker sits inside the
table's ``.lance`` folder and records the table version it vouches for.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from typing import Any

from medembed.runtime.storage import DEFAULT_STORAGE, Storage, join

SUCCESS = "_SUCCESS.json"


def new_run_id(job: str) -> str:
    """``<job>-<UTC time>-<6 hex>``: sortable by start time, unique across concurrent runs."""
    return f"{job}-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:6]}"


def mark_complete(uri: str, kind: str, run_id: str, summary: dict[str, Any] | None = None,
                  storage: Storage = DEFAULT_STORAGE) -> str:
    """Write ``<uri>/_SUCCESS.json`` (after everything else of the artifact is written)."""
    fs, path = storage.fs(join(uri, SUCCESS))
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    marker = {"kind": kind, "run_id": run_id, "completed_at": datetime.now(timezone.utc).isoformat(),
              **(summary or {})}
    with fs.open(path, "w", encoding="utf-8") as fh:
        json.dump(marker, fh, indent=2, sort_keys=True, default=str)
    return join(uri, SUCCESS)


def read_marker(uri: str, storage: Storage = DEFAULT_STORAGE) -> dict[str, Any] | None:
    """The completion marker of the artifact at ``uri``, or None when it is absent (incomplete or never made)."""
    fs, path = storage.fs(join(uri, SUCCESS))
    if not fs.exists(path):
        return None
    with fs.open(path, "r", encoding="utf-8") as fh:
        return json.load(fh)


def is_complete(uri: str, storage: Storage = DEFAULT_STORAGE) -> bool:
    return read_marker(uri, storage) is not None


def clear_marker(uri: str, storage: Storage = DEFAULT_STORAGE) -> None:
    """Remove the marker before rewriting an artifact in place, so a crash leaves it incomplete."""
    fs, path = storage.fs(join(uri, SUCCESS))
    if fs.exists(path):
        fs.rm(path)
