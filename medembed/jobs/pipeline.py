"""Job body of ``medembed pipeline``: generate_pairs -> mine_negatives -> train -> evaluate -> promote (the gate) ->
embed, each stage reused.

Stages are named by the jobs they run. They run in this driver process on one Ray instance, each job body through
``runtime.execute.run_body`` (the function that runs every job) with a sub-manifest whose run id is
``<pipeline run id>/<stage>``. Composition of stage configs and reuse live in ``medembed.pipeline.stages``, the
gate and the promote step in ``medembed.pipeline.gate``.
"""

from __future__ import annotations

import importlib
import logging
import time
from typing import Any

from medembed.config import ModelConfig
from medembed.evaluation import report
from medembed.pipeline import stages as P
from medembed.pipeline.config import PipelineJobConfig
from medembed.pipeline.gate import PROMOTED, gate_sets, promote, read_promoted
from medembed.runtime import artifacts, tracking
from medembed.runtime.console import say, write_out
from medembed.runtime.execute import Body, run_body
from medembed.runtime.manifest import RunManifest
from medembed.runtime.runs import format_duration
from medembed.runtime.storage import DEFAULT_STORAGE, Storage, join

log = logging.getLogger(__name__)


def stage_body(stage: str) -> Body:
    """The job body a stage runs: a stage is named for its job, so it is ``<stage>`` in ``medembed/jobs/<stage>.py``
    (the registry's ``module:function`` for every job; no second list of bodies here)."""
    if stage not in P.JOB_STAGES:
        raise KeyError(f"unknown pipeline stage {stage!r}; stages that run a job: {list(P.JOB_STAGES)}")
    return getattr(importlib.import_module(f"medembed.jobs.{stage}"), stage)


def run_job_stage(cfg: PipelineJobConfig, manifest: RunManifest, stage: str, inputs: dict[str, str],
                  promoted: dict[str, Any] | None) -> tuple[str, str, dict[str, Any]]:
    """Run one stage's job body with its sub-manifest, through ``run_body`` as any job; returns
    (artifact, manifest path, counts)."""
    stage_cfg = P.stage_config(cfg, stage, manifest.run_id, inputs, promoted)
    sub = RunManifest(stage, cfg.output.run_dir, stage_cfg.model_dump(mode="json"),
                      run_id=P.stage_run_id(manifest.run_id, stage), storage=manifest.storage)
    sub.set("pipeline", {"run_id": manifest.run_id, "stage": stage})
    tracking.start_stage(stage, sub, sub.data["config"], sub.storage)  # a nested MLflow run, ended by sub.finish
    counts = run_body(stage_body(stage), stage_cfg, sub)
    return sub.data["output"]["artifact"], sub.path("manifest.json"), counts


def embed_target(promoted: dict[str, Any], cfg: PipelineJobConfig, storage: Storage = DEFAULT_STORAGE) -> dict[str, Any]:
    """The promoted model and its table: ``<corpus>__<model slug>__<8 hex of id@revision>`` unless configured."""
    from medembed.embedding.card import resolve_card
    from medembed.index.tables import table_name

    card = resolve_card(ModelConfig.model_validate(promoted["model"]), storage)
    corpus = (cfg.embed.get("store") or {}).get("corpus_name", "corpus")
    return {"model": promoted["model"], "table": table_name(corpus, card.slug, key=f"{card.model_id}@{card.revision}")}


