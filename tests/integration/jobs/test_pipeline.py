"""`medembed pipeline` on a small slice: every stage complete, the gate recorded, reruns reuse stages.

Three runs share one output folder: the first runs every stage, the second reuses every stage, and
after the evaluation's ``_SUCCESS.json`` is deleted the third redoes evaluate and what follows it only.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medembed import schema as S
from medembed.pipeline.stages import STAGES
from medembed.runtime import artifacts

# three pipeline runs with a (tiny) training stage: ~10 minutes on a loaded 2-core machine
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

SLICE = ["input.limit=12", "generate_pairs.synth.queries_per_note=3", "dev_fraction=0.3",
         "mine_negatives.mining.max_rank=20",
         "train.train.max_steps=3", "train.train.batch_size=4", "train.train.passage_max_length=64",
         "embed.embed.torch_threads=1", "mine_negatives.embed.torch_threads=1", "evaluate.embed.torch_threads=1"]


def _run(tmp: Path, name: str) -> dict:
    from medembed.app.runner import main_for

    sets = [*SLICE, f"output.dir={tmp / 'out'}", f"output.run_dir={tmp / 'runs'}", f"output.run_name={name}"]
    assert main_for("pipeline", ["--config", "pipeline"] + [a for s in sets for a in ("--set", s)]) == 0
    return json.loads((tmp / "runs" / name / "manifest.json").read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory, ray_local):
    tmp = tmp_path_factory.mktemp("pipeline")
    first = _run(tmp, "r1")
    first["markers"] = {s: artifacts.read_marker(i["artifact"]) for s, i in first["stages"].items()}
    second = _run(tmp, "r2")
    (Path(first["stages"]["evaluate"]["artifact"]) / artifacts.SUCCESS).unlink()
    third = _run(tmp, "r3")
    return tmp, first, second, third


def test_first_run_completes_every_stage(runs):
    tmp, first, _, _ = runs
    assert first["status"] == "succeeded" and list(first["stages"]) == list(STAGES)
    for stage, info in first["stages"].items():
        assert info["status"] == "ran", stage
        marker = first["markers"][stage]  # as r1 left it (the fixture later deletes the evaluation's)
        assert marker is not None and marker["run_id"] == f"r1/{stage}", stage
        assert json.loads(Path(info["record"]).read_text())["fingerprint"] == info["fingerprint"]
        if stage != "promote":  # the other stages ran as jobs with sub-manifests
            sub = json.loads((tmp / "runs" / "r1" / stage / "manifest.json").read_text())
            assert sub["run_id"] == f"r1/{stage}" and sub["status"] == "succeeded"
    assert first["counts"]["stages_run"] == len(STAGES) and first["counts"]["stages_reused"] == 0
    out = tmp / "out"  # one folder per output, the run id once: <output.dir>/<run id>/<stage>
    assert {s: i["artifact"] for s, i in first["stages"].items() if s != "embed"} == {
        s: str(out / "r1" / s) + {"mine_negatives": "/triplets", "train": "/model"}.get(s, "")
        for s in STAGES if s != "embed"}
    assert (out / "r1" / "generate_pairs" / "pairs" / "part-00000.parquet").is_file()
    assert sorted(p.name for p in (out / "r1").iterdir()) == sorted([*STAGES[:-1], "stages"])
    model = first["stages"]["train"]["artifact"]
    assert Path(model, "medembed_model.json").exists()


def test_gate_decision_and_promoted_model_are_recorded(runs):
    _, first, _, _ = runs
    gate = first["gate"]
    row = gate["datasets"]["pairs-dev"]
    assert list(gate["datasets"]) == ["pairs-dev"] and gate["metric"] == "ndcg_at_10"
    assert 0.0 < row["current"] <= 1.0 and 0.0 < row["candidate"] <= 1.0
    assert row["delta"] == pytest.approx(row["candidate"] - row["current"])
    assert gate["promote"] == row["passed"] == (row["delta"] >= -gate["tolerance"])
    promoted = json.loads(Path(first["output"]["promoted"]).read_text())
    assert promoted["decision"] == gate
    assert first["gate_sets"]["labelled"] == [] and first["gate_sets"]["synthetic"] == ["pairs-dev"]
    assert "only at synthetic sets (pairs-dev)" in first["gate_sets"]["warning"]  # the default gate warns
    eval_manifest = json.loads(Path(first["stages"]["evaluate"]["manifest"]).read_text())
    assert eval_manifest["scores"]["candidate"]["pairs-dev"]["ndcg_at_10"] == row["candidate"]
    if gate["promote"]:
        assert promoted["promoted"] == "candidate" and promoted["model"]["name"] == first["stages"]["train"]["artifact"]
    else:
        assert promoted["promoted"] == "current" and promoted["model"]["name"] == "bundled:all-MiniLM-L6-v2"


def test_table_holds_the_promoted_models_vectors(runs):
    import lance

    _, first, _, _ = runs
    promoted = first["promoted"]
    ds = lance.dataset(first["table"]["uri"])
    md = {k.decode(): v.decode() for k, v in ds.schema.metadata.items()}
    assert md[S.META_MODEL_ID] == promoted["model_id"] and md[S.META_MODEL_REVISION] == promoted["revision"]
    docs = set(ds.to_table(columns=[S.DOC_ID])[S.DOC_ID].to_pylist())
    assert len(docs) == 12 and ds.count_rows() == first["table"]["rows"] >= 12
    assert set(ds.to_table(columns=[S.MODEL_ID])[S.MODEL_ID].to_pylist()) == {promoted["model_id"]}


def test_rerun_reuses_every_stage(runs):
    tmp, first, second, _ = runs
    assert second["status"] == "succeeded"
    assert {s: i["status"] for s, i in second["stages"].items()} == {s: "reused" for s in STAGES}
    for stage in STAGES:
        assert second["stages"][stage]["artifact"] == first["stages"][stage]["artifact"]
        assert second["stages"][stage]["fingerprint"] == first["stages"][stage]["fingerprint"]
        assert not (tmp / "runs" / "r2" / stage).exists()  # no stage job ran
    assert second["gate"] == first["gate"] and second["counts"]["stages_run"] == 0


def test_incomplete_stage_is_redone_with_everything_after_it(runs):
    tmp, first, _, third = runs
    status = {s: i["status"] for s, i in third["stages"].items()}
    assert status == {"generate_pairs": "reused", "mine_negatives": "reused", "train": "reused",
                      "evaluate": "ran", "promote": "ran", "embed": "ran"}
    assert third["stages"]["train"]["artifact"] == first["stages"]["train"]["artifact"]
    assert third["stages"]["evaluate"]["artifact"].endswith("/r3/evaluate")
    assert artifacts.read_marker(third["stages"]["evaluate"]["artifact"])["run_id"] == "r3/evaluate"
    # the same model and data: the same scores; the eval corpus tables of r1 are reused, not re-embedded
    assert third["gate"]["datasets"] == first["gate"]["datasets"]
    ev = json.loads((tmp / "runs" / "r3" / "evaluate" / "manifest.json").read_text())
    assert ev["counts"]["tables_built"] == 0 and ev["counts"]["documents_embedded"] == 0


def test_runs_list_and_show_read_the_pipeline_runs(runs):
    from medembed.runtime.runs import find_run, list_runs, summary

    tmp, first, _, third = runs
    rows, unreadable = list_runs(str(tmp / "runs"), job="pipeline")
    assert unreadable == [] and [r.run_id for r in rows] == ["r3", "r2", "r1"]
    assert all(r.status == "succeeded" and r.output == first["output"]["artifact"] for r in rows)
    stage_rows = list_runs(str(tmp / "runs"), stages=True, job="train")[0]
    assert [r.run_id for r in stage_rows] == ["r1/train"]  # r2 and r3 reused the training stage
    s = summary(*find_run(str(tmp / "runs"), "r3"))
    assert s["stages"]["evaluate"]["status"] == "ran" and s["stages"]["train"]["status"] == "reused"
    assert s["gate"] == third["gate"] and s["counts"]["stages_reused"] == third["counts"]["stages_reused"]
