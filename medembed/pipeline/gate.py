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
