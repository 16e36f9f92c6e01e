"""Job body of ``medembed generate-pairs``: read the corpus, generate pairs, fill the manifest."""

from __future__ import annotations

from typing import Any

from medembed.ingest import read_documents, read_quarantine_counts
from medembed.runtime.manifest import RunManifest
from medembed.runtime.ray_setup import require_resources
from medembed.synth.config import GeneratePairsJobConfig
from medembed.synth.generate import generate_pairs_from_docs


def generate_pairs(cfg: GeneratePairsJobConfig, manifest: RunManifest) -> dict[str, Any]:
    qdir = manifest.path("quarantine")
    manifest.set("quarantine_dir", qdir)
    sc = cfg.synth
    if sc.backend != "vllm":  # vllm: ray.data.llm places its own engines
        require_resources("pair generation", {"CPU": (sc.concurrency * sc.actor_num_cpus + 1,
                                                      "synth.concurrency x synth.actor_num_cpus + 1 read task")},
                          cfg.ray, each={"CPU": (sc.actor_num_cpus, "synth.actor_num_cpus")})
    docs = read_documents(cfg.input, qdir, manifest.storage)
    with manifest.timed("generate_pairs"):
        summary = generate_pairs_from_docs(docs, cfg.synth, storage=manifest.storage, run_id=manifest.run_id)
    manifest.set("synth", summary)
    for k in ("notes_in", "notes_skipped_done", "notes_ok", "notes_failed", "pairs_out", "requests",
              "failures_by_reason", "dropped_by_rule"):
        manifest.count(k, summary[k])
    quarantine = read_quarantine_counts(qdir, manifest.storage)
    manifest.count("quarantined", sum(quarantine.values()))
    manifest.count("quarantine_by_reason", quarantine)
    manifest.set("output", {"artifact": summary["output_dir"]})
    return {k: summary[k] for k in ("notes_in", "notes_skipped_done", "notes_ok", "notes_failed", "pairs_out")}
