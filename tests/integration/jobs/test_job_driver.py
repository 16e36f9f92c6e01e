"""The job driver as users run it: a fresh process that starts its own local Ray instance."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.support.paths import REPO

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def run_job(*args, cwd):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_ADDRESS": ""}
    env.pop("RAY_ADDRESS")
    return subprocess.run([sys.executable, str(REPO / "jobs" / "embed_corpus.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=280)


def test_invalid_config_fails_before_any_work(tmp_path):
    p = run_job("--config", "embed_local", "--set", "embed.token_budget=-5", cwd=tmp_path)
    assert p.returncode == 2
    assert "embed.token_budget" in p.stderr
    assert not (tmp_path / "runs").exists() and not (tmp_path / "lancedb").exists()


def test_local_job_writes_table_and_manifest(tmp_path):
    p = run_job("--config", "embed_local", "--set", "input.limit=30",
                "--set", "output.run_name=quick", cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    manifest = json.loads((tmp_path / "runs" / "quick" / "manifest.json").read_text())
    assert manifest["status"] == "succeeded"
    assert manifest["counts"]["documents_accepted"] == 30
    assert manifest["counts"]["chunks_written"] == 30  # sample notes are short: one chunk each
    assert manifest["ray"]["address"] == "local" and manifest["versions"]["ray"] == "2.60.0"
    assert manifest["durations_s"]["total"] > 0
    import lancedb

    assert lancedb.connect(str(tmp_path / "lancedb")).open_table("sample__all_minilm_l6_v2").count_rows() == 30


def test_cli_help_explains_itself():
    out = subprocess.run([sys.executable, "-m", "medembed.cli", "--help"], capture_output=True, text=True).stdout
    for cmd in ("embed", "search", "table-info", "generate-pairs", "mine-negatives"):
        assert cmd in out
    out = subprocess.run([sys.executable, "-m", "medembed.cli", "embed", "--help"], capture_output=True, text=True).stdout
    assert "--set" in out and "quarantine" in out
