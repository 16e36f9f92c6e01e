"""`medembed runs list|show`: manifests written by the real RunManifest, read back locally and from S3."""

from __future__ import annotations

import json

import pytest

from medembed.app.cli import main
from medembed.runtime import runs
from medembed.runtime.manifest import RunManifest


def _make_runs(run_dir: str) -> dict[str, RunManifest]:
    """An embed run that succeeded with quarantine, a failed train run, a running one, a pipeline with a stage."""
    made = {}
    m = RunManifest("embed", run_dir, {"model": {"name": "bundled:all-MiniLM-L6-v2"}}, run_id="embed-20261201T000000Z-aaaaaa")
    m.data["started_at"] = "2026-12-01T00:00:00+00:00"
    m.count("chunks_written", 120)
    m.count("quarantined", 3)
    m.count("quarantine_by_reason", {"empty_text": 2, "duplicate_id": 1})
    m.data["durations_s"]["read"] = 1.5
    m.set("output", {"artifact": "/tmp/lancedb/corpus__minilm.lance"})
    m.set("quarantine_dir", f"{run_dir}/embed-20261201T000000Z-aaaaaa/quarantine")
    m.finish("succeeded_with_quarantine")
    made["embed"] = m

    m = RunManifest("train", run_dir, {}, run_id="train-20261202T000000Z-bbbbbb")
    m.data["started_at"] = "2026-12-02T00:00:00+00:00"
    m.finish("failed", error="RuntimeError: out of memory")
    made["train"] = m

    m = RunManifest("reembed", run_dir, {}, run_id="reembed-20261203T000000Z-cccccc")
    m.data["started_at"] = "2026-12-03T00:00:00+00:00"
    m.write()  # never finished: status running
    made["reembed"] = m

    p = RunManifest("pipeline", run_dir, {}, run_id="pipeline-20261204T000000Z-dddddd")
    p.data["started_at"] = "2026-12-04T00:00:00+00:00"
    p.set("stages", {"train": {"status": "ran", "seconds": 61.25, "artifact": "/out/train", "fingerprint": "f"},
                     "embed": {"status": "reused", "seconds": 0.2, "artifact": "/out/embed", "fingerprint": "g"}})
    p.set("gate", {"promote": True, "metric": "ndcg_at_10", "reason": "candidate not worse on pairs-dev"})
    p.set("output", {"artifact": "/out/embed", "promoted": "/out/promote/promoted.json"})
    p.set("mlflow", {"tracking_uri": "sqlite:///mlflow.db", "experiment_id": "1", "run_id": "abc123"})
    stage = RunManifest("train", run_dir, {}, run_id=f"{p.run_id}/train")
    stage.data["started_at"] = "2026-12-04T00:00:01+00:00"
    stage.finish()
    p.finish()
    made["pipeline"] = p
    return made


def test_list_newest_first_with_filters(tmp_path):
    run_dir = str(tmp_path / "runs")
    _make_runs(run_dir)
    rows, bad = runs.list_runs(run_dir)
    assert bad == []
    assert [r.run_id for r in rows] == ["pipeline-20261204T000000Z-dddddd", "reembed-20261203T000000Z-cccccc",
                                        "train-20261202T000000Z-bbbbbb", "embed-20261201T000000Z-aaaaaa"]
    assert [r.status for r in rows] == ["succeeded", "running", "failed", "succeeded_with_quarantine"]
    assert rows[0].output == "/out/embed" and rows[3].output == "/tmp/lancedb/corpus__minilm.lance"
    assert rows[1].duration_s is not None and rows[1].duration_s > 0  # running: time since start

    assert [r.run_id for r in runs.list_runs(run_dir, status="failed")[0]] == ["train-20261202T000000Z-bbbbbb"]
    with_stages = runs.list_runs(run_dir, job="train", stages=True)[0]
    assert [r.run_id for r in with_stages] == ["pipeline-20261204T000000Z-dddddd/train",
                                               "train-20261202T000000Z-bbbbbb"]
    assert len(runs.list_runs(run_dir, limit=2)[0]) == 2
    assert runs.list_runs(str(tmp_path / "absent")) == ([], [])


def test_unreadable_manifest_is_named_not_dropped(tmp_path):
    run_dir = tmp_path / "runs"
    _make_runs(str(run_dir))
    broken = run_dir / "embed-20261205T000000Z-eeeeee" / "manifest.json"
    broken.parent.mkdir(parents=True)
    broken.write_text("{not json")
    rows, bad = runs.list_runs(str(run_dir))
    assert len(rows) == 4
    assert len(bad) == 1 and str(broken) in bad[0] and "invalid JSON" in bad[0]


