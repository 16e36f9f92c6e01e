"""Credentials never leak, and each one does its job: every job runs on a real two-node cluster whose nodes hold
fake secrets in their environment (as Kubernetes Secrets put them in pods), submitted with `medembed submit`;
afterwards no secret appears in any log (driver, job supervisor, Ray worker, raylet, GCS, dashboard), manifest,
table (local or in the bucket), pairs, triplet or result file, model cache, or in what the CLI printed.

Each fake secret is checked by the server it is for, so the jobs provably used it from their environment:
- ``OPENAI_API_KEY``: the fake OpenAI-compatible server checks it on every request of the pairs job.
- ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``: the loopback S3 server (moto, IAM authentication on)
  accepts only this key pair, checking every request's signature; the embed job reads its corpus from and
  writes its table to ``s3://`` with it. Other keys, or this key with another secret, are refused.
- ``HF_TOKEN``: the embed job's model is a private repo on a loopback Hub API (``HF_ENDPOINT``) that answers
  only requests carrying this token. The driver, the chunking tasks and the embedding actor load it by its hub
  id with the token from their node's environment; the weights are fetched by the actor alone (the driver
  fetches config and tokenizer files only).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from medembed.app.registry import JOBS
from tests.support.e2e_jobs import running_cluster
from tests.support.hf_hub_server import FakeHubServer
from tests.support.openai_server import FakeOpenAIServer
from tests.support.paths import REPO, SAMPLE
from tests.support.s3_server import REGION, S3Process, s3_environment

log = logging.getLogger(__name__)

COMMANDS = sorted(j.command for j in JOBS.values())  # `medembed submit <command>`

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(3000)]

SECRETS = {
    "OPENAI_API_KEY": f"sk-fake-{uuid.uuid4().hex}",
    "AWS_ACCESS_KEY_ID": f"AKIAFAKE{uuid.uuid4().hex[:12].upper()}",
    "AWS_SECRET_ACCESS_KEY": f"fake/secret/{uuid.uuid4().hex}",
    "HF_TOKEN": f"hf_fake{uuid.uuid4().hex}",
}
AWS_KEYS = {k: SECRETS[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
CHUNKING = ["chunking.max_tokens=64", "chunking.overlap_tokens=8"]
BUCKET = "medembed-secrets"
CORPUS = f"s3://{BUCKET}/corpus/sample_notes.jsonl"
DB = f"s3://{BUCKET}/lancedb"
HUB_MODEL = "medorg/private-minilm"  # a private Hub repo: served only with HF_TOKEN


@pytest.fixture(scope="module")
def server():
    with FakeOpenAIServer(api_key=SECRETS["OPENAI_API_KEY"]) as s:
        yield s


@pytest.fixture(scope="module")
def s3():
    """moto accepting only the fake AWS key pair; the corpus uploaded with it."""
    with s3_environment(S3Process(credentials=AWS_KEYS), BUCKET) as server:
        server.client().upload_file(str(SAMPLE), BUCKET, CORPUS.split(f"{BUCKET}/", 1)[1])
        yield server


@pytest.fixture(scope="module")
def hub(bundled_model_path):
    """The bundled model's files as a private repo on a loopback Hub API that requires the fake HF_TOKEN."""
    with FakeHubServer(HUB_MODEL, bundled_model_path, token=SECRETS["HF_TOKEN"]) as h:
        yield h


@pytest.fixture(scope="module")
def cluster():
    # 3 CPUs a node: the jobs run at the same time, and each must find a CPU for its tasks beside the others' actors
    with running_cluster(num_workers=1, cpus_per_node=3, extra_env=SECRETS) as c:
        yield c


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("secrets")


TRACKED = ("embed", "generate-pairs", "pipeline")


def mlflow_store(work: Path, command: str) -> Path:
    """The tracked job's own local MLflow store (the jobs run at the same time; one SQLite file each)."""
    return work / "mlflow" / command / "mlflow.db"


