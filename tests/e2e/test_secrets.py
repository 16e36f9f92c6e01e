"""Credentials never leak: every job runs on a real two-node cluster whose nodes hold fake secrets in their
environment (as Kubernetes Secrets put them in pods), submitted with `medembed submit`; afterwards no secret
appears in any log (driver, job supervisor, Ray worker, raylet, GCS, dashboard), manifest, table, pairs,
triplet or result file, or in what the CLI printed.

The fake OpenAI-compatible server checks the API key on every request, so the pairs job provably used the
key from its environment.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from medembed.jobs import JOBS
from tests.support.e2e_jobs import running_cluster
from tests.support.openai_server import FakeOpenAIServer
from tests.support.paths import REPO

log = logging.getLogger(__name__)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(3000)]

SECRETS = {
    "OPENAI_API_KEY": f"sk-fake-{uuid.uuid4().hex}",
    "AWS_ACCESS_KEY_ID": f"AKIAFAKE{uuid.uuid4().hex[:12].upper()}",
    "AWS_SECRET_ACCESS_KEY": f"fake/secret/{uuid.uuid4().hex}",
    "HF_TOKEN": f"hf_fake{uuid.uuid4().hex}",
}
CHUNKING = ["chunking.max_tokens=64", "chunking.overlap_tokens=8"]


@pytest.fixture(scope="module")
def server():
    with FakeOpenAIServer(api_key=SECRETS["OPENAI_API_KEY"]) as s:
        yield s


@pytest.fixture(scope="module")
def cluster():
    with running_cluster(num_workers=1, cpus_per_node=1, extra_env=SECRETS) as c:
        yield c


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("secrets")


def job_sets(work: Path, server: FakeOpenAIServer) -> dict[str, list[str]]:
    """Tiny runs of every job; pairs feed negatives and evaluation."""
    return {
        "embed": ["input.limit=10", f"store.uri={work / 'db'}", *CHUNKING],
        "generate-pairs": ["input.limit=6", "synth.backend=openai", f"synth.openai.base_url={server.url}",
                           "synth.openai.max_retries=0", f"synth.output_dir={work / 'pairs'}"],
        "mine-negatives": [f"pairs.path={work / 'pairs'}", f"candidates.store_uri={work / 'mining'}",
                           f"output.dir={work / 'triplets'}", "mining.max_rank=10", "mining.num_negatives=2"],
        "eval": ["datasets=[]", f"pairs_dev.path={work / 'pairs'}", "pairs_dev.dev_fraction=0.5",
                 f"store.uri={work / 'eval_db'}", f"output.dir={work / 'eval'}", "k_values=[1,5]", "main_metric=ndcg_at_5"],
        "train": [f"triplets.path={work / 'triplets' / 'mine-negatives' / 'triplets'}",
                  "model.name=bundled:all-MiniLM-L6-v2", "train.num_workers=1", "train.num_negatives=2",
                  "train.batch_size=4", "train.max_steps=2", "train.interpolate=null", f"output.dir={work / 'models'}"],
        "reembed": ["input.limit=10", f"store.uri={work / 'reembed_db'}", *CHUNKING],
        "pipeline": ["input.limit=10", f"output.dir={work / 'pipeline'}", "train.train.max_steps=2",
                     "train.train.num_workers=1", "train.train.cpus_per_worker=1", f"embed.store.uri={work / 'pipeline_db'}"],
    }


@pytest.fixture(scope="module")
def runs(cluster, server, work):
    env = {k: v for k, v in cluster.env.items() if k not in ("RAY_AUTH_MODE", "RAY_ADDRESS")}
    out = {}
    for command, sets in job_sets(work, server).items():
        if command not in JOBS:
            continue
        args = [sys.executable, "-m", "medembed.cli", "submit", command, "--address", cluster.dashboard_url,
                "--set", f"output.run_dir={work / 'runs'}", "--set", f"output.run_name={command}"]
        for s in sets:
            args += ["--set", s]
        t0 = time.monotonic()
        p = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        log.info("medembed submit %s: exit %d in %.1f s", command, p.returncode, time.monotonic() - t0)
        out[command] = p
    return out


def test_every_registered_job_was_run(runs):
    assert sorted(runs) == sorted(JOBS), "add the new job to job_sets()"
    failed = {c: p.stdout[-2500:] + p.stderr[-2500:] for c, p in runs.items() if p.returncode != 0}
    assert not failed, failed


def test_the_pairs_job_used_the_key_from_its_environment(runs, server):
    assert server.log, "the pairs job sent no request"
    assert all(e["auth_ok"] for e in server.log)


def _leaks(root: Path, secrets: dict[str, str]) -> list[str]:
    found = []
    for f in root.rglob("*"):
        if not f.is_file() or f.is_symlink():
            continue
        try:
            data = f.read_bytes()
        except OSError:
            continue
        found += [f"{name} in {f}" for name, value in secrets.items() if value.encode() in data]
    return found


def test_no_secret_in_outputs_manifests_or_tables(runs, work):
    files = [f for f in work.rglob("*") if f.is_file()]
    assert any(f.name == "manifest.json" for f in files) and any(f.suffix == ".lance" for f in files)
    assert not _leaks(work, SECRETS)


def test_no_secret_in_any_ray_log(runs, cluster):
    logs = [f for f in Path(cluster.temp_dir).rglob("*") if f.is_file() and "logs" in f.parts]
    assert any(f.name.startswith("job-driver-") for f in logs), "the job drivers' logs were not found"
    assert any(f.name.startswith("worker-") for f in logs), "the Ray workers' logs were not found"
    secrets = {**SECRETS, "RAY_AUTH_TOKEN": cluster.token}
    assert not _leaks(Path(cluster.temp_dir), secrets)


def test_no_secret_in_what_the_cli_printed(runs, cluster):
    for command, p in runs.items():
        for name, value in {**SECRETS, "RAY_AUTH_TOKEN": cluster.token}.items():
            assert value not in p.stdout + p.stderr, f"{name} printed by medembed submit {command}"
