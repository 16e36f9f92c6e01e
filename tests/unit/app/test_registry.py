"""One name per job: registry, CLI command, driver, default config, KubeRay file and run ids agree; old names
keep working for one release with a deprecation warning."""

from __future__ import annotations

import logging

import pytest

from medembed.app.cli import build_parser, canonical_command
from medembed.app.registry import JOBS, by_name
from medembed.config import SHIPPED_CONFIGS, find_config
from medembed.runtime.runs import job_name
from tests.support.paths import REPO

NAMES = ["embed", "reembed", "generate_pairs", "mine_negatives", "evaluate", "train", "pipeline"]


def test_each_job_has_one_name_everywhere():
    assert sorted(JOBS) == sorted(NAMES)
    for name, job in JOBS.items():
        assert job.name == name and job.command == name.replace("_", "-")
        assert job.body.startswith(f"medembed.jobs.{name}:"), job.body
        assert (REPO / job.driver).is_file() and job.driver == f"jobs/{name}.py"
        assert (SHIPPED_CONFIGS / f"{name}.yaml").is_file() and job.default_config == name
        assert (REPO / "cluster" / "kuberay" / f"rayjob-{job.command}.yaml").is_file()
        assert f"python jobs/{name}.py" in (REPO / "cluster" / "kuberay" / f"rayjob-{job.command}.yaml").read_text()


def test_either_spelling_and_old_names_resolve(caplog):
    assert by_name("generate-pairs") is by_name("generate_pairs") is JOBS["generate_pairs"]
    with caplog.at_level(logging.WARNING):
        assert by_name("eval") is JOBS["evaluate"] and by_name("embed_corpus") is JOBS["embed"]
        assert by_name("nightly_reembed") is JOBS["reembed"]
    assert caplog.text.count("deprecated") == 3
    with pytest.raises(KeyError, match="unknown job"):
        by_name("nope")


def test_cli_accepts_both_spellings_and_eval_with_a_deprecation(capsys):
    assert canonical_command(["generate_pairs", "--print-config"]) == ["generate-pairs", "--print-config"]
    assert canonical_command(["mine-negatives"]) == ["mine-negatives"]
    assert canonical_command(["search", "q"]) == ["search", "q"]
    assert canonical_command(["eval", "--set", "a=1"]) == ["evaluate", "--set", "a=1"]
    assert "`medembed eval` is deprecated" in capsys.readouterr().err
    args = build_parser().parse_args(canonical_command(["submit", "generate_pairs", "--no-wait"]))
    assert args.job == "generate-pairs"


def test_old_config_name_loads_the_new_file(caplog):
    with caplog.at_level(logging.WARNING):
        assert find_config("embed_local") == find_config("embed") == SHIPPED_CONFIGS / "embed.yaml"
    assert "'embed_local' is deprecated" in caplog.text


def test_runs_filter_takes_either_spelling_and_old_job_names():
    assert job_name("generate-pairs") == "generate_pairs" and job_name("embed_corpus") == "embed"
    assert job_name("eval") == "evaluate" and job_name("train") == "train"