def test_show_summary(tmp_path):
    run_dir = str(tmp_path / "runs")
    made = _make_runs(run_dir)
    m, path = runs.find_run(run_dir, "embed-2026")  # a unique prefix
    s = runs.summary(m, path)
    assert s["status"] == "succeeded_with_quarantine"
    assert s["counts"] == {"chunks_written": 120, "quarantined": 3}
    assert s["quarantine_by_reason"] == {"empty_text": 2, "duplicate_id": 1}
    assert s["durations_s"]["read"] == 1.5 and s["duration_s"] == made["embed"].data["durations_s"]["total"]
    assert s["paths"]["manifest"] == path and s["paths"]["output"]["artifact"].endswith("corpus__minilm.lance")

    p = runs.summary(*runs.find_run(run_dir, "pipeline-20261204T000000Z-dddddd"))
    assert p["stages"] == {"train": {"status": "ran", "seconds": 61.25, "artifact": "/out/train"},
                           "embed": {"status": "reused", "seconds": 0.2, "artifact": "/out/embed"}}
    assert p["gate"]["promote"] is True
    text = runs.format_summary(p)
    assert "train  ran in 1 min 01 s -> /out/train" in text
    assert "gate: promote (candidate not worse on pairs-dev)" in text
    assert p["mlflow"]["run_id"] == "abc123" and "  run_id         abc123" in text

    with pytest.raises(LookupError, match="no run 'nope'"):
        runs.find_run(run_dir, "nope")
    # a prefix names top-level runs (not the pipeline's stage runs); the exact id wins over ids starting with it
    assert runs.find_run(run_dir, "pipeline-2026")[0]["run_id"] == "pipeline-20261204T000000Z-dddddd"
    assert runs.find_run(run_dir, "pipeline-20261204T000000Z-dddddd")[0]["job"] == "pipeline"
    assert runs.find_run(run_dir, "pipeline-20261204T000000Z-dddddd/tr")[0]["job"] == "train"
    RunManifest("embed", run_dir, {}, run_id="embed-20261201T000000Z-ffffff").finish()
    with pytest.raises(LookupError, match="matches 2 runs"):
        runs.find_run(run_dir, "embed-20261201")


def test_cli_list_and_show(tmp_path, capsys):
    run_dir = str(tmp_path / "runs")
    _make_runs(run_dir)
    assert main(["runs", "list", "--run-dir", run_dir]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["RUN", "ID", "JOB", "STATUS", "STARTED", "(UTC)", "DURATION", "OUTPUT"]
    assert [line.split()[0] for line in out[1:]] == ["pipeline-20261204T000000Z-dddddd",
                                                    "reembed-20261203T000000Z-cccccc",
                                                    "train-20261202T000000Z-bbbbbb", "embed-20261201T000000Z-aaaaaa"]
    assert "2026-12-02 00:00:00" in out[3] and "failed" in out[3]

    assert main(["runs", "list", "--run-dir", run_dir, "--job", "embed", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [r["run_id"] for r in listed] == ["embed-20261201T000000Z-aaaaaa"]

    assert main(["runs", "show", "train-2026", "--run-dir", run_dir]) == 0
    text = capsys.readouterr().out
    assert "status    failed" in text and "error     RuntimeError: out of memory" in text

    with pytest.raises(SystemExit, match="no run 'missing'"):
        main(["runs", "show", "missing", "--run-dir", run_dir])
    assert main(["runs", "list", "--run-dir", str(tmp_path / "none")]) == 0
    assert capsys.readouterr().out.startswith("no runs under")


def test_list_from_s3(tmp_path):
    """The same manifests, written to s3:// on the loopback S3 server by RunManifest, listed and shown."""
    from tests.support.s3_server import S3Server, s3_environment

    with s3_environment(S3Server(), "runs-bucket"):
        run_dir = "s3://runs-bucket/team/runs"
        _make_runs(run_dir)
        rows, bad = runs.list_runs(run_dir)
        assert bad == []
        assert [r.job for r in rows] == ["pipeline", "reembed", "train", "embed"]
        assert rows[0].manifest == "s3://runs-bucket/team/runs/pipeline-20261204T000000Z-dddddd/manifest.json"
        m, path = runs.find_run(run_dir, "train-20261202T000000Z-bbbbbb")
        assert m["error"] == "RuntimeError: out of memory" and path.startswith("s3://runs-bucket/")
