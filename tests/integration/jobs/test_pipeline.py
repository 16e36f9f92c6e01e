"""`medembed pipeline` on a small slice, tracked in a real local MLflow store (sqlite): every stage complete,
the gate recorded, reruns reuse stages, one nested MLflow run per stage, and the Model Registry.

One module fixture runs, in one output folder and one store:
1. ``p1``: a pipeline whose candidate is trained to be worse (high learning rate, no interpolation) but whose gate
   tolerates it (``gate.tolerance=1``): every stage runs, the parent MLflow run gets one nested run per stage with
   their metrics, and the candidate is registered as version 1 under the alias ``champion``;
2. ``p2``: the same pipeline again: every stage is reused;
3. the evaluation's ``_SUCCESS.json`` is deleted, and ``p3`` runs with ``gate.tolerance=0``: evaluate and what
   follows it are redone (same scores), the gate fails, the candidate is registered as version 2 and the alias
   stays on version 1;
4. ``reembed`` with ``model.name=models:/medembed@champion``: its table is embedded with version 1.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medembed import schema as S
from medembed.pipeline.stages import STAGES
from medembed.runtime import artifacts

mlflow = pytest.importorskip("mlflow")

# three pipeline runs (the second reuses every stage, the third redoes the last three) and a reembed
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

SLICE = ["input.limit=12", "generate_pairs.synth.queries_per_note=3", "dev_fraction=0.3",
         "mine_negatives.mining.max_rank=20",
         "train.train.max_steps=3", "train.train.batch_size=4", "train.train.passage_max_length=64",
         "embed.embed.torch_threads=1", "mine_negatives.embed.torch_threads=1", "evaluate.embed.torch_threads=1"]
WORSE = ["train.train.learning_rate=0.02", "train.train.interpolate=null", "train.train.log_every=1"]
NAME, ALIAS = "medembed", "champion"


def _pipeline(tmp: Path, uri: str, name: str, *extra: str) -> dict:
    from medembed.app.runner import main_for

    sets = [*SLICE, *WORSE, f"output.dir={tmp / 'out'}", f"output.run_dir={tmp / 'runs'}", f"output.run_name={name}",
            f"tracking.mlflow_uri={uri}", *extra]
    assert main_for("pipeline", ["--config", "pipeline"] + [a for s in sets for a in ("--set", s)]) == 0
    return json.loads((tmp / "runs" / name / "manifest.json").read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory, ray_local):
    from medembed.app.runner import main_for

    tmp = tmp_path_factory.mktemp("pipeline")
    uri = f"sqlite:///{tmp / 'store' / 'mlflow.db'}"
    first = _pipeline(tmp, uri, "p1", "gate.tolerance=1.0")
    first["markers"] = {s: artifacts.read_marker(i["artifact"]) for s, i in first["stages"].items()}
    second = _pipeline(tmp, uri, "p2", "gate.tolerance=1.0")
    (Path(first["stages"]["evaluate"]["artifact"]) / artifacts.SUCCESS).unlink()
    third = _pipeline(tmp, uri, "p3", "gate.tolerance=0")
    sets = ["input.limit=12", f"store.uri={tmp / 'serving'}", "store.corpus_name=notes", f"output.run_dir={tmp / 'runs'}",
            "output.run_name=nightly", f"model.name=models:/{NAME}@{ALIAS}", f"model.cache_dir={tmp / 'cache'}",
            f"tracking.mlflow_uri={uri}", "embed.torch_threads=1"]
    assert main_for("reembed", [a for s in sets for a in ("--set", s)]) == 0
    nightly = json.loads((tmp / "runs" / "nightly" / "manifest.json").read_text())
    return tmp, first, second, third, nightly, uri


@pytest.fixture(scope="module")
def tracked(runs):
    tmp, first, _, third, nightly, uri = runs
    return tmp, mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri), first, third, nightly


def _children(client, parent_id: str) -> dict:
    exp = client.get_run(parent_id).info.experiment_id
    runs = client.search_runs([exp], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'")
    return {r.info.run_name: r for r in runs}


def test_first_run_completes_every_stage(runs):
    tmp, first, _, _, _, _ = runs
    assert first["status"] == "succeeded" and list(first["stages"]) == list(STAGES)
    for stage, info in first["stages"].items():
        assert info["status"] == "ran", stage
        marker = first["markers"][stage]  # as p1 left it (the fixture later deletes the evaluation's)
        assert marker is not None and marker["run_id"] == f"p1/{stage}", stage
        assert json.loads(Path(info["record"]).read_text())["fingerprint"] == info["fingerprint"]
        if stage != "promote":  # the other stages ran as jobs with sub-manifests
            sub = json.loads((tmp / "runs" / "p1" / stage / "manifest.json").read_text())
            assert sub["run_id"] == f"p1/{stage}" and sub["status"] == "succeeded"
    assert first["counts"]["stages_run"] == len(STAGES) and first["counts"]["stages_reused"] == 0
    out = tmp / "out"  # one folder per output, the run id once: <output.dir>/<run id>/<stage>
    assert {s: i["artifact"] for s, i in first["stages"].items() if s != "embed"} == {
        s: str(out / "p1" / s) + {"mine_negatives": "/triplets", "train": "/model"}.get(s, "")
        for s in STAGES if s != "embed"}
    assert (out / "p1" / "generate_pairs" / "pairs" / "part-00000.parquet").is_file()
    assert sorted(p.name for p in (out / "p1").iterdir()) == sorted([*STAGES[:-1], "stages"])
    model = first["stages"]["train"]["artifact"]
    assert Path(model, "medembed_model.json").exists()


def test_gate_decision_and_promoted_model_are_recorded(runs):
    _, first, _, _, _, _ = runs
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

    _, first, _, _, _, _ = runs
    promoted = first["promoted"]
    ds = lance.dataset(first["table"]["uri"])
    md = {k.decode(): v.decode() for k, v in ds.schema.metadata.items()}
    assert md[S.META_MODEL_ID] == promoted["model_id"] and md[S.META_MODEL_REVISION] == promoted["revision"]
    docs = set(ds.to_table(columns=[S.DOC_ID])[S.DOC_ID].to_pylist())
    assert len(docs) == 12 and ds.count_rows() == first["table"]["rows"] >= 12
    assert set(ds.to_table(columns=[S.MODEL_ID])[S.MODEL_ID].to_pylist()) == {promoted["model_id"]}


def test_rerun_reuses_every_stage(runs):
    tmp, first, second, _, _, _ = runs
    assert second["status"] == "succeeded"
    assert {s: i["status"] for s, i in second["stages"].items()} == {s: "reused" for s in STAGES}
    for stage in STAGES:
        assert second["stages"][stage]["artifact"] == first["stages"][stage]["artifact"]
        assert second["stages"][stage]["fingerprint"] == first["stages"][stage]["fingerprint"]
        assert not (tmp / "runs" / "p2" / stage).exists()  # no stage job ran
    assert second["gate"] == first["gate"] and second["counts"]["stages_run"] == 0


def test_incomplete_stage_is_redone_with_everything_after_it(runs):
    tmp, first, _, third, _, _ = runs
    status = {s: i["status"] for s, i in third["stages"].items()}
    assert status == {"generate_pairs": "reused", "mine_negatives": "reused", "train": "reused",
                      "evaluate": "ran", "promote": "ran", "embed": "ran"}
    assert third["stages"]["train"]["artifact"] == first["stages"]["train"]["artifact"]
    assert third["stages"]["evaluate"]["artifact"].endswith("/p3/evaluate")
    assert artifacts.read_marker(third["stages"]["evaluate"]["artifact"])["run_id"] == "p3/evaluate"
    # the same models and data: the same scores; the eval corpus tables of p1 are reused, not re-embedded
    same = ("current", "candidate", "delta")  # (only the tolerance differs, and with it the decision)
    assert {k: third["gate"]["datasets"]["pairs-dev"][k] for k in same} == \
        {k: first["gate"]["datasets"]["pairs-dev"][k] for k in same}
    ev = json.loads((tmp / "runs" / "p3" / "evaluate" / "manifest.json").read_text())
    assert ev["counts"]["tables_built"] == 0 and ev["counts"]["documents_embedded"] == 0


def test_runs_list_and_show_read_the_pipeline_runs(runs):
    from medembed.runtime.runs import find_run, list_runs, summary

    tmp, first, _, third, _, _ = runs
    rows, unreadable = list_runs(str(tmp / "runs"), job="pipeline")
    assert unreadable == [] and [r.run_id for r in rows] == ["p3", "p2", "p1"]
    assert all(r.status == "succeeded" for r in rows)
    assert [r.output for r in rows] == [third["output"]["artifact"], *[first["output"]["artifact"]] * 2]
    stage_rows = list_runs(str(tmp / "runs"), stages=True, job="train")[0]
    assert [r.run_id for r in stage_rows] == ["p1/train"]  # p2 and p3 reused the training stage
    s = summary(*find_run(str(tmp / "runs"), "p3"))
    assert s["stages"]["evaluate"]["status"] == "ran" and s["stages"]["train"]["status"] == "reused"
    assert s["gate"] == third["gate"] and s["counts"]["stages_reused"] == third["counts"]["stages_reused"]


def test_pipeline_run_is_a_parent_with_one_nested_run_per_stage(tracked):
    _, client, first, _, _ = tracked
    parent = client.get_run(first["mlflow"]["run_id"])
    assert parent.info.run_name == "p1" and parent.info.status == "FINISHED"
    assert parent.data.tags["medembed.job"] == "pipeline" and parent.data.tags["medembed.run_id"] == "p1"
    assert parent.data.params["gate.tolerance"] == "1.0" and parent.data.params["tracking.alias"] == ALIAS
    assert parent.data.metrics["stages_run"] == len(STAGES) and parent.data.metrics["table_rows"] >= 12
    kids = _children(client, parent.info.run_id)
    assert sorted(kids) == sorted(STAGES)
    for stage, run in kids.items():
        assert run.info.status == "FINISHED" and run.data.tags["medembed.stage_status"] == "ran", stage
        assert run.data.tags["medembed.run_id"] == f"p1/{stage}"
    # the stage runs carry their manifest's counts and the manifest itself
    embed = kids["embed"]
    assert embed.data.metrics["quarantined"] == 0 and any(k.startswith("throughput/") for k in embed.data.metrics)
    assert "quarantine_summary.json" in {a.path for a in client.list_artifacts(embed.info.run_id)}
    for stage in ("generate_pairs", "mine_negatives", "train", "evaluate", "embed"):
        sub = json.loads(Path(first["stages"][stage]["manifest"]).read_text())
        assert sub["mlflow"]["run_id"] == kids[stage].info.run_id
        assert sub["mlflow"]["parent_run_id"] == parent.info.run_id
        assert "manifest.json" in {a.path for a in client.list_artifacts(kids[stage].info.run_id)}


def test_training_logs_steps_from_rank0_and_dev_metrics_per_alpha(tracked):
    _, client, first, _, _ = tracked
    train = _children(client, first["mlflow"]["run_id"])["train"]
    loss = client.get_metric_history(train.info.run_id, "train/loss")
    assert [m.step for m in loss] == [1, 2, 3]  # log_every=1, 3 steps
    assert all(m.value > 0 for m in loss)
    assert [m.step for m in client.get_metric_history(train.info.run_id, "train/lr")] == [1, 2, 3]
    assert all(m.value > 0 for m in client.get_metric_history(train.info.run_id, "train/steps_per_s"))
    sub = json.loads(Path(first["stages"]["train"]["manifest"]).read_text())
    m = train.data.metrics
    assert m["steps"] == sub["counts"]["steps"] == 3 and m["final_loss"] == pytest.approx(sub["counts"]["final_loss"])
    for alpha, scores in sub["counts"]["dev"].items():  # base (0.0) and tuned (1.0)
        assert m[f"dev/alpha_{alpha}/ndcg_at_10"] == pytest.approx(scores["ndcg_at_10"])
    assert m["interpolation_alpha"] == 1.0


def test_evaluation_logs_every_metric_and_the_table_and_chart(tracked):
    _, client, first, _, _ = tracked
    ev = _children(client, first["mlflow"]["run_id"])["evaluate"]
    sub = json.loads(Path(first["stages"]["evaluate"]["manifest"]).read_text())
    logged = 0
    for model, per in sub["scores"].items():
        for dataset, scores in per.items():
            assert len(scores) >= 10  # nDCG/MAP/Recall/Precision/MRR at several k
            for k, v in scores.items():
                assert ev.data.metrics[f"{model}/{dataset}/{k}"] == pytest.approx(v)
                logged += 1
    assert logged >= 20 and set(sub["scores"]) == {"current", "candidate"}
    top = {a.path for a in client.list_artifacts(ev.info.run_id)}
    assert {"comparison.md", "ndcg_at_10.png", "results", "manifest.json"} <= top
    results = [a.path for d in client.list_artifacts(ev.info.run_id, "results")
               for x in client.list_artifacts(ev.info.run_id, d.path) for a in client.list_artifacts(ev.info.run_id, x.path)]
    assert len(results) == 2 and all(p.endswith(".json") for p in results)


def test_passed_gate_registers_the_candidate_under_the_alias(tracked):
    tmp, client, first, _, _ = tracked
    assert first["gate"]["promote"] is True
    promote = _children(client, first["mlflow"]["run_id"])["promote"]
    delta = first["gate"]["datasets"]["pairs-dev"]["delta"]
    assert promote.data.metrics["gate/promote"] == 1.0
    assert promote.data.metrics["gate/pairs-dev/delta"] == pytest.approx(delta)
    assert promote.data.tags["medembed.registered_version"] == "1" and promote.data.tags["medembed.alias_moved"] == "true"
    mv = client.get_model_version_by_alias(NAME, ALIAS)
    assert str(mv.version) == "1" and mv.tags["medembed.gate_passed"] == "true" and mv.run_id == promote.info.run_id
    model_dir = Path(first["stages"]["train"]["artifact"])
    card = json.loads((model_dir / "medembed_model.json").read_text())
    assert mv.tags["medembed.model_id"] == card["model_id"]
    registry = json.loads(Path(first["output"]["promoted"]).read_text())["registry"]
    assert registry["version"] == "1" and registry["alias_moved"] is True and registry["alias_version"] == "1"
    # the registered model is the sentence-transformers flavor with the model's saved prompts
    got = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{NAME}/1", dst_path=str(tmp / "v1")))
    assert "sentence_transformers" in (got / "MLmodel").read_text()
    saved = json.loads((got / "model.sentence_transformer" / "config_sentence_transformers.json").read_text())
    original = json.loads((model_dir / "config_sentence_transformers.json").read_text())
    assert saved["prompts"] == original["prompts"] and "query" in saved["prompts"]


def test_failed_gate_leaves_the_alias_where_it_was(tracked):
    _, client, first, third, _ = tracked
    gate = third["gate"]
    assert gate["promote"] is False and gate["datasets"]["pairs-dev"]["delta"] < 0  # the worse candidate
    same = ("current", "candidate", "delta")  # same models, same scores; only the tolerance differs
    assert {k: gate["datasets"]["pairs-dev"][k] for k in same} == {k: first["gate"]["datasets"]["pairs-dev"][k] for k in same}
    kids = _children(client, third["mlflow"]["run_id"])
    assert sorted(kids) == sorted(STAGES)
    status = {s: r.data.tags["medembed.stage_status"] for s, r in kids.items()}
    assert status == {"generate_pairs": "reused", "mine_negatives": "reused", "train": "reused", "evaluate": "ran",
                      "promote": "ran", "embed": "ran"}
    promote = kids["promote"]
    assert promote.data.metrics["gate/promote"] == 0.0 and promote.data.tags["medembed.alias_moved"] == "false"
    assert client.get_model_version(NAME, "2").tags["medembed.gate_passed"] == "false"
    assert str(client.get_model_version_by_alias(NAME, ALIAS).version) == "1"  # unmoved
    registry = json.loads(Path(third["output"]["promoted"]).read_text())["registry"]
    assert registry == {**registry, "version": "2", "alias_moved": False, "alias_version": "1"}


def test_reembed_with_the_alias_uri_embeds_with_that_version(tracked):
    import lance

    _, client, first, _, nightly = tracked
    assert nightly["status"] == "succeeded"
    mv = client.get_model_version_by_alias(NAME, ALIAS)
    model = nightly["model"]
    assert model["source"] == f"models:/{NAME}@{ALIAS}" and model["model_id"] == mv.tags["medembed.model_id"]
    assert model["revision"] == mv.tags["medembed.revision"] == first["promoted"]["revision"]
    ds = lance.dataset(nightly["table"]["uri"])
    md = {k.decode(): v.decode() for k, v in ds.schema.metadata.items()}
    assert md[S.META_MODEL_ID] == mv.tags["medembed.model_id"] and md[S.META_MODEL_REVISION] == mv.tags["medembed.revision"]
    assert len(set(ds.to_table(columns=[S.DOC_ID])[S.DOC_ID].to_pylist())) == 12
    run = client.get_run(nightly["mlflow"]["run_id"])  # the nightly job is an MLflow run of its own
    assert run.data.tags["medembed.job"] == "reembed" and run.data.params["model.name"] == f"models:/{NAME}@{ALIAS}"