def job_sets(work: Path, server: FakeOpenAIServer, s3: S3Process) -> dict[str, list[str]]:
    """Tiny runs of every job; pairs feed negatives and evaluation. The embed job reads and writes S3 and
    loads its model from the Hub (see job_env). The embed, pairs and pipeline jobs are each tracked in a local MLflow
    store (its database and artifacts lie under ``work``, so the leak scan covers them)."""
    for command in TRACKED:
        mlflow_store(work, command).parent.mkdir(parents=True, exist_ok=True)
    track = {c: f"tracking.mlflow_uri=sqlite:///{mlflow_store(work, c)}" for c in TRACKED}
    return {
        "embed": [track["embed"], "input.limit=10", f"input.uri={CORPUS}", f"store.uri={DB}", f"s3.endpoint_url={s3.endpoint}",
                  f"s3.region={REGION}", f"model.name={HUB_MODEL}", *CHUNKING],
        "generate-pairs": [track["generate-pairs"], "input.limit=6", "synth.backend=openai", f"synth.openai.base_url={server.url}",
                           "synth.openai.max_retries=0", f"synth.output_dir={work / 'pairs'}"],
        "mine-negatives": [f"pairs.path={work / 'pairs'}", f"candidates.store_uri={work / 'mining'}",
                           f"output.dir={work / 'triplets'}", "mining.max_rank=10", "mining.num_negatives=2"],
        "evaluate": ["datasets=[]", f"pairs_dev.path={work / 'pairs'}", "pairs_dev.dev_fraction=0.5",
                 f"store.uri={work / 'eval_db'}", f"output.dir={work / 'eval'}", "k_values=[1,5]", "main_metric=ndcg_at_5"],
        "train": [f"triplets.path={work / 'triplets' / 'mine-negatives' / 'triplets'}",
                  "model.name=bundled:all-MiniLM-L6-v2", "train.num_workers=1", "train.num_negatives=2",
                  "train.batch_size=4", "train.max_steps=2", "train.interpolate=null", f"output.dir={work / 'models'}"],
        "reembed": ["input.limit=10", f"store.uri={work / 'reembed_db'}", *CHUNKING],
        # the longest of the runs (five stages): the integration test's small slice (tests/integration/jobs/test_pipeline.py)
        "pipeline": [track["pipeline"], "input.limit=10", f"output.dir={work / 'pipeline'}", "train.train.max_steps=2",
                     "train.train.num_workers=1", "train.train.cpus_per_worker=1", "train.train.batch_size=4",
                     "train.train.passage_max_length=64", "generate_pairs.synth.queries_per_note=3",
                     "mine_negatives.mining.max_rank=20", f"embed.store.uri={work / 'pipeline_db'}"],
    }


def job_env(work: Path, hub: FakeHubServer) -> dict[str, list[str]]:
    """`medembed submit --env` (no secrets: those come from the nodes): the embed job reaches the Hub."""
    return {"embed": ["HF_HUB_OFFLINE=0", f"HF_ENDPOINT={hub.url}", f"HF_HOME={work / 'hf_home'}",
                      "HF_HUB_DISABLE_TELEMETRY=1"]}


# a job waits for the one whose output it reads; the others run at the same time (the cluster queues their tasks)
AFTER = {"mine-negatives": "generate-pairs", "evaluate": "generate-pairs", "train": "mine-negatives"}


@pytest.fixture(scope="module")
def runs(cluster, server, s3, hub, work):
    env = {k: v for k, v in cluster.env.items() if k not in ("RAY_AUTH_MODE", "RAY_ADDRESS")}
    extra_env = job_env(work, hub)
    sets_of = {c: s for c, s in job_sets(work, server, s3).items() if c in COMMANDS}
    done = {c: threading.Event() for c in sets_of}

    def submit(command: str) -> subprocess.CompletedProcess:
        if command in AFTER:
            assert done[AFTER[command]].wait(900), f"{AFTER[command]} did not end"
        args = [sys.executable, "-m", "medembed.app.cli", "submit", command, "--address", cluster.dashboard_url,
                "--set", f"output.run_dir={work / 'runs'}", "--set", f"output.run_name={command}"]
        for e in extra_env.get(command, []):
            args += ["--env", e]
        for s in sets_of[command]:
            args += ["--set", s]
        t0 = time.monotonic()
        try:
            p = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        finally:
            done[command].set()
        log.info("medembed submit %s: exit %d in %.1f s", command, p.returncode, time.monotonic() - t0)
        return p

    with ThreadPoolExecutor(len(sets_of)) as pool:
        futures = {c: pool.submit(submit, c) for c in sets_of}
        return {c: f.result() for c, f in futures.items()}


