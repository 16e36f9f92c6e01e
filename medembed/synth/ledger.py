"""Run folders, the per-note status ledger and reading pairs back.

Layout under ``synth.output_dir``, one folder per run as every job's output (``<dir>/<run id>/``)::

    <run_id>/pairs/*.parquet    pairs of the run (PAIR_SCHEMA)
    <run_id>/ledger/*.parquet   one row per note processed by the run (LEDGER_SCHEMA)
    <run_id>/_SUCCESS.json      written last: the run's counts; marks the run complete

Runs written before issue 23 sit under ``runs/<run_id>/``; they are still read (done notes, pairs) for one release.

Only complete runs count: a crashed run's files are ignored (and its notes redone), which makes
reruns idempotent. A note is done for a generator key once a complete run has it ``ok``; done
notes are skipped, so a note's pairs come from exactly one run and are never duplicated.
"""

from __future__ import annotations

import io
import logging
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from medembed.runtime import artifacts
from medembed.runtime.storage import DEFAULT_STORAGE, Storage, join
from medembed.synth import columns as C

log = logging.getLogger("medembed.synth")

LEGACY_RUNS = "runs"  # the old parent of run folders (<output_dir>/runs/<run id>/), read for one release
PAIRS_DIR = "pairs"
LEDGER_DIR = "ledger"
SUCCESS = artifacts.SUCCESS


def run_dir(output_dir: str, run_id: str) -> str:
    """A run's folder: ``<output_dir>/<run id>`` (a pipeline stage's run id ``<run>/generate_pairs`` nests)."""
    return join(output_dir, run_id)


def complete_runs(output_dir: str, storage: Storage = DEFAULT_STORAGE) -> list[str]:
    """Run folders (relative to ``output_dir``) with a success marker, oldest first: ``<run id>``, and the
    ``runs/<run id>`` of runs written before issue 23."""
    fs, path = storage.fs(output_dir)
    if not fs.exists(path):
        return []
    out = []
    for base, prefix in ((path.rstrip("/"), ""), (f"{path.rstrip('/')}/{LEGACY_RUNS}", f"{LEGACY_RUNS}/")):
        if not fs.isdir(base):
            continue
        for entry in fs.ls(base, detail=False):
            name = entry.rstrip("/").rsplit("/", 1)[-1]
            if fs.exists(f"{entry.rstrip('/')}/{SUCCESS}"):
                out.append(prefix + name)
    return sorted(out, key=lambda r: (r.rsplit("/", 1)[-1], r))


def _read_dir(uri: str, schema: pa.Schema, storage: Storage) -> pa.Table:
    fs, path = storage.fs(uri)
    if not fs.exists(path):
        return schema.empty_table()
    tables = []
    for f in sorted(fs.find(path)):
        if f.endswith(".parquet"):
            with fs.open(f, "rb") as fh:
                tables.append(pq.read_table(io.BytesIO(fh.read())).select(schema.names).cast(schema))
    return pa.concat_tables(tables) if tables else schema.empty_table()


def read_ledger(output_dir: str, storage: Storage = DEFAULT_STORAGE) -> pa.Table:
    """Ledger rows of all complete runs, oldest run first."""
    tabs = [_read_dir(join(run_dir(output_dir, r), LEDGER_DIR), C.LEDGER_SCHEMA, storage) for r in complete_runs(output_dir, storage)]
    return pa.concat_tables(tabs) if tabs else C.LEDGER_SCHEMA.empty_table()


def read_pairs(output_dir: str, storage: Storage = DEFAULT_STORAGE, gen_key: str | None = None) -> pa.Table:
    """Pairs of all complete runs (optionally of one generator key)."""
    tabs = [_read_dir(join(run_dir(output_dir, r), PAIRS_DIR), C.PAIR_SCHEMA, storage) for r in complete_runs(output_dir, storage)]
    t = pa.concat_tables(tabs) if tabs else C.PAIR_SCHEMA.empty_table()
    if gen_key is not None:
        gen, model, version = gen_key.split("|", 2)
        keep = [g == gen and m == model and v == version for g, m, v in
                zip(t[C.GENERATOR].to_pylist(), t[C.MODEL].to_pylist(), t[C.PROMPT_VERSION].to_pylist())]
        t = t.filter(pa.array(keep, pa.bool_()))
    return t


def done_note_ids(output_dir: str, gen_key: str, storage: Storage = DEFAULT_STORAGE) -> set[str]:
    """Notes that a complete run finished ``ok`` for ``gen_key``."""
    led = read_ledger(output_dir, storage)
    return {n for n, k, s in zip(led[C.NOTE_ID].to_pylist(), led[C.GENERATOR_KEY].to_pylist(),
                                 led[C.STATUS].to_pylist()) if k == gen_key and s == C.S_OK}


def mark_complete(output_dir: str, run_id: str, summary: dict[str, Any], storage: Storage = DEFAULT_STORAGE) -> None:
    """The run folder gets the common completion marker (``medembed.runtime.artifacts``)."""
    artifacts.mark_complete(run_dir(output_dir, run_id), "pairs", run_id, summary, storage)


def read_pairs_from(path: str, storage: Storage = DEFAULT_STORAGE) -> pa.Table:
    """Pairs of every complete run under a generate-pairs ``output_dir``, else any Parquet file or folder."""

    return read_pairs(path, storage) if complete_runs(path, storage) else storage.read_parquet(path)
