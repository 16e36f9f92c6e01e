"""Run one job body under its run manifest: THE manifest steps, the same for a job and for a pipeline stage.

``run_body`` times the body (``durations_s.job``), warns once about quarantined input, and always finishes the
manifest: ``succeeded`` (or the body's ``exit_status``), ``interrupted`` or ``failed`` with the error. The caller
made the manifest and (for a top-level job) connected Ray; ``medembed.app.runner`` turns the outcome into an
exit code, ``medembed.jobs.pipeline`` runs each stage through this same function.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from medembed.runtime.manifest import RunManifest

log = logging.getLogger(__name__)

Body = Callable[[Any, RunManifest], dict[str, Any]]


def warn_quarantine(manifest: RunManifest) -> None:
    """Quarantined input reaches the console once, with the reasons and where the records are."""
    counts = manifest.data.get("counts") or {}
    n = counts.get("quarantined") or 0
    if isinstance(n, int) and n > 0:
        reasons = ", ".join(f"{r} {c:,}" for r, c in (counts.get("quarantine_by_reason") or {}).items() if c)
        log.warning("%d input record%s quarantined (%s); each with its file, line and reason in %s", n,
                    "s" if n != 1 else "", reasons or "see the records", manifest.data.get("quarantine_dir", "-"))


def run_body(body: Body, cfg: Any, manifest: RunManifest, before: Callable[[], None] | None = None
             ) -> dict[str, Any]:
    """``before()`` (e.g. connect Ray), then ``body(cfg, manifest)`` timed as ``job``; the manifest is finished
    whatever happens (an exception is re-raised after it is recorded). Returns the body's counts."""
    try:
        if before is not None:
            before()
        with manifest.timed("job"):
            counts = body(cfg, manifest)
    except KeyboardInterrupt:
        manifest.finish("interrupted")
        raise
    except BaseException as e:
        manifest.finish("failed", error=f"{type(e).__name__}: {e}")
        raise
    warn_quarantine(manifest)
    manifest.finish(manifest.data.get("exit_status", "succeeded"))
    return counts