def pipeline(cfg: PipelineJobConfig, manifest: RunManifest) -> dict[str, Any]:
    """The whole job body (for ``app.runner.run_job``); returns the counts recorded in ``manifest``."""
    storage, out = manifest.storage, cfg.output.dir
    if cfg.model.name.startswith(tracking.MODELS_PREFIX):  # one registry version for every stage and fingerprint
        cfg.model = cfg.model.model_copy(update={"name": tracking.pin_model_uri(cfg.model.name)})
    markers: dict[str, dict[str, Any]] = {}
    made: dict[str, str] = {}
    info: dict[str, dict[str, Any]] = {}
    manifest.set("stages", info)
    gate_check = gate_sets(cfg)
    manifest.set("gate_sets", gate_check)
    if gate_check["warning"]:
        log.warning("%s", gate_check["warning"])
    for i, stage in enumerate(P.STAGES, start=1):
        t0 = time.perf_counter()
        fp = P.fingerprint(cfg, stage, markers)
        rec = P.find_reusable(out, stage, fp, storage)
        if rec is not None:
            say("stage %d/%d %s: reusing the output of %s (%s)", i, len(P.STAGES), stage, rec["run_id"],
                rec["artifact"])
            artifact, status, sub_manifest = rec["artifact"], "reused", rec.get("manifest")
            tracking.reused_stage(stage, rec)
        else:
            say("stage %d/%d %s: running", i, len(P.STAGES), stage)
            log.info("stage %s fingerprint %s", stage, fp)
            with manifest.timed(stage):
                if stage == "promote":
                    with tracking.nested_run(stage, tags={"medembed.run_id": P.stage_run_id(manifest.run_id, stage),
                                                          "medembed.stage_status": "ran"},
                                             params={"gate": cfg.gate.model_dump(mode="json")}):
                        artifact, sub_manifest = promote(cfg, manifest.run_id, made["evaluate"], made["train"],
                                                          storage), None
                else:
                    promoted = embed_target(read_promoted(made["promote"], storage), cfg, storage) if stage == "embed" else None
                    artifact, sub_manifest, _ = run_job_stage(cfg, manifest, stage, made, promoted)
            status = "ran"
            P.write_record(out, manifest.run_id, stage, fp, artifact, sub_manifest, storage)
        made[stage] = artifact
        markers[stage] = artifacts.read_marker(artifact, storage)
        info[stage] = {"status": status, "fingerprint": fp, "artifact": artifact, "manifest": sub_manifest,
                       "artifact_run_id": markers[stage]["run_id"],
                       "record": join(P.record_dir(out, manifest.run_id if status == "ran" else
                                                   rec["run_id"].rsplit("/", 1)[0], stage), artifacts.SUCCESS),
                       "seconds": round(time.perf_counter() - t0, 3)}
        if status == "ran":
            say("stage %d/%d %s: done in %s -> %s", i, len(P.STAGES), stage, format_duration(info[stage]["seconds"]),
                artifact)
        manifest.write()

    promoted = read_promoted(made["promote"], storage)
    table = markers["embed"]
    results = report.read_results(join(made["evaluate"], "results"))
    cmp = report.compare(results, metric=cfg.gate.metric, baseline=P.CURRENT)
    decision = promoted["decision"]
    manifest.set("gate", decision)
    manifest.set("promoted", {**promoted, "record": join(made["promote"], PROMOTED)})
    manifest.set("table", {"uri": made["embed"], "model_id": table.get("model_id"), "rows": table.get("rows")})
    manifest.set("output", {"artifact": made["embed"], "promoted": join(made["promote"], PROMOTED),
                            "evaluation": made["evaluate"]})
    counts = {"stages_run": sum(v["status"] == "ran" for v in info.values()),
              "stages_reused": sum(v["status"] == "reused" for v in info.values()),
              "promoted": promoted["promoted"], "table_rows": table.get("rows")}
    for k, v in counts.items():
        manifest.count(k, v)
    summary = final_summary(report.to_text(cmp), decision, promoted, made, table, gate_check["warning"])
    log.info("pipeline %s done (summary on stdout)", manifest.run_id)
    write_out(summary)
    return counts


def final_summary(table_text: str, decision: dict[str, Any], promoted: dict[str, Any], made: dict[str, str],
                  table: dict[str, Any], gate_warning: str | None = None) -> str:
    lines = ["", "evaluation (" + made["evaluate"] + "):", table_text.rstrip(), "",
             f"gate ({decision['metric']}, tolerance {decision['tolerance']:g}): "
             f"{'PROMOTE candidate' if decision['promote'] else 'KEEP current model'} -- {decision['reason']}"]
    for name, row in decision["datasets"].items():
        lines.append(f"  {name}: current {row['current']:.4f}, candidate {row['candidate']:.4f}, "
                     f"delta {row['delta']:+.4f} ({'pass' if row['passed'] else 'FAIL'})")
    if gate_warning:
        lines.append(f"WARNING: {gate_warning}")
    lines += [f"promoted model: {promoted['model_id']} ({promoted['model']['name']})",
              f"candidate model folder: {made['train']}",
              f"table: {made['embed']} ({table.get('rows')} rows, model {table.get('model_id')})", ""]
    return "\n".join(lines)
