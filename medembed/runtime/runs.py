"""Reading run manifests back: list the runs under a run folder (local or ``s3://``) and summarize one.

Every job writes ``<run_dir>/<run id>/manifest.json`` (``runtime.manifest``); a pipeline's stages write
theirs below the pipeline's folder (run id ``<pipeline run id>/<stage>``). Nothing here writes.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from medembed.runtime.storage import DEFAULT_STORAGE, Storage, is_remote

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
STATUSES = ("running", "succeeded", "succeeded_with_quarantine", "failed", "interrupted")


@dataclass(frozen=True)
class RunRow:
    """One line of ``medembed runs list``."""

    run_id: str
    job: str
    status: str
    started_at: str
    duration_s: float | None
    output: str
    manifest: str

    @property
    def is_stage(self) -> bool:
        return "/" in self.run_id

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__}


def _uri(fs_path: str, root: str) -> str:
    return f"s3://{fs_path}" if is_remote(root) and not fs_path.startswith("s3://") else fs_path


def manifest_paths(run_dir: str, storage: Storage = DEFAULT_STORAGE) -> list[str]:
    """Every ``manifest.json`` below ``run_dir`` (an absent folder has none)."""
    fs, path = storage.fs(run_dir)
    if not fs.exists(path):
        return []
    return sorted(_uri(p, run_dir) for p in fs.glob(path.rstrip("/") + f"/**/{MANIFEST}"))


def read_manifest(path: str, storage: Storage = DEFAULT_STORAGE) -> dict[str, Any]:
    """One manifest; a file that is not a JSON object raises ``ValueError`` naming the file."""
    fs, p = storage.fs(path)
    with fs.open(p, "r", encoding="utf-8") as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not a run manifest (invalid JSON at line {e.lineno}: {e.msg})") from None
    if not isinstance(data, dict) or "run_id" not in data or "job" not in data:
        raise ValueError(f"{path}: not a run manifest (no run_id/job)")
    return data


def _duration(m: dict[str, Any]) -> float | None:
    total = (m.get("durations_s") or {}).get("total")
    if total is not None:
        return float(total)
    if m.get("status") == "running" and m.get("started_at"):  # still running (or died without finishing)
        try:
            started = datetime.fromisoformat(m["started_at"])
        except ValueError:
            return None
        return round((datetime.now(timezone.utc) - started).total_seconds(), 3)
    return None


def main_output(m: dict[str, Any]) -> str:
    out = m.get("output") or {}
    if isinstance(out, dict):
        for key in ("artifact", "serving_name", "dir"):
            if out.get(key):
                return str(out[key])
    return ""


def row_of(m: dict[str, Any], path: str) -> RunRow:
    return RunRow(run_id=str(m["run_id"]), job=str(m["job"]), status=str(m.get("status", "unknown")),
                  started_at=str(m.get("started_at", "")), duration_s=_duration(m), output=main_output(m),
                  manifest=path)


OLD_JOB_NAMES = {"embed_corpus": "embed", "eval": "evaluate"}  # manifests of runs before the rename (one name per job)


def job_name(name: str) -> str:
    """A job's name as manifests write it now: ``generate-pairs`` -> ``generate_pairs``, ``embed_corpus`` -> ``embed``."""
    key = name.replace("-", "_")
    return OLD_JOB_NAMES.get(key, key)


def list_runs(run_dir: str, storage: Storage = DEFAULT_STORAGE, *, job: str | None = None, status: str | None = None,
              stages: bool = False, limit: int | None = None) -> tuple[list[RunRow], list[str]]:
    """Runs under ``run_dir``, newest first, and the manifests that could not be read (path: reason).

    ``stages`` includes a pipeline's per-stage runs; ``job`` (either spelling; an old run's job name counts as its
    new one) and ``status`` filter exactly."""
    rows, unreadable = [], []
    for path in manifest_paths(run_dir, storage):
        try:
            row = row_of(read_manifest(path, storage), path)
        except (ValueError, OSError) as e:
            unreadable.append(str(e) if str(e).startswith(path) else f"{path}: {e}")
            continue
        if (row.is_stage and not stages) or (job and job_name(row.job) != job_name(job)) or \
                (status and row.status != status):
            continue
        rows.append(row)
    rows.sort(key=lambda r: (r.started_at, r.run_id), reverse=True)
    return (rows[:limit] if limit else rows), unreadable


