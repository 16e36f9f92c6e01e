"""The distributed, resumable pair-generation job.

documents (Ray Dataset, DOC_SCHEMA) -> skip notes already done -> split long notes into parts ->
backend (batch backends: a pool of ``concurrency`` actors, each with its own backend instance;
the vllm backend: ``ray.data.llm`` over per-part rows, validated per part, folded per note in the driver) -> validation ->
one result row per note (ledger columns + its pairs) -> streamed once to the driver, which writes
pairs and ledger as Parquet under ``<output_dir>/<run_id>/`` while generation goes on ->
``_SUCCESS.json`` marks the run complete (written last; files of an unfinished run are ignored).

Batch backends that can (``concurrent_batches``: openai) work on ``batches_per_actor`` batches at
once per actor, so an actor is never idle between batches and its requests stay in flight across
batch boundaries (up to ``openai.max_concurrency`` per actor).
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray
from ray.data import ActorPoolStrategy

from medembed import schema as S
from medembed.runtime.console import Progress
from medembed.runtime.storage import DEFAULT_STORAGE, Storage, join
from medembed.synth import columns as C
from medembed.synth.backends import Request, backend_class, backend_identity, create_backend
from medembed.synth.config import SynthConfig
from medembed.synth.ledger import LEDGER_DIR, PAIRS_DIR, done_note_ids, mark_complete, run_dir
from medembed.synth.openai_backend import Secret
from medembed.synth.prompts import split_note
from medembed.synth.validate import Generation, PartOutcome, assemble_note, normalize_query, outcome_of

log = logging.getLogger("medembed.synth")

_PAIR_JSON_FIELDS = (C.PAIR_ID, C.PART_INDEX, C.QUERY, C.QUERY_TYPE, C.PASSAGE, C.RELEVANCE)


def _finish_note(note_id: str, parts: list[str], gens: list[Generation], cfg: SynthConfig,
                 identity: tuple[str, str, str], run_id: str) -> dict:
    """Validate a note's generations against their parts and build its result row."""
    seen: set[str] = set()
    outcomes: list[PartOutcome] = [
        outcome_of(g, part, i, min_relevance=cfg.min_relevance, min_grounding=cfg.min_grounding, seen_queries=seen)
        for i, (part, g) in enumerate(zip(parts, gens))
    ]
    gen, model, version = identity
    row, pairs = assemble_note(note_id, outcomes, generator=gen, model=model, prompt_version=version,
                               run_id=run_id, now=datetime.now(timezone.utc))
    row[C.PAIRS_JSON] = json.dumps([{k: p[k] for k in _PAIR_JSON_FIELDS} for p in pairs])
    return row


def _skipped_row(note_id: str, gkey: str, run_id: str) -> dict:
    return {C.NOTE_ID: note_id, C.GENERATOR_KEY: gkey, C.STATUS: C.S_SKIPPED, C.RUN_ID: run_id}


class NoteGenerator:
    """Ray Data callable class: a batch of documents -> one result row per document."""

    def __init__(self, synth: str, done: list[str], run_id: str, backend_kwargs: dict | None = None):
        self.cfg = SynthConfig.model_validate_json(synth)
        self.backend = create_backend(self.cfg, **(backend_kwargs or {}))
        self.identity = (self.backend.generator, self.backend.model, self.backend.prompt_version)
        self.gkey = C.generator_key(*self.identity)
        self.done = frozenset(done)
        self.run_id = run_id

    def __call__(self, batch: pa.Table) -> pa.Table:
        ids = [str(x) for x in batch[S.DOC_ID].to_pylist()]
        titles = batch[S.TITLE].to_pylist() if S.TITLE in batch.column_names else [""] * len(ids)
        texts = batch[S.TEXT].to_pylist()
        plan: list[tuple[str, list[str], int] | None] = []
        requests: list[Request] = []
        for nid, title, text in zip(ids, titles, texts):
            if nid in self.done:
                plan.append(None)
                continue
            parts = split_note(text or "", self.cfg.max_note_chars)
            plan.append((nid, parts, len(requests)))
            requests.extend(Request(nid, i, len(parts), title or "", p) for i, p in enumerate(parts))
        gens = self.backend.generate(requests) if requests else []
        rows = []
        for nid, p in zip(ids, plan):
            if p is None:
                rows.append(_skipped_row(nid, self.gkey, self.run_id))
            else:
                _, parts, start = p
                rows.append(_finish_note(nid, parts, gens[start:start + len(parts)], self.cfg, self.identity,
                                         self.run_id))
        return pa.Table.from_pylist(rows, schema=C.RESULT_SCHEMA)

    def __del__(self) -> None:
        backend = getattr(self, "backend", None)
        if backend is not None:
            backend.close()


