"""MLflow tracking against a real local store (sqlite): a job run's params, tags, metrics and artifacts, and no
secret in any of them -- fake credentials in the environment and in config-like fields are scanned for in the
store's database and every artifact file."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from medembed.runtime import tracking
from medembed.runtime.manifest import RunManifest

mlflow = pytest.importorskip("mlflow")

SECRETS = {
    "OPENAI_API_KEY": f"sk-fake-{uuid.uuid4().hex}",
    "AWS_SECRET_ACCESS_KEY": f"fake/secret/{uuid.uuid4().hex}",
    "HF_TOKEN": f"hf_fake{uuid.uuid4().hex}",
    "DB_PASSWORD": f"pw-{uuid.uuid4().hex}",
}
URL_PASSWORD = f"urlpw{uuid.uuid4().hex[:10]}"


def _config() -> dict:
    """A resolved config as a job would dump it, plus the credential-named fields it must never hold."""
    return {
        "model": {"name": "bundled:all-MiniLM-L6-v2", "cache_dir": "/tmp/models"},
        "input": {"uri": f"https://reader:{URL_PASSWORD}@example.org/notes.jsonl", "text_fields": ["text"]},
        "synth": {"openai": {"api_key_env": "OPENAI_API_KEY", "api_key": SECRETS["OPENAI_API_KEY"]}},
        "s3": {"endpoint_url": None, "aws_secret_access_key": SECRETS["AWS_SECRET_ACCESS_KEY"]},
        "hub": {"token": SECRETS["HF_TOKEN"], "note": f"pasted by mistake: {SECRETS['HF_TOKEN']}"},
        "db": {"password": SECRETS["DB_PASSWORD"], "host": "localhost"},
        "embed": {"batch_size": 512, "num_actors": 2, "token_budget": 2048},
        "chunking": {"max_tokens": 64, "overlap_tokens": 8},
    }


@pytest.fixture()
def store(tmp_path, monkeypatch):
    for k, v in SECRETS.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv(tracking.MLFLOW_URI_ENV, "unset")  # restored (removed) after the test
    monkeypatch.delenv(tracking.MLFLOW_URI_ENV)
    return tmp_path / "mlflow", tracking.TrackingConfig(mlflow_uri=f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}",
                                                        experiment="unit")


def _scan(root: Path, needles: list[str]) -> list[str]:
    hits = []
    for f in root.rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            hits += [f"{f.relative_to(root)}: {n[:12]}..." for n in needles if n.encode() in data]
    return hits


def test_job_run_logs_config_tags_metrics_artifacts_and_no_secret(store, tmp_path):
    root, cfg = store
    config = _config()
    manifest = RunManifest("embed", str(tmp_path / "runs"), config, run_id="unit-run")
    run = tracking.start_job(cfg, "embed", manifest, config)
    assert run is not None and tracking.current() is run
    manifest.count("documents_read", 12)
    manifest.count("quarantined", 2)
    manifest.count("quarantine_by_reason", {"too_long": 1, "missing_id": 1})
    manifest.set("quarantine_dir", str(tmp_path / "runs" / "unit-run" / "quarantine"))
    manifest.set("throughput", {"docs_per_s": 3.5})
    tracking.log_metrics({"extra/score": 0.25}, step=3)
    manifest.finish("succeeded")
    assert tracking.current() is None

    client = mlflow.MlflowClient(tracking_uri=cfg.mlflow_uri)
    got = client.get_run(run.run_id)
    assert got.info.status == "FINISHED" and got.info.run_name == "unit-run"
    assert client.get_experiment(got.info.experiment_id).name == "unit"
    p = got.data.params
    assert p["model.name"] == "bundled:all-MiniLM-L6-v2" and p["embed.batch_size"] == "512"
    assert json.loads(p["input.text_fields"]) == ["text"] and p["db.host"] == "localhost"
    assert p["input.uri"] == "https://***@example.org/notes.jsonl"  # URL user-info masked
    assert not {"synth.openai.api_key", "synth.openai.api_key_env", "s3.aws_secret_access_key", "hub.token",
                "db.password"} & set(p)  # credential-named fields are left out
    assert p["chunking.max_tokens"] == "64" and p["embed.token_budget"] == "2048"  # sizes named "token" are kept
    assert p["hub.note"] == "pasted by mistake: ***"  # a secret env value inside another field is masked
    t = got.data.tags
    assert t["medembed.run_id"] == "unit-run" and t["medembed.job"] == "embed"
    assert t["medembed.version"] and t["medembed.status"] == "succeeded"
    m = got.data.metrics
    assert m["documents_read"] == 12 and m["quarantined"] == 2 and m["quarantine_by_reason/too_long"] == 1
    assert m["throughput/docs_per_s"] == 3.5 and m["duration_s/total"] >= 0 and m["extra/score"] == 0.25
    arts = {a.path for a in client.list_artifacts(run.run_id)}
    assert arts == {"manifest.json", "quarantine_summary.json"}
    local = Path(client.download_artifacts(run.run_id, "", str(tmp_path / "dl")))
    logged = json.loads((local / "manifest.json").read_text())
    assert logged["run_id"] == "unit-run" and logged["counts"]["documents_read"] == 12
    assert logged["config"]["db"] == {"host": "localhost"}
    assert json.loads((local / "quarantine_summary.json").read_text())["by_reason"] == {"too_long": 1, "missing_id": 1}
    # the manifest on disk records the MLflow run
    assert json.loads(Path(manifest.path("manifest.json")).read_text())["mlflow"]["run_id"] == run.run_id

    needles = [*SECRETS.values(), URL_PASSWORD]
    assert root.joinpath("mlflow.db").exists() and root.joinpath("mlartifacts").is_dir()  # artifacts beside the db
    assert _scan(root, needles) == []  # database and every artifact file
    assert _scan(local, needles) == []


def test_nested_stage_runs_and_failed_status(store, tmp_path):
    _, cfg = store
    parent_manifest = RunManifest("pipeline", str(tmp_path / "runs"), {"a": 1}, run_id="p1")
    parent = tracking.start_job(cfg, "pipeline", parent_manifest, {"a": 1})
    sub = RunManifest("train", str(tmp_path / "runs"), {"b": 2}, run_id="p1/train")
    stage = tracking.start_stage("train", sub, {"b": 2})
    assert tracking.current() is stage
    tracking.log_metrics({"train/loss": 1.5}, step=2)
    sub.count("steps", 2)
    sub.finish("failed", error="boom")
    with tracking.nested_run("promote", tags={"medembed.stage_status": "ran"}):
        tracking.log_metrics({"gate/promote": True})
    tracking.reused_stage("embed", {"run_id": "p0/embed", "artifact": "/x"})
    parent_manifest.finish("failed")

    client = mlflow.MlflowClient(tracking_uri=cfg.mlflow_uri)
    children = client.search_runs([parent.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.run_id}'")
    by_name = {r.info.run_name: r for r in children}
    assert set(by_name) == {"train", "promote", "embed"}
    assert by_name["train"].info.status == "FAILED" and by_name["train"].data.metrics["steps"] == 2
    assert [(h.step, h.value) for h in client.get_metric_history(stage.run_id, "train/loss")] == [(2, 1.5)]
    assert by_name["promote"].info.status == "FINISHED" and by_name["promote"].data.metrics["gate/promote"] == 1.0
    assert by_name["embed"].data.tags["medembed.stage_status"] == "reused"
    assert client.get_run(parent.run_id).info.status == "FAILED"


def test_off_by_default_and_unreachable_store_does_not_fail(tmp_path):
    manifest = RunManifest("embed", str(tmp_path / "runs"), {}, run_id="off")
    assert tracking.start_job(tracking.TrackingConfig(), "embed", manifest, {}) is None
    assert tracking.start_job(None, "embed", manifest, {}) is None
    tracking.log_metrics({"x": 1.0})  # no current run: a no-op
    bad = tracking.TrackingConfig(mlflow_uri="http://127.0.0.2:9/")  # nothing listens there
    import os

    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    try:
        assert tracking.start_job(bad, "embed", manifest, {}) is None
    finally:
        os.environ.pop("MLFLOW_HTTP_REQUEST_MAX_RETRIES", None)
        os.environ.pop(tracking.MLFLOW_URI_ENV, None)
    manifest.finish("succeeded")
    assert "mlflow" not in json.loads(Path(manifest.path("manifest.json")).read_text())


def test_model_uri_forms():
    assert tracking.parse_model_uri("models:/medembed@champion") == ("medembed", "champion", None)
    assert tracking.parse_model_uri("models:/medembed/3") == ("medembed", None, "3")
    with pytest.raises(ValueError, match="models:/<registered model>@<alias>"):
        tracking.parse_model_uri("models:/medembed")

