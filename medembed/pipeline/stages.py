"""Pipeline stages: their configs composed from the pipeline config, fingerprints, and reuse records.

A stage's output lives under ``<output.dir>/<pipeline run id>/<stage>/`` (the stage's own job
writes it, with its ``_SUCCESS.json``). When the stage finishes, the pipeline writes a record,
``<output.dir>/<pipeline run id>/stages/<stage>/_SUCCESS.json`` (``runtime.artifacts``), holding the
stage's fingerprint -- a hash of the config sections it depends on and of its inputs' completion
markers -- and the artifact it produced. A later run reuses the newest record with the same
fingerprint whose artifact is still complete (same marker); otherwise the stage runs again. A
rerun stage writes new markers, so every stage downstream of it gets a new fingerprint and reruns too.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from typing import Any

from medembed.runtime import artifacts
from medembed.runtime.storage import DEFAULT_STORAGE, Storage, join

log = logging.getLogger(__name__)

# Stages are named by the jobs they run; ``promote`` is the pipeline's own step (the gate).
STAGES = ("generate_pairs", "mine_negatives", "train", "evaluate", "promote", "embed")
JOB_STAGES = tuple(s for s in STAGES if s != "promote")
UPSTREAM = {"generate_pairs": (), "mine_negatives": ("generate_pairs",), "train": ("mine_negatives",),
            "evaluate": ("mine_negatives", "train"), "promote": ("evaluate",), "embed": ("promote",)}
CONFIG_FIELDS = {"generate_pairs": ("input", "generate_pairs"), "mine_negatives": ("model", "mine_negatives"),
                 "train": ("model", "train", "dev_fraction"), "evaluate": ("model", "evaluate", "dev_fraction"),
                 "promote": ("gate",), "embed": ("input", "embed")}
RECORD_KIND = "pipeline_stage"
CURRENT, CANDIDATE = "current", "candidate"  # model labels in the evaluation
PAIRS_DEV = "pairs-dev"


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``over``, recursively for nested dicts (lists and scalars are replaced)."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def stage_run_id(run_id: str, stage: str) -> str:
    """The run id of a pipeline stage's run: ``<pipeline run id>/<stage>`` (its manifest: ``<run_dir>/<that>/``)."""
    return f"{run_id}/{stage}"


def stage_dir(out_dir: str, run_id: str, stage: str) -> str:
    return join(out_dir, run_id, stage)


def record_dir(out_dir: str, run_id: str, stage: str) -> str:
    return join(out_dir, run_id, "stages", stage)


RUNTIME_MODEL_FIELDS = ("device", "dtype", "backend", "cache_dir")  # how to run a model, not which model


def candidate_model(cfg: Any, model_dir: str) -> dict[str, Any]:
    """The fine-tuned model folder, run the way the current model is (device, dtype, backend)."""
    current = cfg.model.model_dump()
    return {"name": model_dir, **{k: current[k] for k in RUNTIME_MODEL_FIELDS if k in current}}


def compose(cfg: Any, stage: str, run_id: str, inputs: dict[str, str], promoted: dict[str, Any] | None = None
            ) -> dict[str, Any]:
    """The stage job's config (as a dict) for pipeline run ``run_id``; ``inputs`` maps upstream stages to artifacts.

    The pipeline's own keys (paths between stages, the base model, the dev split) win over the
    stage section's overrides; everything else in the section is passed through.
    """
    out = cfg.output.dir
    common = {"s3": cfg.s3.model_dump(), "ray": cfg.ray.model_dump()}
    run_output = {"run_dir": cfg.output.run_dir, "run_name": stage_run_id(run_id, stage)}
    model = cfg.model.model_dump()
    if stage == "generate_pairs":
        d = deep_merge({"input": cfg.input.model_dump()}, cfg.generate_pairs)
        # the run folder <out>/<run id>/generate_pairs is <synth.output_dir>/<stage run id>: one folder, no repeat
        return deep_merge(d, {**common, "synth": {"output_dir": out}, "output": run_output})
    if stage == "mine_negatives":
        forced = {"pairs": {"path": join(inputs["generate_pairs"], "pairs")}, "model": model,
                  "candidates": {"store_uri": join(stage_dir(out, run_id, stage), "lancedb")},
                  "output": {**run_output, "dir": out}}
        return deep_merge(cfg.mine_negatives, {**common, **forced})
    if stage == "train":
        d = deep_merge({"output": {"model_name": f"medembed-{run_id}"}}, cfg.train)
        forced = {"triplets": {"path": inputs["mine_negatives"]}, "model": model,
                  "train": {"dev_fraction": cfg.dev_fraction}, "output": {**run_output, "dir": out}}
        return deep_merge(d, {**common, **forced})
    if stage == "evaluate":
        candidate = {**candidate_model(cfg, inputs["train"]), "label": CANDIDATE}
        d = deep_merge({"store": {"uri": join(out, "eval_lancedb")}}, cfg.evaluate)
        forced = {"models": [{**model, "label": CURRENT}, candidate],
                  "pairs_dev": {"path": inputs["mine_negatives"], "name": PAIRS_DEV, "dev_fraction": cfg.dev_fraction},
                  "output": {**run_output, "dir": out}}
        return deep_merge(d, {**common, **forced})
    if stage == "embed":
        promoted = promoted or {"model": model, "table": None}
        d = deep_merge({"input": cfg.input.model_dump(), "store": {"uri": join(out, "lancedb"), "corpus_name": "corpus",
                                                                   "table": promoted.get("table")}}, cfg.embed)
        return deep_merge(d, {**common, "model": promoted["model"], "output": run_output})
    raise ValueError(f"stage {stage!r} has no job config")