# --- the vllm (dataset backend) path ----------------------------------------------------------
_SKIP = "_skip"


def _explode_requests(batch: pa.Table, done: frozenset, max_chars: int) -> pa.Table:
    rows = []
    titles = batch[S.TITLE].to_pylist() if S.TITLE in batch.column_names else [""] * batch.num_rows
    for nid, title, text in zip(batch[S.DOC_ID].to_pylist(), titles, batch[S.TEXT].to_pylist()):
        nid = str(nid)
        if nid in done:
            rows.append({C.NOTE_ID: nid, C.PART_INDEX: 0, "n_parts": 0, "title": "", "text": "", _SKIP: True})
            continue
        parts = split_note(text or "", max_chars) or [""]  # an empty note still gets a row (-> empty)
        for i, part in enumerate(parts):
            rows.append({C.NOTE_ID: nid, C.PART_INDEX: i, "n_parts": len(parts), "title": title or "", "text": part,
                         _SKIP: False})
    schema = pa.schema([(C.NOTE_ID, pa.string()), (C.PART_INDEX, pa.int32()), ("n_parts", pa.int32()),
                        ("title", pa.string()), ("text", pa.string()), (_SKIP, pa.bool_())])
    return pa.Table.from_pylist(rows, schema=schema)


def _keep(batch: pa.Table, skip: bool) -> pa.Table:
    return batch.filter(pc.equal(batch[_SKIP], skip))


def _skipped_results(batch: pa.Table, gkey: str, run_id: str) -> pa.Table:
    return pa.Table.from_pylist([_skipped_row(n, gkey, run_id) for n in batch[C.NOTE_ID].to_pylist()],
                                schema=C.RESULT_SCHEMA)


def _part_outcomes(batch: pa.Table, synth: str, max_tokens: int) -> pa.Table:
    """Engine rows (one per note part) -> validated part outcomes, JSON-encoded."""
    from medembed.synth.vllm_backend import generation_of

    cfg = SynthConfig.model_validate_json(synth)
    rows = []
    for r in batch.to_pylist():
        if r["text"]:
            o = outcome_of(generation_of(r, max_tokens), r["text"], int(r[C.PART_INDEX]),
                           min_relevance=cfg.min_relevance, min_grounding=cfg.min_grounding, seen_queries=set())
        else:
            o = PartOutcome(reason=C.F_EMPTY, detail="note has no text")
        rows.append({C.NOTE_ID: r[C.NOTE_ID], C.PART_INDEX: r[C.PART_INDEX],
                     "outcome": json.dumps({"pairs": o.pairs, "reason": o.reason, "detail": o.detail,
                                            "dropped": dict(o.dropped), "attempts": o.attempts})})
    schema = pa.schema([(C.NOTE_ID, pa.string()), (C.PART_INDEX, pa.int32()), ("outcome", pa.string())])
    return pa.Table.from_pylist(rows, schema=schema)


