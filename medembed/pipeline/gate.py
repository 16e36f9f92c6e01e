"""The promotion gate: is the candidate not worse than the current model on the gate datasets? (``decide``), and
the pipeline's ``promote`` step that applies it: ``promoted.json``, the step's marker, the Model Registry."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from medembed.config import ModelConfig
from medembed.evaluation import report
from medembed.evaluation.report import score_of
from medembed.pipeline import stages as P
from medembed.pipeline.config import GateConfig
from medembed.runtime import artifacts, tracking
from medembed.runtime.storage import DEFAULT_STORAGE, Storage, join

log = logging.getLogger(__name__)

PROMOTED = "promoted.json"  # the promote step's record: which model, its id and revision, the decision

EPS = 1e-12  # float noise: 0.39 - 0.40 is -0.010000000000000009, which a tolerance of 0.01 should accept


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    metric: str
    tolerance: float
    current: str
    candidate: str
    datasets: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> current, candidate, delta, passed
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


SYNTHETIC_WARNING = ("the gate looks only at synthetic sets ({names}): the held-out split of the model's own "
                     "training pairs rises easily while real retrieval can fall; add a labelled retrieval set "
                     "(evaluate.datasets: a BEIR folder or s3:// URI of judged queries) to gate.datasets")


def gate_sets(cfg: Any) -> dict[str, Any]:
    """Which of a pipeline config's gate datasets are labelled (BEIR sets) and which synthetic (pairs-dev).

    Raises ``ValueError`` for a gate dataset the evaluation does not produce, and for a gate without a
    labelled set when ``gate.require_labelled`` is set. ``warning`` is the text to show when every gate
    set is synthetic (``None`` otherwise)."""
    labelled = [str(d.get("name")) for d in (cfg.evaluate.get("datasets") or []) if isinstance(d, Mapping)]
    evaluated = [*labelled, P.PAIRS_DEV]
    names = list(cfg.gate.datasets) if cfg.gate.datasets is not None else evaluated
    unknown = [n for n in names if n not in evaluated]
    if unknown:
        raise ValueError(f"gate.datasets: {unknown} are not evaluated (evaluated: {evaluated})")
    out = {"labelled": [n for n in names if n in labelled], "synthetic": [n for n in names if n not in labelled]}
    out["warning"] = None if out["labelled"] else SYNTHETIC_WARNING.format(names=", ".join(out["synthetic"]))
    if cfg.gate.require_labelled and not out["labelled"]:
        raise ValueError("gate.require_labelled: no labelled retrieval set among the gate datasets "
                         f"{names}; add one to evaluate.datasets (name, uri, split) and to gate.datasets")
    return out


def decide(gate: GateConfig, results: Iterable[Mapping[str, Any]], current: str, candidate: str) -> GateDecision:
    """Promote when, on every gate dataset, ``candidate >= current - tolerance`` on ``gate.metric``.

    ``results`` are evaluation result dicts (``evaluation.report.make_result``) labelled with the two
    model names. A gate dataset without results for both models is an error, not a silent pass.
    """
    scores: dict[str, dict[str, float]] = {}
    for r in results:
        scores.setdefault(r["dataset_name"], {})[r["model"]["name"]] = score_of(r, gate.metric)
    names = gate.datasets if gate.datasets is not None else sorted(scores)
    if not names:
        raise ValueError("the gate has no datasets to look at (no evaluation results)")
    rows, failed = {}, []
    for name in names:
        got = scores.get(name, {})
        missing = [m for m in (current, candidate) if m not in got]
        if missing:
            raise ValueError(f"gate dataset {name!r}: no {gate.metric} result for {missing} "
                             f"(evaluated datasets: {sorted(scores)})")
        delta = got[candidate] - got[current]
        passed = delta >= -gate.tolerance - EPS
        rows[name] = {"current": got[current], "candidate": got[candidate], "delta": delta, "passed": passed}
        if not passed:
            failed.append(f"{name} {delta:+.4f}")
    promote = not failed
    reason = (f"candidate within {gate.tolerance:g} of or above the current model on {gate.metric} on every gate "
              f"dataset" if promote else f"candidate worse than the current model by more than {gate.tolerance:g} "
              f"on {gate.metric}: {', '.join(failed)}")
    return GateDecision(promote, gate.metric, gate.tolerance, current, candidate, rows, reason)


def promote(cfg: Any, run_id: str, eval_artifact: str, model_dir: str, storage: Storage = DEFAULT_STORAGE) -> str:
    """The pipeline's promote step for run ``run_id``: apply the gate to the evaluation results, write
    ``promoted.json`` and the step's marker under ``<output.dir>/<run id>/promote``; returns that folder."""
    results = report.read_results(join(eval_artifact, "results"))
    decision = decide(cfg.gate, results, P.CURRENT, P.CANDIDATE)
    chosen = ModelConfig.model_validate(P.candidate_model(cfg, model_dir)) if decision.promote else cfg.model
    from medembed.embedding.card import resolve_card

    card = resolve_card(chosen, storage)
    record = {"promoted": P.CANDIDATE if decision.promote else P.CURRENT, "model": chosen.model_dump(mode="json"),
              "model_id": card.model_id, "revision": card.revision, "decision": decision.to_dict(),
              "evaluation": eval_artifact, "pipeline_run_id": run_id}
    registry = track_promotion(cfg, model_dir, decision, run_id, storage)
    if registry is not None:
        record["registry"] = registry
    out = P.stage_dir(cfg.output.dir, run_id, "promote")
    artifacts.clear_marker(out, storage)
    fs, path = storage.fs(join(out, PROMOTED))
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    with fs.open(path, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=2)
    artifacts.mark_complete(out, "promotion", P.stage_run_id(run_id, "promote"),
                            {"promoted": record["promoted"], "model": record["model"], "model_id": card.model_id,
                             "revision": card.revision, "promote": decision.promote}, storage)
    return out


def track_promotion(cfg: Any, model_dir: str, decision: GateDecision, run_id: str,
                    storage: Storage = DEFAULT_STORAGE) -> dict[str, Any] | None:
    """With MLflow tracking on: the gate's figures as metrics of the promote run, the candidate registered in the
    Model Registry and the alias moved to it only when the gate passed (``tracking.register_candidate``)."""
    if tracking.current() is None:
        return None
    tracking.log_metrics({"gate/promote": decision.promote,
                          **{f"gate/{name}/{k}": row[k] for name, row in decision.datasets.items()
                             for k in ("current", "candidate", "delta")}})
    from medembed.embedding.card import resolve_card

    candidate = resolve_card(ModelConfig.model_validate(P.candidate_model(cfg, model_dir)), storage)
    try:
        return tracking.register_candidate(getattr(cfg, "tracking", None), model_dir, candidate.revision,
                                           decision.to_dict(), run_id)
    except Exception as e:  # the decision stands (promoted.json); the registry did not follow it
        log.error("MLflow Model Registry: the candidate was not registered (the alias did not move): %s", e)
        return {"error": f"{type(e).__name__}: {e}"}


def read_promoted(promote_artifact: str, storage: Storage = DEFAULT_STORAGE) -> dict[str, Any]:
    """The record a promote step wrote (``promoted.json``)."""
    with storage.open(join(promote_artifact, PROMOTED), "r", encoding="utf-8") as f:
        return json.load(f)
