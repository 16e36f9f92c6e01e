"""Resolve an input URI into read tasks: one per file, or one per slice of a HF dataset."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from medembed.config import InputConfig
from medembed.ingest.readers import format_of
from medembed.runtime.storage import DEFAULT_STORAGE, Storage

log = logging.getLogger(__name__)

HF_PREFIX = "hf://datasets/"
HF_ROWS_PER_TASK = 20_000


@dataclass(frozen=True)
class ReadTask:
    kind: str  # jsonl | csv | parquet | hf
    uri: str  # file URI, or dataset name/path for hf
    start: int = 0
    stop: int = 0
    size: int = 0  # bytes of the file as stored, from its listing (0: not known, e.g. a dataset slice)

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.uri}:{self.start}:{self.stop}"


def sample_corpus_path() -> str:
    return str(Path(__file__).resolve().parent.parent / "data" / "sample_notes.jsonl")


def _is_saved_hf_dataset(path: str) -> bool:
    return os.path.isdir(path) and (
        os.path.exists(os.path.join(path, "dataset_info.json")) or os.path.exists(os.path.join(path, "state.json"))
        or os.path.exists(os.path.join(path, "dataset_dict.json")))


def load_hf_dataset(uri: str, split: str):
    """A ``datasets.Dataset`` from a saved folder, ``hf://datasets/NAME`` or a hub name."""
    import datasets

    if _is_saved_hf_dataset(uri):
        ds = datasets.load_from_disk(uri)
        if isinstance(ds, datasets.DatasetDict):
            if split not in ds:
                raise ValueError(f"{uri}: split {split!r} not found (have {list(ds)}); set input.hf_split")
            ds = ds[split]
        return ds
    name = uri[len(HF_PREFIX):] if uri.startswith(HF_PREFIX) else uri
    return datasets.load_dataset(name, split=split)


def resolve_tasks(cfg: InputConfig, storage: Storage = DEFAULT_STORAGE) -> tuple[list[ReadTask], list[str]]:
    """(read tasks, files skipped for an unknown extension)."""
    uri = cfg.uri or sample_corpus_path()
    if cfg.format == "hf" or uri.startswith(HF_PREFIX) or _is_saved_hf_dataset(uri):
        ds = load_hf_dataset(uri, cfg.hf_split)
        n = len(ds) if cfg.limit is None else min(len(ds), cfg.limit)
        return [ReadTask("hf", uri, s, min(s + HF_ROWS_PER_TASK, n)) for s in range(0, n, HF_ROWS_PER_TASK)], []
    fs, path = storage.fs(uri)
    protocol = uri.split("://", 1)[0] + "://" if "://" in uri else ""
    if any(ch in path for ch in "*?["):
        listed = fs.glob(path, detail=True)
    elif fs.isdir(path):
        listed = {f: i for f, i in fs.find(path, detail=True).items() if not os.path.basename(f).startswith((".", "_"))}
    elif fs.exists(path):
        listed = {path: fs.info(path)}
    else:
        raise FileNotFoundError(f"input.uri: nothing found at {uri}")
    sizes = {f: int(info.get("size") or 0) for f, info in listed.items() if info.get("type", "file") == "file"}
    tasks, skipped = [], []
    for d in sorted(set(listed) - set(sizes)):  # a folder a glob matched: named, not read (a folder uri reads one)
        log.warning("skipping %s: a folder matched by the input glob (give its path as input.uri to read it)", d)
        skipped.append(protocol + d if protocol else d)
    for f in sorted(sizes):
        fmt = cfg.format if cfg.format != "auto" else format_of(f)
        if fmt is None:
            log.warning("skipping %s: unknown extension (set input.format to read it)", f)
            skipped.append(protocol + f if protocol else f)
            continue
        tasks.append(ReadTask(fmt, protocol + f if protocol else f, size=sizes[f]))
    if not tasks:
        raise FileNotFoundError(f"input.uri: no readable files (jsonl, csv, parquet) at {uri}")
    return tasks, skipped