def _assemble_parts(parts_table: pa.Table, identity: tuple[str, str, str], run_id: str) -> pa.Table:
    """Fold part outcomes into one result row per note (in the driver: rows are small, pairs only).

    Queries repeated across parts of a note are dropped here as duplicate_query."""
    by_note: dict[str, list[tuple[int, dict]]] = {}
    for nid, idx, o in zip(parts_table[C.NOTE_ID].to_pylist(), parts_table[C.PART_INDEX].to_pylist(),
                           parts_table["outcome"].to_pylist()):
        by_note.setdefault(nid, []).append((idx, json.loads(o)))
    gen, model, version = identity
    rows = []
    for nid in sorted(by_note):
        seen: set[str] = set()
        outcomes = []
        for _, o in sorted(by_note[nid], key=lambda t: t[0]):
            po = PartOutcome(reason=o["reason"], detail=o["detail"], dropped=Counter(o["dropped"]),
                             attempts=o["attempts"])
            for p in o["pairs"]:
                key = normalize_query(p[C.QUERY])
                if key in seen:
                    po.dropped[C.D_DUPLICATE] += 1
                    continue
                seen.add(key)
                po.pairs.append(p)
            if not po.pairs and po.reason is None:
                po.reason, po.detail = C.F_EMPTY, "all pairs duplicated earlier parts"
            outcomes.append(po)
        row, pairs = assemble_note(nid, outcomes, generator=gen, model=model, prompt_version=version, run_id=run_id,
                                   now=datetime.now(timezone.utc))
        row[C.PAIRS_JSON] = json.dumps([{k: p[k] for k in _PAIR_JSON_FIELDS} for p in pairs])
        rows.append(row)
    return pa.Table.from_pylist(rows, schema=C.RESULT_SCHEMA)


def _dataset_backend_results(docs: ray.data.Dataset, cfg: SynthConfig, done: frozenset, gkey: str,
                             identity: tuple[str, str, str], run_id: str) -> ray.data.Dataset:
    reqs = docs.map_batches(_explode_requests, fn_kwargs={"done": done, "max_chars": cfg.max_note_chars},
                            batch_format="pyarrow").materialize()
    skipped = reqs.map_batches(_keep, fn_kwargs={"skip": True}, batch_format="pyarrow").map_batches(
        _skipped_results, fn_kwargs={"gkey": gkey, "run_id": run_id}, batch_format="pyarrow")
    todo = reqs.map_batches(_keep, fn_kwargs={"skip": False}, batch_format="pyarrow").drop_columns([_SKIP])
    backend = create_backend(cfg)
    generated = backend.transform(todo)
    generated = generated.map_batches(_select_engine_columns, batch_format="pyarrow").map_batches(
        _part_outcomes, fn_kwargs={"synth": cfg.model_dump_json(), "max_tokens": cfg.vllm.max_tokens},
        batch_format="pyarrow")
    blocks = [t for t in ray.get(generated.materialize().to_arrow_refs()) if t.num_rows]
    parts = pa.concat_tables(blocks) if blocks else pa.schema(
        [(C.NOTE_ID, pa.string()), (C.PART_INDEX, pa.int32()), ("outcome", pa.string())]).empty_table()
    results = ray.data.from_arrow(_assemble_parts(parts, identity, run_id))
    return results.union(skipped)


_ENGINE_SCHEMA = pa.schema([(C.NOTE_ID, pa.string()), (C.PART_INDEX, pa.int32()), ("text", pa.string()),
                            ("generated_text", pa.string()), ("num_generated_tokens", pa.int64()),
                            ("__inference_error__", pa.string())])


def _select_engine_columns(batch: pa.Table) -> pa.Table:
    """Engine output rows -> a fixed schema (empty blocks and error rows included)."""
    n = batch.num_rows
    cols = []
    for f in _ENGINE_SCHEMA:
        if f.name in batch.column_names:
            col = batch[f.name]
            if f.name == "__inference_error__" and not pa.types.is_string(col.type):
                col = pa.array([None if v is None else str(v) for v in col.to_pylist()], pa.string())
            cols.append(col.cast(f.type))
        else:
            cols.append(pa.nulls(n, f.type))
    return pa.Table.from_arrays(cols, schema=_ENGINE_SCHEMA)


# --- writing ----------------------------------------------------------------------------------
def _ledger_only(batch: pa.Table) -> pa.Table:
    batch = batch.filter(pc.not_equal(batch[C.STATUS], C.S_SKIPPED))
    return batch.drop_columns([C.PAIRS_JSON]).cast(C.LEDGER_SCHEMA)