def stage_config_class(stage: str) -> type:
    """The job config class of a stage (the stage runs the job of its name)."""
    from medembed.config import EmbedJobConfig
    from medembed.evaluation.config import EvaluateJobConfig
    from medembed.mining.config import MineNegativesJobConfig
    from medembed.synth.config import GeneratePairsJobConfig
    from medembed.training.config import TrainJobConfig

    return {"generate_pairs": GeneratePairsJobConfig, "mine_negatives": MineNegativesJobConfig,
            "train": TrainJobConfig, "evaluate": EvaluateJobConfig, "embed": EmbedJobConfig}[stage]


def stage_config(cfg: Any, stage: str, run_id: str, inputs: dict[str, str], promoted: dict[str, Any] | None = None
                 ) -> Any:
    """The stage job's validated config for pipeline run ``run_id``."""
    return stage_config_class(stage).model_validate(compose(cfg, stage, run_id, inputs, promoted))


def validate_stage_configs(cfg: Any) -> None:
    """Compose and validate every stage's config (placeholder paths) so a bad section fails before any work."""
    from pydantic import ValidationError

    inputs = {s: join(cfg.output.dir, "<run>", s) for s in STAGES}
    for stage in JOB_STAGES:
        try:
            stage_config(cfg, stage, "<run>", inputs)
        except ValidationError as e:
            problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors())
            raise ValueError(f"{stage} (the {stage} job's config): {problems}") from None


def fingerprint(cfg: Any, stage: str, markers: dict[str, dict[str, Any]]) -> str:
    """SHA-256 of the config sections the stage depends on and the completion markers of its inputs."""
    spec = {"stage": stage,
            "config": {f: (getattr(cfg, f).model_dump(mode="json") if hasattr(getattr(cfg, f), "model_dump")
                           else getattr(cfg, f)) for f in CONFIG_FIELDS[stage]},
            "inputs": {s: markers[s] for s in UPSTREAM[stage]}}
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()


def _same_marker(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    return a is not None and b is not None and all(a.get(k) == b.get(k) for k in ("run_id", "completed_at", "kind"))


def find_reusable(out_dir: str, stage: str, fp: str, storage: Storage = DEFAULT_STORAGE) -> dict[str, Any] | None:
    """The newest stage record with fingerprint ``fp`` whose artifact still has the marker it recorded."""
    fs, root = storage.fs(out_dir)
    best = None
    for path in fs.glob(f"{root.rstrip('/')}/*/stages/{stage}/{artifacts.SUCCESS}"):
        with fs.open(path, "r", encoding="utf-8") as f:
            rec = json.load(f)
        if rec.get("kind") != RECORD_KIND or rec.get("fingerprint") != fp:
            continue
        if not _same_marker(artifacts.read_marker(rec["artifact"], storage), rec.get("artifact_marker")):
            log.info("%s: output of run %s is incomplete or was rewritten; not reusing it", stage, rec.get("run_id"))
            continue
        if best is None or rec["completed_at"] > best["completed_at"]:
            best = rec
    return best


def write_record(out_dir: str, run_id: str, stage: str, fp: str, artifact: str, manifest_path: str | None,
                 storage: Storage = DEFAULT_STORAGE, **summary: Any) -> str:
    """The stage record (written last): fingerprint, artifact and the artifact's marker as it is now."""
    marker = artifacts.read_marker(artifact, storage)
    if marker is None:
        raise RuntimeError(f"stage {stage} finished but its output {artifact} has no {artifacts.SUCCESS}")
    return artifacts.mark_complete(record_dir(out_dir, run_id, stage), RECORD_KIND, stage_run_id(run_id, stage),
                                   {"stage": stage, "fingerprint": fp, "artifact": artifact, "artifact_marker": marker,
                                    "manifest": manifest_path, **summary}, storage)
