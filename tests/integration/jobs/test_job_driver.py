"""The job driver as users run it: a fresh process that starts its own local Ray instance."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from medembed.app.registry import JOBS
from tests.support.paths import REPO

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def run_job(*args, cwd):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_ADDRESS": ""}
    env.pop("RAY_ADDRESS")
    return subprocess.run([sys.executable, str(REPO / "jobs" / "embed.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=280)


def test_invalid_config_fails_before_any_work(tmp_path):
    p = run_job("--config", "embed", "--set", "embed.token_budget=-5", cwd=tmp_path)
    assert p.returncode == 2
    assert "embed.token_budget" in p.stderr
    assert not (tmp_path / "runs").exists() and not (tmp_path / "lancedb").exists()


def _installed_cli() -> str:
    exe = shutil.which("medembed") or str(Path(sys.executable).parent / "medembed")
    assert Path(exe).exists(), "the medembed console script is not installed (pip install -e .)"
    return exe


def test_installed_cli_works_from_any_folder(tmp_path):
    """Shipped configs come from the package: `medembed <job>` needs no checkout in the working directory; the run
    starts its own local Ray instance, keeps the console quiet and writes its table, manifest and log file."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["HF_HUB_OFFLINE"] = "1"
    cli = _installed_cli()
    for job in JOBS.values():
        p = subprocess.run([cli, job.command, "--print-config"], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=120)
        assert p.returncode == 0, (job.command, p.stderr[-2000:])
        assert json.loads(p.stdout)  # the resolved defaults, as JSON
    p = subprocess.run([cli, "embed", "--config", "embed_pmc_patients", "--print-config"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert json.loads(p.stdout)["input"]["id_field"] == "patient_uid"
    p = subprocess.run([cli, "embed", "--config", "no_such_config"], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 2 and "embed_pmc_patients" in p.stderr  # names the shipped configs
    # one real run as users start it: a fresh process that starts its own local Ray instance
    p = subprocess.run([cli, "embed", "--set", "input.limit=30", "--set", "output.run_name=anywhere"], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=280)
    assert p.returncode == 0, p.stderr[-3000:]
    manifest = json.loads((tmp_path / "runs" / "anywhere" / "manifest.json").read_text())
    assert manifest["status"] == "succeeded" and manifest["run_id"] == "anywhere"
    assert manifest["counts"]["documents_accepted"] == 30
    assert manifest["counts"]["chunks_written"] == 30  # sample notes are short: one chunk each
    assert manifest["ray"]["address"] == "local" and manifest["versions"]["ray"] == "2.60.0"
    # the local instance stays on loopback (Ray would rewrite 127.0.0.1 to the network address)
    assert manifest["ray"]["node_ips"] and all(ip.startswith("127.") for ip in manifest["ray"]["node_ips"])
    assert manifest["durations_s"]["total"] > 0
    # a quiet console: medembed's own lines only; Ray's and the libraries' output is in the run's log file
    console = p.stderr.splitlines()
    assert p.stdout == "" and 3 <= len(console) <= 6, p.stderr
    assert all(re.match(r"\d\d:\d\d:\d\d ", line) for line in console), p.stderr
    assert "embed: run anywhere (config embed)" in console[0]
    assert "embed succeeded in" in p.stderr and "documents accepted 30" in p.stderr
    assert console[-1].endswith("log file: ./runs/anywhere/job.log")
    log = (tmp_path / "runs" / "anywhere" / "job.log").read_text()
    assert "Started a local Ray instance" in log and "Started a local Ray instance" not in p.stderr
    assert manifest["log_file"] == "./runs/anywhere/job.log"
    import lancedb

    assert lancedb.connect(str(tmp_path / "lancedb")).open_table("sample__all_minilm_l6_v2").count_rows() == 30
    assert json.loads((tmp_path / "lancedb" / "sample__all_minilm_l6_v2.lance" / "_SUCCESS.json").read_text())[
        "run_id"] == "anywhere"
    p = subprocess.run([cli, "search", "sepsis", "-k", "2", "--json"], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0 and len(json.loads(p.stdout)) == 2


def test_cli_help_explains_itself():
    out = subprocess.run([sys.executable, "-m", "medembed.app.cli", "--help"], capture_output=True, text=True).stdout
    for cmd in ("embed", "search", "table-info", "generate-pairs", "mine-negatives"):
        assert cmd in out
    out = subprocess.run([sys.executable, "-m", "medembed.app.cli", "embed", "--help"], capture_output=True, text=True).stdout
    assert "--set" in out and "quarantine" in out