def _explode_pairs(batch: pa.Table, generator: str, model: str, prompt_version: str) -> pa.Table:
    rows = []
    for nid, pj, at in zip(batch[C.NOTE_ID].to_pylist(), batch[C.PAIRS_JSON].to_pylist(),
                           batch[C.FINISHED_AT].to_pylist()):
        for p in json.loads(pj or "[]"):
            rows.append({**p, C.NOTE_ID: nid, C.GENERATOR: generator, C.MODEL: model, C.PROMPT_VERSION: prompt_version,
                         C.CREATED_AT: at})
    return pa.Table.from_pylist(rows, schema=C.PAIR_SCHEMA)


class _ParquetSink:
    """Tables of one schema -> ``part-NNNNN.parquet`` files in a folder (local or remote), written in
    row groups of ``rows_per_group`` as they arrive; a new file every ``rows_per_file`` rows. Nothing
    is created for a sink that never gets a row."""

    def __init__(self, uri: str, schema: pa.Schema, storage: Storage, *, rows_per_group: int = 50_000,
                 rows_per_file: int = 1_000_000):
        self.fs, self.dir = storage.fs(uri)
        self.schema, self.rows_per_group, self.rows_per_file = schema, rows_per_group, rows_per_file
        self._pending: list[pa.Table] = []
        self._n_pending = self._n_file = self._file_no = 0
        self._fh: Any = None
        self._writer: pq.ParquetWriter | None = None

    def add(self, table: pa.Table) -> None:
        if table.num_rows:
            self._pending.append(table)
            self._n_pending += table.num_rows
            if self._n_pending >= self.rows_per_group:
                self._flush()

    def close(self) -> None:
        self._flush()
        self._close_file()

    def _flush(self) -> None:
        if not self._n_pending:
            return
        table = pa.concat_tables(self._pending)
        self._pending, self._n_pending = [], 0
        if self._writer is None:
            self.fs.makedirs(self.dir, exist_ok=True)
            self._fh = self.fs.open(f"{self.dir.rstrip('/')}/part-{self._file_no:05d}.parquet", "wb")
            self._writer = pq.ParquetWriter(self._fh, self.schema)
        self._writer.write_table(table)
        self._n_file += table.num_rows
        if self._n_file >= self.rows_per_file:
            self._close_file()

    def _close_file(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._fh.close()
            self._writer, self._fh, self._n_file = None, None, 0
            self._file_no += 1


def _write_results(results: ray.data.Dataset, out: str, identity: tuple[str, str, str],
                   storage: Storage) -> tuple[dict[str, Any], dict[str, float]]:
    """Execute ``results`` once, streaming its blocks to the driver as they are produced, and write
    each block's pairs and ledger rows right away (no second pass, no extra Ray Data jobs). Returns
    the run's counts and timings (seconds to the first result block, seconds spent writing)."""
    t0 = time.perf_counter()
    first: float | None = None
    writing = 0.0
    gen, model, version = identity
    pairs = _ParquetSink(join(out, PAIRS_DIR), C.PAIR_SCHEMA, storage)
    ledger = _ParquetSink(join(out, LEDGER_DIR), C.LEDGER_SCHEMA, storage)
    counts: dict[str, Any] | None = None
    bar = Progress("notes to pairs", unit="notes")
    for block in results.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=4):
        if not block.num_rows:
            continue
        bar.update(block.num_rows)
        t = time.perf_counter()
        first = t - t0 if first is None else first
        counts = _merge_counts(counts, summarize(block))
        pairs.add(_explode_pairs(block, gen, model, version))
        ledger.add(_ledger_only(block))
        writing += time.perf_counter() - t
    bar.close()
    t = time.perf_counter()
    pairs.close()
    ledger.close()
    writing += time.perf_counter() - t
    return (counts or summarize(C.RESULT_SCHEMA.empty_table()),
            {"first_result": round(first or 0.0, 3), "write": round(writing, 3)})


def _merge_counts(a: dict[str, Any] | None, b: dict[str, Any]) -> dict[str, Any]:
    if a is None:
        return b
    return {k: ({r: a[k][r] + b[k][r] for r in a[k]} if isinstance(a[k], dict) else a[k] + b[k]) for k in a}


