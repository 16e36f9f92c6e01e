"""The serving pointer: a stable name that readers resolve to one table at one version.

LanceDB OSS cannot rename tables, so a served corpus is named by medembed's own pointer, a small
JSON object ``<db>/_medembed/serving/<name>.json``::

    {"name": "notes", "current": {"table": "notes__bge_base_en_v1_5", "version": 12, ...},
     "history": [{"table": "notes__all_minilm_l6_v2", "version": 40, ...}], ...}

A switch (or a rollback) rewrites the object in one step (local: write a temp file + atomic rename;
S3: one PUT), so every reader sees the old target or the new one. Readers open the pinned version
(``open_served``), so a table's later commits stay invisible until the pointer moves. Each served
version is tagged in its table (``medembed-serving-v<version>``), so version cleanup keeps it and a
rollback can always return to it. Writers change the pointer only while holding the writer lease.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from medembed.runtime.storage import DEFAULT_STORAGE, Storage, join

log = logging.getLogger(__name__)

TAG_PREFIX = "medembed-serving-v"


def pointer_uri(db_uri: str, name: str) -> str:
    return join(db_uri, "_medembed", "serving", f"{name}.json")


def serving_tag(version: int) -> str:
    return f"{TAG_PREFIX}{version}"


@dataclass(frozen=True)
class ServedVersion:
    """One table version a serving name points (or pointed) to."""

    table: str
    version: int
    model_id: str = ""
    dim: int = 0
    rows: int = 0
    run_id: str = ""
    switched_at: str = ""

    @property
    def key(self) -> tuple[str, int]:
        return self.table, self.version


@dataclass
class Pointer:
    name: str
    current: ServedVersion
    history: list[ServedVersion] = field(default_factory=list)  # previous targets, most recent last
    last_action: str = "switch"
    updated_at: str = ""

    def to_json(self) -> str:
        return json.dumps({"name": self.name, "current": asdict(self.current),
                           "history": [asdict(h) for h in self.history], "last_action": self.last_action,
                           "updated_at": self.updated_at}, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, raw: str, where: str) -> Pointer:
        try:
            d = json.loads(raw)
            return cls(d["name"], ServedVersion(**d["current"]), [ServedVersion(**h) for h in d.get("history", [])],
                       d.get("last_action", "switch"), d.get("updated_at", ""))
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"serving pointer {where} is not valid: {e}") from e

    def referenced(self) -> set[tuple[str, int]]:
        """(table, version) of the current and every remembered target (kept by cleanup)."""
        return {self.current.key, *(h.key for h in self.history)}


def read_pointer(db_uri: str, name: str, storage: Storage = DEFAULT_STORAGE) -> Pointer | None:
    uri = pointer_uri(db_uri, name)
    fs, path = storage.fs(uri)
    try:
        with fs.open(path, "r", encoding="utf-8") as f:
            return Pointer.from_json(f.read(), uri)
    except FileNotFoundError:
        return None


def _write_pointer(db_uri: str, ptr: Pointer, storage: Storage) -> None:
    """Replace the pointer object in one step (atomic rename locally, one PUT on object stores)."""
    uri = pointer_uri(db_uri, ptr.name)
    fs, path = storage.fs(uri)
    raw = ptr.to_json()
    if "://" not in uri or uri.startswith("file://"):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{uuid.uuid4().hex}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    else:
        fs.pipe_file(path, raw.encode("utf-8"))


def list_serving_names(db_uri: str, storage: Storage = DEFAULT_STORAGE) -> list[str]:
    fs, path = storage.fs(join(db_uri, "_medembed", "serving"))
    try:
        files = fs.ls(path, detail=False)
    except FileNotFoundError:
        return []
    return sorted(os.path.basename(f)[:-5] for f in files if f.endswith(".json"))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def switch(db_uri: str, name: str, target: ServedVersion, storage: Storage = DEFAULT_STORAGE,
           keep_history: int = 5) -> tuple[Pointer | None, Pointer]:
    """Point ``name`` at ``target`` in one step; returns (pointer before, pointer after).

    The caller holds the writer lease and has tagged ``target`` in its table.
    """
    before = read_pointer(db_uri, name, storage)
    target = ServedVersion(**{**asdict(target), "switched_at": _now()})
    history: list[ServedVersion] = []
    if before is not None:
        history = [*before.history, before.current] if before.current.key != target.key else list(before.history)
    after = Pointer(name, target, history[-keep_history:] if keep_history else [], "switch", _now())
    _write_pointer(db_uri, after, storage)
    log.info("serving name %r -> %s@v%d (was %s)", name, target.table, target.version,
             f"{before.current.table}@v{before.current.version}" if before else "unset")
    return before, after


def rollback(db_uri: str, name: str, storage: Storage = DEFAULT_STORAGE) -> tuple[Pointer, Pointer]:
    """Return ``name`` to the previous table/version in one step; (pointer before, pointer after)."""
    before = read_pointer(db_uri, name, storage)
    if before is None:
        raise LookupError(f"no serving name {name!r} in {db_uri}")
    if not before.history:
        raise LookupError(f"serving name {name!r} has no previous table or version to roll back to")
    prev = before.history[-1]
    after = Pointer(name, ServedVersion(**{**asdict(prev), "switched_at": _now()}), before.history[:-1],
                    f"rollback from {before.current.table}@v{before.current.version}", _now())
    _write_pointer(db_uri, after, storage)
    log.info("serving name %r rolled back: %s@v%d -> %s@v%d", name, before.current.table, before.current.version,
             prev.table, prev.version)
    return before, after


def open_served(db: Any, ref: ServedVersion) -> Any:
    """The LanceDB table of ``ref`` checked out (read-only) at its served version."""
    tbl = db.open_table(ref.table)
    if tbl.version != ref.version:
        tbl.checkout(ref.version)
    return tbl


def resolve(db_uri: str, name: str, storage: Storage = DEFAULT_STORAGE) -> tuple[str, int | None]:
    """(table, version) a reader should open for ``name``: a table of that name (its latest version), else
    the table and version the serving name ``name`` points to; unknown names come back unchanged."""
    from medembed.index.tables import table_uri

    if storage.lance_dataset(table_uri(db_uri, name)) is not None:
        return name, None
    ptr = read_pointer(db_uri, name, storage)
    return (ptr.current.table, ptr.current.version) if ptr else (name, None)


def cleanup(db_uri: str, pointer: Pointer, older_than: timedelta, storage: Storage = DEFAULT_STORAGE) -> dict[str, Any]:
    """After a switch: drop serving tags the pointer no longer remembers, versions older than ``older_than``
    (tagged ones are kept) of the tables it serves, and its other ``<name>__*`` tables idle that long."""
    from medembed.index.tables import table_names, table_uri

    keep = pointer.referenced()
    served = {t for t, _ in keep}
    cutoff = datetime.now(timezone.utc) - older_than
    out: dict[str, Any] = {"tags_deleted": [], "versions_removed": 0, "tables_dropped": []}
    db = storage.lancedb_connect(db_uri)
    for tname in table_names(db):
        ds = storage.lance_dataset(table_uri(db_uri, tname)) if tname.startswith(f"{pointer.name}__") else None
        if ds is None:
            continue
        for tag, meta in list(ds.tags.list().items()):
            if tag.startswith(TAG_PREFIX) and (tname, meta["version"]) not in keep:
                ds.tags.delete(tag)
                out["tags_deleted"].append(f"{tname}:{tag}")
        if tname in served:
            stats = ds.cleanup_old_versions(older_than=older_than, error_if_tagged_old_versions=False)
            out["versions_removed"] += int(getattr(stats, "old_versions", 0) or 0)
            continue
        last = ds.versions()[-1]["timestamp"]
        last = last if last.tzinfo else last.astimezone(timezone.utc)
        if last < cutoff and not ds.tags.list():
            db.drop_table(tname)
            out["tables_dropped"].append(tname)
    log.info("cleanup of %r: %s", pointer.name, out)
    return out
