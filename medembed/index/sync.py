"""The atomic sync: a run's new rows and removals become ONE Lance table version.

Workers stage the embedded rows of new and changed documents as Lance data files
(``index.writer.FragmentWriter``: uncommitted fragments no reader sees). The driver then commits a
single ``Update`` transaction that (a) marks the old chunks of changed and deleted documents deleted
(deletion vectors on the fragments holding them, or whole fragments removed) and (b) adds the staged
fragments, on top of the version the diff was computed against. Readers see the table before or
after the run, never in between. A run killed before the commit leaves only orphan data files that
no version references (removed by version cleanup); the next run computes its diff again.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import ray

from medembed import schema as S
from medembed.index.sql import in_filter
from medembed.index.writer import fragment_writers
from medembed.runtime.storage import DEFAULT_STORAGE, Storage

log = logging.getLogger(__name__)


@dataclass
class Staged:
    """Fragments written by the workers and not yet committed."""

    fragments: list[Any] = field(default_factory=list)
    rows: int = 0
    tokens: int = 0
    seconds: float = 0.0
    first_fragment_s: float | None = None


def stage_fragments(rows: ray.data.Dataset, uri: str, schema: pa.Schema, *, storage: Storage = DEFAULT_STORAGE,
                    block_mib: float = 1.0, writers: int = 1) -> Staged:
    """Write ``rows`` as uncommitted Lance fragments of the table at ``uri``; collect their metadata."""
    from lance.fragment import FragmentMetadata

    written = fragment_writers(rows, uri, schema, storage=storage, block_mib=block_mib, writers=writers)
    staged = Staged()
    t0 = time.perf_counter()
    for row in written.iter_rows():
        if staged.first_fragment_s is None:
            staged.first_fragment_s = time.perf_counter() - t0
        staged.fragments.append(FragmentMetadata.from_json(row["fragment"]))
        staged.rows += int(row["rows"])
        staged.tokens += int(row["tokens"])
    staged.seconds = time.perf_counter() - t0
    log.info("staged %d rows in %d fragments (%.1f s)", staged.rows, len(staged.fragments), staged.seconds)
    return staged


def doc_filter(ids: list[str]) -> str:
    return in_filter(S.DOC_ID, ids)


@dataclass
class Removal:
    removed_fragment_ids: list[int] = field(default_factory=list)
    updated_fragments: list[Any] = field(default_factory=list)
    rows: int = 0


def plan_removal(ds: Any, doc_ids: list[str]) -> Removal:
    """Deletion vectors (not yet committed) for every stored chunk of ``doc_ids``."""
    out = Removal()
    if not doc_ids:
        return out
    predicate = doc_filter(sorted(set(doc_ids)))
    for frag in ds.get_fragments():
        n = frag.count_rows(predicate)
        if not n:
            continue
        out.rows += n
        if n == frag.count_rows():
            out.removed_fragment_ids.append(frag.fragment_id)
        else:
            out.updated_fragments.append(frag.delete(predicate))
    return out


@dataclass
class SyncCommit:
    version_before: int | None
    version_after: int | None
    rows_before: int
    rows_after: int
    rows_added: int
    rows_removed: int
    fragments_added: int
    committed: bool
    commit_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def commit_sync(uri: str, schema: pa.Schema, read_version: int | None, staged: Staged, remove_doc_ids: list[str], *,
                storage: Storage = DEFAULT_STORAGE, before_commit: Callable[[], None] | None = None) -> SyncCommit:
    """Commit the staged fragments and the removal of ``remove_doc_ids``' old chunks as ONE version.

    ``read_version`` None: the table does not exist yet and is created by this commit.
    ``before_commit`` runs right before the commit (the writer-lease check). Nothing to do: no commit.
    """
    import lance

    opts = storage.lance_options(uri)
    t0 = time.perf_counter()
    if read_version is None:
        if not staged.fragments:
            return SyncCommit(None, None, 0, 0, 0, 0, 0, False)
        if before_commit:
            before_commit()
        ds = lance.LanceDataset.commit(uri, lance.LanceOperation.Overwrite(schema, staged.fragments),
                                       storage_options=opts)
        return SyncCommit(None, ds.version, 0, ds.count_rows(), staged.rows, 0, len(staged.fragments), True,
                          time.perf_counter() - t0)
    ds = lance.dataset(uri, version=read_version, storage_options=opts)
    rows_before = ds.count_rows()
    removal = plan_removal(ds, remove_doc_ids)
    if not staged.fragments and not removal.rows:
        return SyncCommit(read_version, read_version, rows_before, rows_before, 0, 0, 0, False)
    if before_commit:
        before_commit()
    op = lance.LanceOperation.Update(removed_fragment_ids=removal.removed_fragment_ids,
                                     updated_fragments=removal.updated_fragments, new_fragments=staged.fragments)
    # read_version: a concurrent writer's commit in between makes this a conflict, never a silent mix
    new = lance.LanceDataset.commit(uri, op, read_version=read_version, storage_options=opts, max_retries=0,
                                    commit_message=json.dumps({"medembed": "sync", "rows_added": staged.rows,
                                                               "rows_removed": removal.rows}))
    out = SyncCommit(read_version, new.version, rows_before, new.count_rows(), staged.rows, removal.rows,
                     len(staged.fragments), True, time.perf_counter() - t0)
    if out.rows_after != rows_before - removal.rows + staged.rows:
        raise RuntimeError(f"sync of {uri}: expected {rows_before} - {removal.rows} + {staged.rows} rows after the "
                           f"commit, the table has {out.rows_after} at version {new.version}")
    log.info("committed version %d of %s: +%d rows, -%d rows (one transaction)", new.version, uri, staged.rows,
             removal.rows)
    return out