def summarize(ledger_rows: pa.Table) -> dict[str, Any]:
    """Counts of a run from its result rows (skipped rows included)."""
    status = ledger_rows[C.STATUS].to_pylist()
    reasons = Counter(r for s, r in zip(status, ledger_rows[C.REASON].to_pylist()) if s == C.S_FAILED)
    dropped: Counter = Counter()
    for d in ledger_rows[C.DROPPED].to_pylist():
        if d:
            dropped.update(json.loads(d))
    return {
        "notes_in": len(status),
        "notes_skipped_done": status.count(C.S_SKIPPED),
        "notes_ok": status.count(C.S_OK),
        "notes_failed": status.count(C.S_FAILED),
        "pairs_out": int(sum(n or 0 for n in ledger_rows[C.N_PAIRS].to_pylist())),
        "requests": int(sum(n or 0 for n in ledger_rows[C.ATTEMPTS].to_pylist())),
        "failures_by_reason": {r: reasons.get(r, 0) for r in C.FAILURE_REASONS},
        "dropped_by_rule": {r: int(dropped.get(r, 0)) for r in C.DROP_RULES},
    }


def generate_pairs_from_docs(docs: ray.data.Dataset, cfg: SynthConfig, *, run_id: str,
                             storage: Storage = DEFAULT_STORAGE) -> dict[str, Any]:
    """Generate pairs for a Dataset of documents (DOC_SCHEMA columns) as run ``run_id`` (the job run's id: its
    folder is ``<synth.output_dir>/<run_id>``); return the run's counts.

    Notes already ``ok`` for the same generator/model/prompt version in a complete earlier run are
    skipped; failed notes are retried.
    """
    t0 = time.perf_counter()
    identity = backend_identity(cfg)
    gkey = C.generator_key(*identity)
    done = frozenset(done_note_ids(cfg.output_dir, gkey, storage))
    log.info("synth: run %s, generator %s, %d notes already done", run_id, gkey, len(done))

    cls = backend_class(cfg.backend)
    if cls.mode == "batch":
        # The driver's API key (if any) travels to the actors wrapped in a Secret; actors on nodes
        # whose environment has the variable use their own.
        backend_kwargs = {"api_key": Secret.from_env(cfg.openai.api_key_env)} if cfg.backend == "openai" else {}
        per_actor = cfg.batches_per_actor if getattr(cls, "concurrent_batches", False) else 1
        # one batch per block, so one per actor task: every actor gets work (a single input file is one read
        # task), a task's results reach the driver (and the ledger) when it ends, and a lost node or actor takes
        # only its batches in flight with it, not a whole input file. (Fused into the read tasks: 1 CPU each.)
        docs = docs.repartition(target_num_rows_per_block=cfg.batch_size)
        results = docs.map_batches(
            NoteGenerator,
            fn_constructor_kwargs={"synth": cfg.model_dump_json(), "done": sorted(done), "run_id": run_id,
                                   "backend_kwargs": backend_kwargs},
            batch_size=cfg.batch_size, num_cpus=cfg.actor_num_cpus, batch_format="pyarrow",
            compute=ActorPoolStrategy(size=cfg.concurrency, max_tasks_in_flight_per_actor=per_actor + 1,
                                      max_concurrent_calls_per_actor=per_actor,
                                      enable_true_multi_threading=per_actor > 1),
        )
    else:
        results = _dataset_backend_results(docs, cfg, done, gkey, identity, run_id)
    out = run_dir(cfg.output_dir, run_id)
    # generation and writing overlap (the driver writes each result block as it arrives): "write" is
    # the driver's time spent writing, "generate" the rest
    counts, times = _write_results(results, out, identity, storage)
    t_end = time.perf_counter()
    summary = {"run_id": run_id, "generator_key": gkey, "generator": identity[0], "model": identity[1],
               "prompt_version": identity[2], "output_dir": join(out),
               **counts, "durations_s": {"generate": round(t_end - t0 - times["write"], 3), "write": times["write"],
                                         "first_result": times["first_result"], "total": round(t_end - t0, 3)}}
    mark_complete(cfg.output_dir, run_id, summary, storage)
    log.info("synth: run %s done: %d notes in, %d skipped, %d ok, %d pairs, failures %s", run_id, counts["notes_in"],
             counts["notes_skipped_done"], counts["notes_ok"], counts["pairs_out"],
             {k: v for k, v in counts["failures_by_reason"].items() if v})
    return summary
