"""JSON run manifests: inputs, counts per stage, quarantine by reason, versions, durations."""

from __future__ import annotations

import json
import logging
import platform
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import metadata
from typing import Any

from medembed.runtime.artifacts import new_run_id
from medembed.runtime.memory import peak_rss_mib
from medembed.runtime.storage import DEFAULT_STORAGE, Storage, join

log = logging.getLogger(__name__)

_VERSIONED = ("medembed", "ray", "torch", "sentence-transformers", "transformers", "lancedb", "pylance", "pyarrow")


def package_versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for name in _VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


class RunManifest:
    """Collects what a job did and writes it as ``<run_dir>/<run_id>/manifest.json``.

    ``storage`` is the job's storage context (made once per job by the runner): the manifest is written with
    it, and the job body opens everything else with it (``manifest.storage``). It is not part of the data."""

    def __init__(self, job: str, run_dir: str, config: dict[str, Any], run_id: str | None = None,
                 storage: Storage = DEFAULT_STORAGE):
        self.job = job
        self.storage = storage
        self.run_id = run_id or new_run_id(job)
        self.dir = join(run_dir, self.run_id)
        self.data: dict[str, Any] = {
            "job": job,
            "run_id": self.run_id,
            "status": "running",
            "started_at": datetime.now(timezone.utc).isoformat(),
            "host": socket.gethostname(),
            "platform": platform.platform(),
            "versions": package_versions(),
            "config": config,
            "counts": {},
            "durations_s": {},
        }
        self._t0 = time.perf_counter()
        self._on_finish: list[Callable[[RunManifest], None]] = []

    def on_finish(self, hook: Callable[[RunManifest], None]) -> None:
        """Call ``hook(self)`` once the manifest is finished and written (e.g. to end the run's MLflow run)."""
        self._on_finish.append(hook)

    def path(self, *parts: str) -> str:
        return join(self.dir, *parts)

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self.data["durations_s"][stage] = round(time.perf_counter() - t, 3)

    def count(self, key: str, value: Any) -> None:
        self.data["counts"][key] = value

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value

    def finish(self, status: str = "succeeded", error: str | None = None) -> str:
        self.data["status"] = status
        if error:
            self.data["error"] = error
        self.data["finished_at"] = datetime.now(timezone.utc).isoformat()
        self.data["durations_s"]["total"] = round(time.perf_counter() - self._t0, 3)
        self.data["driver_peak_rss_mib"] = round(peak_rss_mib(), 1)  # this process's, so far (runtime.memory)
        path = self.write()
        hooks, self._on_finish = self._on_finish, []
        for hook in hooks:
            hook(self)
        return path

    def write(self) -> str:
        fs, path = self.storage.fs(self.dir)
        fs.makedirs(path, exist_ok=True)
        target = self.path("manifest.json")
        with self.storage.open(target, "w") as f:
            json.dump(self.data, f, indent=2, sort_keys=False, default=str)
        log.info("run manifest: %s", target)
        return target