def test_every_registered_job_was_run(runs):
    assert sorted(runs) == sorted(COMMANDS), "add the new job to job_sets()"
    failed = {c: p.stdout[-2500:] + p.stderr[-2500:] for c, p in runs.items() if p.returncode != 0}
    assert not failed, failed


def test_the_pairs_job_used_the_key_from_its_environment(runs, server):
    assert server.log, "the pairs job sent no request"
    assert all(e["auth_ok"] for e in server.log)


def test_the_embed_job_read_and_wrote_s3_with_the_keys_from_its_environment(runs, s3, work):
    import lance

    from medembed.runtime.storage import DEFAULT_STORAGE

    m = json.loads((work / "runs" / "embed" / "manifest.json").read_text())
    uri, c = m["table"]["uri"], m["counts"]
    assert m["status"] == "succeeded" and uri.startswith(f"{DB}/"), (m["status"], uri)
    assert c["documents_accepted"] == 10 and c["chunks_written"] == c["rows_after"] > 10, c
    assert lance.dataset(uri, storage_options=DEFAULT_STORAGE.storage_options(uri)).count_rows() == c["rows_after"]
    # the server takes no other key: not moto's usual ones, not this key with another secret
    from botocore.exceptions import ClientError

    wrong = [{"aws_access_key_id": "testing", "aws_secret_access_key": "testing"},
             {"aws_access_key_id": AWS_KEYS["AWS_ACCESS_KEY_ID"], "aws_secret_access_key": "not-the-secret"}]
    for creds, code in zip(wrong, ("InvalidAccessKeyId", "SignatureDoesNotMatch")):
        with pytest.raises(ClientError) as e:
            s3.client(**creds).get_object(Bucket=BUCKET, Key=CORPUS.split(f"{BUCKET}/", 1)[1])
        assert e.value.response["Error"]["Code"] == code
    with pytest.raises((OSError, ValueError), match="SignatureDoesNotMatch"):  # Lance: ValueError(LanceError(IO))
        lance.dataset(uri, storage_options={**DEFAULT_STORAGE.storage_options(uri), "aws_secret_access_key": "x"}).count_rows()


def test_the_embed_job_loaded_its_private_model_with_the_token_from_its_environment(runs, hub):
    repo = [e for e in hub.log if HUB_MODEL in e["path"]]
    assert repo and all(e["auth_ok"] for e in repo), [e for e in repo if not e["auth_ok"]][:3]
    fetched = {e["path"].rsplit("/", 1)[1] for e in repo if e["method"] == "GET"}
    # config and tokenizer files (driver), weights (only the embedding actor loads them): all with the token
    assert {"config.json", "tokenizer.json", "model.safetensors"} <= fetched, fetched


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


def test_no_secret_in_outputs_manifests_or_tables(runs, work, s3):
    files = [f for f in work.rglob("*") if f.is_file()]
    assert any(f.name == "manifest.json" for f in files) and any(f.suffix == ".lance" for f in files)
    # the tracked jobs wrote their MLflow runs (params, tags, metrics, artifacts) into the scanned folder
    for command in TRACKED:
        m = json.loads((work / "runs" / command / "manifest.json").read_text())
        assert m.get("mlflow", {}).get("run_id"), f"{command} was not tracked"
    assert all(mlflow_store(work, c).stat().st_size > 0 for c in TRACKED) and any("mlartifacts" in f.parts for f in files)
    assert any("hf_home" in f.parts for f in files), "the Hub model cache was not written"
    assert not _leaks(work, SECRETS)
    client, keys = s3.client(), list(s3.keys(BUCKET))
    assert any(k.endswith(".manifest") for k in keys) and any(k.endswith(".lance") for k in keys), keys
    found = [f"{name} in s3://{BUCKET}/{k}" for k in keys
             for name, value in SECRETS.items() if value.encode() in client.get_object(Bucket=BUCKET, Key=k)["Body"].read()]
    assert not found, found


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
