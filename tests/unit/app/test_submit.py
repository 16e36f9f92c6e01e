"""`medembed submit` pieces that need no cluster: token lookup, address, env, runtime env, entrypoint."""

from __future__ import annotations

import shlex

import pytest
import yaml

from medembed.app import submit as S
from tests.support.paths import REPO


@pytest.fixture
def no_token(monkeypatch, tmp_path):
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def test_token_order_env_then_path_then_home_file(no_token, monkeypatch):
    assert S.auth_token() is None and S.auth_headers() == {}
    (no_token / ".ray").mkdir()
    (no_token / ".ray" / "auth_token").write_text("home-token\n")
    assert S.auth_token() == "home-token"
    other = no_token / "t"
    other.write_text("path-token")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(other))
    assert S.auth_token() == "path-token"
    monkeypatch.setenv("RAY_AUTH_TOKEN", "env-token")
    assert S.auth_headers() == {"Authorization": "Bearer env-token"}


def test_address(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert S.resolve_address(None) == "http://127.0.0.1:8265"
    assert S.resolve_address("http://10.0.0.5:8265/") == "http://10.0.0.5:8265"
    monkeypatch.setenv("RAY_ADDRESS", "http://127.0.0.2:9000")
    assert S.resolve_address(None) == "http://127.0.0.2:9000"
    with pytest.raises(S.SubmitError, match="dashboard URL"):
        S.resolve_address("10.0.0.5:6379")


def test_env_refuses_credentials():
    assert S.parse_env(["LOG_LEVEL=debug", "A=b=c"]) == {"LOG_LEVEL": "debug", "A": "b=c"}
    for bad in ["OPENAI_API_KEY=x", "AWS_SECRET_ACCESS_KEY=x", "HF_TOKEN=x", "RAY_AUTH_TOKEN=x", "DB_PASSWORD=x"]:
        with pytest.raises(S.SubmitError, match="credentials never go"):
            S.parse_env([bad])
    with pytest.raises(S.SubmitError, match="NAME=VALUE"):
        S.parse_env(["oops"])


def test_runtime_env_from_the_shipped_file():
    env = S.runtime_env(REPO, None, {"X": "1"})
    shipped = yaml.safe_load((REPO / "cluster" / "runtime_env.yaml").read_text())
    assert env["working_dir"] == str(REPO)
    assert env["excludes"] == shipped["excludes"] and {".git", "tests", "runs", "lancedb"} <= set(env["excludes"])
    assert env["env_vars"] == {**shipped["env_vars"], "X": "1"}


def test_runtime_env_file_with_secrets_is_refused(tmp_path):
    f = tmp_path / "env.yaml"
    f.write_text("env_vars: {OPENAI_API_KEY: sk-123}\n")
    with pytest.raises(S.SubmitError, match="OPENAI_API_KEY"):
        S.runtime_env(REPO, f, {})
    with pytest.raises(S.SubmitError, match="not found"):
        S.runtime_env(REPO, tmp_path / "missing.yaml", {})


def test_config_argument(tmp_path):
    assert S.config_argument("embed_cluster", REPO) == "embed_cluster"
    assert S.config_argument(str(REPO / "medembed" / "configs" / "embed.yaml"), REPO) == \
        "medembed/configs/embed.yaml"
    assert S.config_argument("embed_local", REPO) == "embed_local"  # the old name, loadable for one release
    outside = tmp_path / "c.yaml"
    outside.write_text("{}")
    with pytest.raises(S.SubmitError, match="outside the working dir"):
        S.config_argument(str(outside), REPO)
    with pytest.raises(Exception, match="config file not found"):
        S.config_argument("no_such_config", REPO)


def test_entrypoint_is_shell_quoted():
    ep = S.entrypoint("jobs/embed.py", "embed", ["input.uri=/data/my notes.jsonl", "embed.num_actors=2"])
    assert shlex.split(ep) == ["python", "jobs/embed.py", "--config", "embed", "--set",
                               "input.uri=/data/my notes.jsonl", "--set", "embed.num_actors=2"]


def test_exit_codes():
    assert [S.exit_code(s) for s in ("SUCCEEDED", "FAILED", "STOPPED")] == [0, 1, 3]


def test_cli_has_submit_and_jobs():
    from medembed.app.cli import build_parser

    p = build_parser()
    a = p.parse_args(["submit", "embed", "--address", "http://127.0.0.2:8265", "--set", "a.b=1", "--no-wait"])
    assert a.job == "embed" and a.overrides == ["a.b=1"] and a.no_wait
    a = p.parse_args(["jobs", "stop", "abc", "--wait"])
    assert a.job_id == "abc" and a.wait


def test_invalid_config_fails_before_contacting_a_cluster(caplog):
    from medembed.app.cli import main

    # nothing listens on this address: a config error must come first, naming the field
    rc = main(["submit", "embed", "--working-dir", str(REPO), "--address", "http://127.0.0.2:1",
               "--set", "embed.num_actors=0"])
    assert rc == 2
    assert "embed.num_actors: Input should be greater than 0" in caplog.text


def test_every_registered_job_has_a_driver_to_submit():
    from medembed.app.registry import JOBS

    for job in JOBS.values():  # one name: jobs/<name>.py runs the job <name>
        driver = S.driver_path(REPO, job.name)
        assert driver == job.driver == f"jobs/{job.name}.py"
        assert f'main_for("{job.name}")' in (REPO / driver).read_text(), (job.command, driver)
    for old, new in (("embed_corpus", "embed"), ("nightly_reembed", "reembed")):  # deprecated forwarders
        text = (REPO / "jobs" / f"{old}.py").read_text()
        assert f'main_for("{new}")' in text and "deprecated" in text
    with pytest.raises(S.SubmitError, match="no driver for job nope"):
        S.driver_path(REPO, "nope")