def find_run(run_dir: str, run_id: str, storage: Storage = DEFAULT_STORAGE) -> tuple[dict[str, Any], str]:
    """The manifest of ``run_id`` (a full id or a unique prefix; a pipeline's stage runs only by a prefix with
    ``/``); ``LookupError`` says what exists."""
    exact, prefixed = [], []
    for path in manifest_paths(run_dir, storage):
        try:
            m = read_manifest(path, storage)
        except (ValueError, OSError):
            continue
        if m["run_id"] == run_id:
            exact.append((m, path))
        elif str(m["run_id"]).startswith(run_id) and ("/" in run_id or "/" not in str(m["run_id"])):
            prefixed.append((m, path))  # a prefix without "/" names top-level runs, not their stages
    found = exact or prefixed
    if len(found) == 1:
        return found[0]
    if not found:
        raise LookupError(f"no run {run_id!r} under {run_dir} (see `medembed runs list --run-dir {run_dir}`)")
    ids = ", ".join(sorted(str(m["run_id"]) for m, _ in found)[:10])
    raise LookupError(f"{run_id!r} matches {len(found)} runs under {run_dir}: {ids}")


def summary(m: dict[str, Any], path: str) -> dict[str, Any]:
    """What ``medembed runs show`` prints: status, counts, quarantine by reason, stage times, gate, paths."""
    counts = dict(m.get("counts") or {})
    quarantine = counts.pop("quarantine_by_reason", None) or {}
    durations = dict(m.get("durations_s") or {})
    stages = {name: {k: v for k, v in info.items() if k in ("status", "seconds", "artifact")}
              for name, info in (m.get("stages") or {}).items()}
    paths = {"manifest": path}
    for key in ("output", "table", "quarantine_dir", "promoted"):
        if m.get(key):
            paths[key] = m[key]
    out: dict[str, Any] = {"run_id": m["run_id"], "job": m["job"], "status": m.get("status"),
                           "started_at": m.get("started_at"), "finished_at": m.get("finished_at"),
                           "duration_s": _duration(m)}
    if m.get("error"):
        out["error"] = m["error"]
    out["counts"] = counts
    out["quarantine_by_reason"] = quarantine
    out["durations_s"] = durations
    if stages:
        out["stages"] = stages
    if m.get("gate"):
        out["gate"] = m["gate"]
    if m.get("throughput"):
        out["throughput"] = m["throughput"]
    if m.get("mlflow"):  # the MLflow run of a tracked job (runtime.tracking)
        out["mlflow"] = m["mlflow"]
    out["paths"] = paths
    return out


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(int(round(seconds)), 60)
    return f"{minutes} min {sec:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def format_table(rows: list[RunRow]) -> str:
    """Fixed-width columns: run id, job, status, start (UTC, to the second), duration, main output."""
    header = ("RUN ID", "JOB", "STATUS", "STARTED (UTC)", "DURATION", "OUTPUT")
    body = [(r.run_id, r.job, r.status, r.started_at[:19].replace("T", " "), format_duration(r.duration_s),
             r.output) for r in rows]
    widths = [max(len(str(x[i])) for x in [header, *body]) for i in range(len(header) - 1)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(line[:-1], widths)) + "  " + str(line[-1])
             for line in [header, *body]]
    return "\n".join(line.rstrip() for line in lines)


def format_summary(s: dict[str, Any]) -> str:
    """A readable multi-line view of ``summary``'s dict."""
    lines = [f"run       {s['run_id']}", f"job       {s['job']}", f"status    {s['status']}",
             f"started   {s.get('started_at') or '-'}", f"finished  {s.get('finished_at') or '-'}",
             f"duration  {format_duration(s.get('duration_s'))}"]
    if s.get("error"):
        lines.append(f"error     {s['error']}")

    def section(title: str, items: dict[str, Any], fmt=lambda v: v) -> None:
        if items:
            lines.append(f"{title}:")
            width = max(len(k) for k in items)
            lines.extend(f"  {k.ljust(width)}  {fmt(v)}" for k, v in items.items())

    def compact(v: Any) -> str:
        return json.dumps(v, default=str) if isinstance(v, (dict, list)) else str(v)

    section("counts", s.get("counts") or {}, compact)
    section("quarantined, by reason", s.get("quarantine_by_reason") or {})
    section("stage times", {k: format_duration(v) for k, v in (s.get("durations_s") or {}).items()})
    section("pipeline stages", {k: f"{v.get('status')} in {format_duration(v.get('seconds'))} -> "
                                   f"{v.get('artifact')}" for k, v in (s.get("stages") or {}).items()})
    gate = s.get("gate") or {}
    if gate:
        lines.append(f"gate: {'promote' if gate.get('promote') else 'keep current'}"
                     + (f" ({gate['reason']})" if gate.get("reason") else ""))
    section("throughput", s.get("throughput") or {}, compact)
    section("mlflow", s.get("mlflow") or {}, compact)
    section("paths", s.get("paths") or {}, compact)
    return "\n".join(lines)
