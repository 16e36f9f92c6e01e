"""The ingestion stage on Ray Data.

read tasks (files / dataset slices) -> reader tasks (parse + normalize, quarantine side-files)
-> a streaming Dataset of documents with the columns in ``schema.DOC_SCHEMA``.

Duplicate ids across files are caught by a small registry actor; claims are idempotent per
(id, location), so a retried task does not quarantine its own rows.
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import pyarrow as pa
import ray

from medembed import schema as S
from medembed.config import InputConfig
from medembed.ingest.normalize import normalize_records, quarantine_record
from medembed.ingest.readers import READERS, SKIPS_UNWANTED, read_hf_slice
from medembed.ingest.sources import ReadTask, load_hf_dataset, resolve_tasks
from medembed.runtime.counters import on_driver_node
from medembed.runtime.storage import DEFAULT_STORAGE, Storage, join

log = logging.getLogger(__name__)


@ray.remote(num_cpus=0)
class IdRegistry:
    """First-wins registry of document ids seen in this run."""

    def __init__(self) -> None:
        self._first: dict[str, str] = {}

    def claim(self, ids: list[str], sources: list[str]) -> list[str | None]:
        """For each id: None if this (id, source) owns it, else the source that read it first."""
        out: list[str | None] = []
        for i, src in zip(ids, sources):
            first = self._first.setdefault(i, src)
            out.append(None if first == src else first)
        return out

    def count(self) -> int:
        return len(self._first)


def _registry_name(quarantine_dir: str) -> str:
    return "medembed-ids-" + hashlib.sha1(quarantine_dir.encode()).hexdigest()[:12]


def write_quarantine(quarantine_dir: str, name: str, records: list[dict[str, str]], storage: Storage) -> None:
    """Write (overwrite) one deterministic quarantine part file; a retried task rewrites the same file."""
    if not records:
        return
    fs, path = storage.fs(join(quarantine_dir, name))
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    with fs.open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def _iter_items(task: ReadTask, cfg: InputConfig, storage: Storage, wanted: set[str] | None = None) -> Iterator[Any]:
    if task.kind == "hf":
        ds = load_hf_dataset(task.uri, cfg.hf_split)
        yield from read_hf_slice(ds, f"hf:{task.uri}/{cfg.hf_split}", task.start, task.stop)
        return
    fs, path = storage.fs(task.uri)
    with fs.open(path, "rb", compression="infer") as stream:
        if wanted is not None and task.kind in SKIPS_UNWANTED:
            yield from READERS[task.kind](stream, task.uri, cfg.limit, wanted=wanted)
        else:
            yield from READERS[task.kind](stream, task.uri, cfg.limit)


def _docs_table(docs: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(docs, schema=S.DOC_SCHEMA)


def _flush(buf: list[Any], bad: list[dict[str, str]], icfg: InputConfig, registry: Any) -> Iterator[pa.Table]:
    """Normalize the buffered records, claim their ids (duplicates -> ``bad``), yield one block of documents."""
    norm = normalize_records(buf, icfg)
    buf.clear()
    bad.extend(norm.quarantine)
    if not norm.docs:
        return
    owners = ray.get(registry.claim.remote([d[S.DOC_ID] for d in norm.docs], [d[S.SOURCE] for d in norm.docs]))
    keep = []
    for doc, first in zip(norm.docs, owners):
        if first is None:
            keep.append(doc)
        else:
            src, _, loc = doc[S.SOURCE].rpartition(":")
            bad.append(quarantine_record(src, loc, S.R_DUPLICATE_ID,
                                         f"{doc[S.SOURCE]}: id {doc[S.DOC_ID]!r} was already read at {first}",
                                         {S.DOC_ID: doc[S.DOC_ID], S.TEXT: doc[S.TEXT][:200]}))
    if keep:
        yield _docs_table(keep)


def read_task_batches(batch: dict[str, Any], cfg: dict[str, Any], storage: Storage,
                      quarantine_dir: str, registry: Any) -> Iterator[pa.Table]:
    """Ray Data UDF: read the tasks in ``batch``, yield blocks of documents.

    A task with ``wanted`` locations (a JSON list; "" = the whole source) is a second read of a source that
    the run already read once: it yields those records only and leaves the quarantine files as they are.
    """
    icfg = InputConfig.model_validate(cfg)
    wanted_col = batch.get("wanted", [""] * len(batch["kind"]))
    for kind, uri, start, stop, wanted_json in zip(batch["kind"], batch["uri"], batch["start"], batch["stop"],
                                                   wanted_col):
        task = ReadTask(str(kind), str(uri), int(start), int(stop))
        wanted = set(json.loads(str(wanted_json))) if str(wanted_json) else None
        bad: list[dict[str, str]] = []
        buf: list[Any] = []

        try:
            for item in _iter_items(task, icfg, storage, wanted):
                if isinstance(item, dict):  # a quarantine record from the reader
                    bad.append(item)
                    continue
                buf.append(item)
                if len(buf) >= icfg.rows_per_block:
                    yield from _flush(buf, bad, icfg, registry)
            yield from _flush(buf, bad, icfg, registry)
        except Exception as e:  # an unreadable source as a whole (permissions, corrupt parquet, ...)
            log.error("cannot read %s: %s", task.uri, e)
            bad.append(quarantine_record(task.uri, "-", S.R_UNREADABLE_FILE, f"{task.uri}: {type(e).__name__}: {e}", ""))
        if wanted is not None:  # a second read: the first one wrote this source's quarantine file
            continue
        write_quarantine(quarantine_dir, "read-" + hashlib.sha1(task.key.encode()).hexdigest()[:16] + ".jsonl",
                         bad, storage)


@dataclass
class ReadPlan:
    """What a run reads: its read tasks, and the reader's arguments with this run's id registry.

    ``dataset`` reads on Ray Data (one task per file or dataset slice); ``blocks`` reads in the calling
    process with the same function, for a job that reads, chunks and embeds in one actor. The registry
    actor starts on first use, so a job can start its own actors first."""

    tasks: list[ReadTask]
    cfg: InputConfig
    quarantine_dir: str
    storage: Storage = DEFAULT_STORAGE
    registry: Any = None
    wanted: dict[str, list[str]] | None = None  # task uri -> locations: a second read of those records only

    def start_registry(self) -> ReadPlan:
        """Start this run's id registry (once), on the driver's node."""
        if self.registry is None:
            self.registry = IdRegistry.options(name=_registry_name(self.quarantine_dir), get_if_exists=True,
                                               scheduling_strategy=on_driver_node()).remote()
        return self

    @property
    def fn_kwargs(self) -> dict[str, Any]:
        self.start_registry()
        return {"cfg": self.cfg.model_dump(), "storage": self.storage,
                "quarantine_dir": self.quarantine_dir, "registry": self.registry}

    def items(self) -> list[dict[str, Any]]:
        return [{"kind": t.kind, "uri": t.uri, "start": t.start, "stop": t.stop,
                 "wanted": json.dumps(self.wanted[t.uri]) if self.wanted is not None and t.uri in self.wanted else ""}
                for t in self.tasks]

    def restrict(self, sources: list[str] | None) -> ReadPlan:
        """A second read of this plan (same id registry) that reads only the records at ``sources``
        ("<file>:line N" / "<file>:row N", the ``source`` column of documents): only their files, and in
        JSONL and Parquet files only those lines or rows. ``None``, or any dataset-slice task: the whole plan."""
        if sources is None or any(t.kind == "hf" for t in self.tasks):
            return self
        wanted: dict[str, list[str]] = collections.defaultdict(list)
        for src in sources:
            uri, _, loc = src.rpartition(":")
            wanted[uri].append(loc)
        tasks = [t for t in self.tasks if t.uri in wanted]
        self.start_registry()
        return ReadPlan(tasks, self.cfg, self.quarantine_dir, self.storage, self.registry, dict(wanted))

    def waves(self, max_mib: float) -> list[ReadPlan]:
        """This plan in consecutive parts of up to ``max_mib`` MiB of input files each (a file larger than that is a
        part of its own; slices of unknown size stay together); ``max_mib`` 0: the whole plan as one part. A second
        read of selected records (``wanted``; the jobs restrict one to 200,000 documents at most) is one part: it reads a few
        lines of each file, and a part per file size would reload the model for each."""
        if not max_mib or len(self.tasks) < 2 or self.wanted is not None:
            return [self]
        limit, parts, part, size = max_mib * (1 << 20), [], [], 0
        for t in self.tasks:
            if part and t.size and size + t.size > limit:
                parts.append(part)
                part, size = [], 0
            part.append(t)
            size += t.size
        parts.append(part)
        if len(parts) > 1:
            self.start_registry()  # one id registry across the parts: a repeated id is caught in any of them
        return [replace(self, tasks=p) for p in parts]

    def dataset(self) -> ray.data.Dataset:
        items = self.items()
        if not items:
            return ray.data.from_arrow(S.DOC_SCHEMA.empty_table())
        ds = ray.data.from_items(items, override_num_blocks=max(1, len(items)))
        return ds.map_batches(read_task_batches, batch_size=1, fn_kwargs=self.fn_kwargs, batch_format="numpy")

    def blocks(self) -> Iterator[pa.Table]:
        items = self.items()
        yield from read_task_batches({k: [i[k] for i in items] for k in ("kind", "uri", "start", "stop", "wanted")},
                                     **self.fn_kwargs)

    def input_bytes(self, stop_above: int | None = None) -> int | None:
        """Bytes of the input files (as stored, compressed or not); None for dataset slices. With ``stop_above``,
        the sum stops growing past that many bytes (one size request per file: an S3 prefix of many files)."""
        if any(t.kind == "hf" for t in self.tasks):
            return None
        total = 0
        for t in self.tasks:
            fs, path = self.storage.fs(t.uri)
            total += int(fs.size(path) or 0)
            if stop_above is not None and total > stop_above:
                break
        return total


def plan_read(cfg: InputConfig, quarantine_dir: str, storage: Storage = DEFAULT_STORAGE) -> ReadPlan:
    """Resolve the input into read tasks; files of an unknown type are quarantined."""
    tasks, skipped = resolve_tasks(cfg, storage)
    write_quarantine(quarantine_dir, "skipped-files.jsonl", [
        quarantine_record(f, "-", S.R_UNREADABLE_FILE, f"{f}: unknown file type (set input.format)", "")
        for f in skipped], storage)
    log.info("ingest: %d read tasks from %s", len(tasks), cfg.uri or "the bundled sample corpus")
    return ReadPlan(tasks, cfg, quarantine_dir, storage)


def read_documents(cfg: InputConfig, quarantine_dir: str, storage: Storage = DEFAULT_STORAGE) -> ray.data.Dataset:
    """A lazy, streaming Dataset of normalized documents; bad rows go to ``quarantine_dir``."""
    return plan_read(cfg, quarantine_dir, storage).dataset()


def documents_accepted(quarantine_dir: str) -> int:
    """Number of distinct documents accepted so far by this run's registry."""
    try:
        return ray.get(ray.get_actor(_registry_name(quarantine_dir)).count.remote())
    except ValueError:
        return 0


def read_quarantine_counts(quarantine_dir: str, storage: Storage = DEFAULT_STORAGE) -> dict[str, int]:
    """Quarantined records by reason, read back from the quarantine part files."""
    fs, path = storage.fs(quarantine_dir)
    if not fs.exists(path):
        return {}
    counts: collections.Counter[str] = collections.Counter()
    for f in fs.find(path):
        if not f.endswith(".jsonl"):
            continue
        with fs.open(f, "r", encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    counts[json.loads(line)[S.Q_REASON]] += 1
    return dict(sorted(counts.items()))
