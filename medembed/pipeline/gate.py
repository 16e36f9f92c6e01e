"""The promotion gate: is the candidate not worse than the current model on the gate datasets?"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from medembed.evaluation.report import score_of
from medembed.pipeline.config import GateConfig

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
    from medembed.pipeline.stages import PAIRS_DEV

    labelled = [str(d.get("name")) for d in (cfg.evaluate.get("datasets") or []) if isinstance(d, Mapping)]
    evaluated = [*labelled, PAIRS_DEV]
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
