"""The promotion gate: per-dataset deltas against a tolerance, errors on missing results."""

from __future__ import annotations

import pytest

from medembed.evaluation.report import make_result
from medembed.pipeline.config import GateConfig
from medembed.pipeline.gate import decide, gate_sets


def _result(model: str, dataset: str, ndcg: float, recall: float = 0.5) -> dict:
    return make_result(dataset_name=dataset, split="test", model_name=model, model_revision="r1",
                       scores={"ndcg_at_10": ndcg, "recall_at_100": recall}, evaluation_time=1.0, num_queries=3,
                       num_documents=9)


RESULTS = [_result("current", "a", 0.50), _result("candidate", "a", 0.55),
           _result("current", "b", 0.40), _result("candidate", "b", 0.39)]


def test_promotes_only_when_no_gate_dataset_got_worse():
    d = decide(GateConfig(), RESULTS, "current", "candidate")
    assert not d.promote
    assert d.datasets["a"] == {"current": 0.50, "candidate": 0.55, "delta": pytest.approx(0.05), "passed": True}
    assert d.datasets["b"]["passed"] is False and d.datasets["b"]["delta"] == pytest.approx(-0.01)
    assert "b -0.0100" in d.reason

    only_a = decide(GateConfig(datasets=["a"]), RESULTS, "current", "candidate")
    assert only_a.promote and list(only_a.datasets) == ["a"]


def test_tolerance_and_metric():
    assert decide(GateConfig(tolerance=0.01), RESULTS, "current", "candidate").promote
    assert not decide(GateConfig(tolerance=0.0099), RESULTS, "current", "candidate").promote
    same = decide(GateConfig(metric="recall_at_100"), RESULTS, "current", "candidate")
    assert same.promote and all(r["delta"] == 0.0 for r in same.datasets.values())  # equal is not worse


def test_missing_results_are_errors_not_passes():
    with pytest.raises(ValueError, match="gate dataset 'c'"):
        decide(GateConfig(datasets=["c"]), RESULTS, "current", "candidate")
    with pytest.raises(ValueError, match=r"\['candidate'\]"):
        decide(GateConfig(), RESULTS[:1], "current", "candidate")
    with pytest.raises(KeyError, match="no metric 'mrr_at_10'"):
        decide(GateConfig(metric="mrr_at_10"), RESULTS, "current", "candidate")


def _pipeline(**gate) -> object:
    from medembed.pipeline.config import PipelineJobConfig

    judged = {"name": "judged", "uri": "s3://bucket/eval/judged", "split": "test"}
    return PipelineJobConfig.model_validate({"evaluate": {"datasets": [judged]}, "gate": gate})


def test_gate_sets_labelled_and_synthetic():
    both = gate_sets(_pipeline(datasets=["judged", "pairs-dev"], require_labelled=True))
    assert both == {"labelled": ["judged"], "synthetic": ["pairs-dev"], "warning": None}
    default = gate_sets(_pipeline())  # null: every evaluated dataset, the labelled one included
    assert default["labelled"] == ["judged"] and default["warning"] is None
    synthetic = gate_sets(_pipeline(datasets=["pairs-dev"]))
    assert synthetic["labelled"] == [] and "only at synthetic sets (pairs-dev)" in synthetic["warning"]


def test_production_gate_without_a_labelled_set_is_refused():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="gate.require_labelled: no labelled retrieval set"):
        _pipeline(datasets=["pairs-dev"], require_labelled=True)
    with pytest.raises(ValidationError, match=r"gate.datasets: \['typo'\] are not evaluated"):
        _pipeline(datasets=["typo"])


@pytest.mark.parametrize("preset", ["pipeline_cluster"])
def test_production_presets_gate_on_a_labelled_set(preset):
    from medembed.config import load_config
    from medembed.pipeline.config import PipelineJobConfig

    cfg = load_config(PipelineJobConfig, preset, [])
    assert cfg.gate.require_labelled and gate_sets(cfg)["labelled"]
