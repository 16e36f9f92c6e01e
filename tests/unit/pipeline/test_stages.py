"""Pipeline stages: composed configs validate, fingerprints follow inputs, reuse needs a complete artifact."""

from __future__ import annotations

import json

import pytest

from medembed.config import ConfigError, load_config
from medembed.evaluation.config import EvaluateJobConfig
from medembed.pipeline import stages as P
from medembed.pipeline.config import PipelineJobConfig
from medembed.runtime import artifacts


def _cfg(tmp_path, *overrides: str) -> PipelineJobConfig:
    return load_config(PipelineJobConfig, "pipeline", [f"output.dir={tmp_path / 'out'}", *overrides])


def test_deep_merge_keeps_siblings_and_replaces_leaves():
    base = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    assert P.deep_merge(base, {"a": {"c": [3]}, "e": {"f": 2}}) == {"a": {"b": 1, "c": [3]}, "d": 1, "e": {"f": 2}}
    assert base == {"a": {"b": 1, "c": [1, 2]}, "d": 1}


def test_stage_configs_join_the_stages(tmp_path):
    cfg = _cfg(tmp_path, "evaluate.datasets=[{name: med, uri: /data/med}]", "train.train.dev_fraction=0.5")
    out = str(tmp_path / "out")
    inputs = {"generate_pairs": f"{out}/r/generate_pairs", "mine_negatives": f"{out}/r/mine_negatives/triplets",
              "train": f"{out}/r/train/model"}
    neg = P.compose(cfg, "mine_negatives", "r", inputs)
    assert neg["pairs"]["path"] == f"{out}/r/generate_pairs/pairs"
    assert neg["mining"]["num_negatives"] == 3 and neg["output"]["dir"] == out
    train = P.compose(cfg, "train", "r", inputs)
    assert train["triplets"]["path"] == inputs["mine_negatives"]
    assert train["train"]["dev_fraction"] == cfg.dev_fraction == 0.2  # the pipeline's split wins over the section
    ev = EvaluateJobConfig.model_validate(P.compose(cfg, "evaluate", "r", inputs))
    assert [m.label for m in ev.models] == [P.CURRENT, P.CANDIDATE] and ev.models[1].name == inputs["train"]
    assert ev.pairs_dev.path == inputs["mine_negatives"] and ev.pairs_dev.dev_fraction == 0.2
    assert [d.name for d in ev.datasets] == ["med"] and ev.store.uri == f"{out}/eval_lancedb"
    pairs = P.compose(cfg, "generate_pairs", "r", {})  # its run folder <synth.output_dir>/<run id>: out/r/generate_pairs
    assert pairs["synth"]["output_dir"] == out and pairs["output"]["run_name"] == "r/generate_pairs"
    from medembed.synth.ledger import run_dir

    assert run_dir(pairs["synth"]["output_dir"], pairs["output"]["run_name"]) == f"{out}/r/generate_pairs"


def test_a_bad_stage_section_fails_at_load_naming_the_field(tmp_path):
    with pytest.raises(ConfigError, match=r"mine_negatives \(the mine_negatives job's config\): mining.num_negatives"):
        _cfg(tmp_path, "mine_negatives.mining.num_negatives=0")
    with pytest.raises(ConfigError, match=r"evaluate \(the evaluate job's config\): retrieval"):
        _cfg(tmp_path, "evaluate.retrieval=fuzzy")


def test_fingerprint_follows_config_and_input_markers(tmp_path):
    cfg = _cfg(tmp_path)
    m1 = {"generate_pairs": {"run_id": "a/generate_pairs", "completed_at": "t1"}}
    m2 = {"generate_pairs": {"run_id": "b/generate_pairs", "completed_at": "t2"}}
    fp = P.fingerprint(cfg, "mine_negatives", m1)
    assert fp == P.fingerprint(cfg, "mine_negatives", m1)
    assert fp != P.fingerprint(cfg, "mine_negatives", m2)
    assert fp != P.fingerprint(_cfg(tmp_path, "mine_negatives.mining.max_rank=40"), "mine_negatives", m1)
    # a section another stage reads does not change this stage
    assert fp == P.fingerprint(_cfg(tmp_path, "train.train.max_steps=99"), "mine_negatives", m1)


def test_old_section_names_still_load_with_a_deprecation_warning(tmp_path, caplog):
    old = _cfg(tmp_path, "negatives.mining.max_rank=40", "pairs.synth.queries_per_note=2")
    assert old.mine_negatives["mining"]["max_rank"] == 40 and old.generate_pairs["synth"]["queries_per_note"] == 2
    assert old.mine_negatives["mining"]["num_negatives"] == 3  # merged over the shipped config's new section
    assert "'negatives' is deprecated" in caplog.text and "'pairs' is deprecated" in caplog.text


def test_reuse_needs_the_record_and_the_same_complete_artifact(tmp_path):
    out = str(tmp_path / "out")
    art = tmp_path / "out" / "r1" / "train" / "model"
    artifacts.mark_complete(str(art), "model", "r1/train")
    P.write_record(out, "r1", "train", "fp1", str(art), None)
    rec = P.find_reusable(out, "train", "fp1")
    assert rec["artifact"] == str(art) and rec["run_id"] == "r1/train"
    assert P.find_reusable(out, "train", "fp2") is None
    assert P.find_reusable(out, "mine_negatives", "fp1") is None

    artifacts.mark_complete(str(art), "model", "r9/train")  # rewritten by another run: not the recorded output
    assert P.find_reusable(out, "train", "fp1") is None
    P.write_record(out, "r2", "train", "fp1", str(art), None)
    assert P.find_reusable(out, "train", "fp1")["run_id"] == "r2/train"

    artifacts.clear_marker(str(art))  # incomplete output
    assert P.find_reusable(out, "train", "fp1") is None
    artifacts.mark_complete(str(art), "model", "r3/train")
    P.write_record(out, "r3", "train", "fp1", str(art), None)
    (tmp_path / "out" / "r3" / "stages" / "train" / artifacts.SUCCESS).unlink()  # no record: redo
    assert P.find_reusable(out, "train", "fp1") is None
    with pytest.raises(RuntimeError, match="has no _SUCCESS.json"):
        P.write_record(out, "r4", "train", "fp1", str(tmp_path / "nothing"), None)
    assert json.loads((tmp_path / "out" / "r2" / "stages" / "train" / artifacts.SUCCESS).read_text())["kind"] == \
        P.RECORD_KIND


def test_each_stage_runs_the_body_the_registry_names_for_its_job():
    from medembed.app.registry import by_name
    from medembed.jobs.pipeline import stage_body

    for stage in P.JOB_STAGES:
        assert stage_body(stage) is by_name(stage).body_function()
    with pytest.raises(KeyError, match="unknown pipeline stage"):
        stage_body("promote")
