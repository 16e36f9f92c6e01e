"""cluster/: every KubeRay manifest parses and agrees with the code it launches.

Entry points are registered job drivers, configs are shipped configs that load, resources fit the
configs, state lives on S3 (a retried RayJob is a new Ray cluster), credentials come only from
Kubernetes Secrets, and the dashboard/job API never leaves the cluster.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from medembed.app.registry import JOBS, by_name
from medembed.config import load_config, shipped_configs
from tests.support.paths import REPO

KUBERAY = REPO / "cluster" / "kuberay"
SECRET_NAME = re.compile(r"(_KEY|SECRET|_TOKEN$|PASSWORD|CREDENTIAL)")
FILES = sorted(KUBERAY.glob("*.yaml"))


def docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


ALL = [(p.name, d) for p in FILES for d in docs(p)]


def rayjob_specs() -> Iterator[tuple[str, dict]]:
    """Every RayJob spec: RayJob files, the RayCronJob template, the CronJob's ConfigMap template."""
    for name, d in ALL:
        if d["kind"] == "RayJob":
            yield name, d["spec"]
        elif d["kind"] == "RayCronJob":
            yield name, d["spec"]["jobTemplate"]
        elif d["kind"] == "ConfigMap":
            for key, text in d.get("data", {}).items():
                inner = yaml.safe_load(text)
                if isinstance(inner, dict) and inner.get("kind") == "RayJob":
                    yield f"{name}:{key}", inner["spec"]


SPECS = list(rayjob_specs())


def containers(obj: Any) -> Iterator[dict]:
    """Every container (and init container) anywhere in a manifest."""
    if isinstance(obj, dict):
        for key in ("containers", "initContainers"):
            if isinstance(obj.get(key), list):
                yield from obj[key]
        for v in obj.values():
            yield from containers(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from containers(v)


def entry(spec: dict) -> tuple[str, str, list[str]]:
    """(driver path, config name, other args) of a RayJob entrypoint ``python jobs/x.py --config NAME ...``."""
    return _entry(spec["entrypoint"])


def _entry(text: str) -> tuple[str, str, list[str]]:
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    argv = []
    for tok in lexer:  # the command before any shell operator (reembed's lease handling follows `||`)
        if tok in ("||", "&&", ";", "|", "&"):
            break
        argv.append(tok)
    if argv[:2] == ["sh", "-c"] and len(argv) == 3:  # reembed: `sh -c '<driver> || <lease handling>'`
        return _entry(argv[2])
    assert argv[0] == "python" and argv[1].startswith("jobs/"), text
    cfg = argv[argv.index("--config") + 1]
    return argv[1], cfg, argv[2:]


def driver_job(driver: str):
    """The registered job a thin driver runs (its ``main_for("<name>")``)."""
    m = re.search(r'main_for\("([^"]+)"\)', (REPO / driver).read_text())
    assert m, f"{driver} is not a medembed job driver"
    return by_name(m.group(1))


def job_config(spec: dict):
    driver, config, args = entry(spec)
    job = driver_job(driver)
    overrides = [args[i + 1] for i, a in enumerate(args) if a == "--set"]
    return job, load_config(job.config_class(), config, overrides)


def group(spec: dict, name: str) -> dict:
    return next(g for g in spec["rayClusterSpec"]["workerGroupSpecs"] if g["groupName"] == name)


def pod_resources(g: dict) -> dict[str, float]:
    lim = g["template"]["spec"]["containers"][0]["resources"]["limits"]
    return {"cpu": float(lim["cpu"]), "gpu": float(lim.get("nvidia.com/gpu", 0))}


def test_manifests_found():
    kinds = sorted({d["kind"] for _, d in ALL})
    assert {"RayCluster", "RayJob", "RayCronJob", "CronJob", "ConfigMap"} <= set(kinds), kinds
    # apiVersion, field names and types: test_kuberay_schemas.py (the upstream CRDs and the Kubernetes models)


def test_every_registered_job_has_a_rayjob():
    covered = {driver_job(entry(spec)[0]).command for name, spec in SPECS if name.startswith("rayjob-")}
    missing = sorted(j.command for j in JOBS.values() if j.command not in covered)
    assert not missing, f"no cluster/kuberay/rayjob-<job>.yaml for {missing}"
    for j in JOBS.values():
        assert (KUBERAY / f"rayjob-{j.command}.yaml").is_file(), j.command


@pytest.mark.parametrize("where,spec", SPECS, ids=[n for n, _ in SPECS])
def test_entrypoint_is_a_driver_with_a_shipped_config(where, spec):
    driver, config, _ = entry(spec)
    assert (REPO / driver).is_file(), f"{where}: {driver} missing"
    driver_job(driver)  # KeyError when the driver runs no registered job
    assert config in shipped_configs(), f"{where}: config {config} is not in medembed/configs/"
    job_config(spec)  # loads and validates with the job's config class


@pytest.mark.parametrize("where,spec", SPECS, ids=[n for n, _ in SPECS])
def test_rayjob_lifecycle(where, spec):
    assert spec["backoffLimit"] >= 1  # a retry is a new Ray cluster that resumes from S3
    assert 0 < spec["activeDeadlineSeconds"] <= 24 * 3600
    assert "rayClusterSpec" in spec and "clusterSelector" not in spec  # its own cluster per attempt
    env = yaml.safe_load(spec["runtimeEnvYAML"])
    assert env["working_dir"] == "/home/ray/medembed"  # the code baked into the image (cluster/Dockerfile)
    # finished RayJobs are cleaned up: test_kuberay_schemas.py::test_finished_rayjobs_are_deleted


STATE_KEYS = {"run_dir", "dir", "output_dir", "store_uri", "storage_path", "checkpoint_dir"}


def _state_uris(data: Any, prefix: str = "") -> dict[str, str]:
    """Every field (nested, including a pipeline's per-stage overrides) where a job keeps state."""
    out: dict[str, str] = {}
    if isinstance(data, dict):
        for k, v in data.items():
            path = f"{prefix}{k}"
            if isinstance(v, str) and (k in STATE_KEYS or (k == "uri" and prefix.endswith("store."))):
                out[path] = v
            else:
                out.update(_state_uris(v, path + "."))
    return out


@pytest.mark.parametrize("where,spec", SPECS, ids=[n for n, _ in SPECS])
def test_retried_jobs_resume_from_s3_not_the_head_disk(where, spec):
    job, cfg = job_config(spec)
    state = _state_uris(cfg.model_dump())
    assert "output.run_dir" in state
    local = {k: v for k, v in state.items() if not v.startswith("s3://")}
    assert not local, f"{where}: a retry starts a new Ray cluster; these must be on S3: {local}"


@pytest.mark.parametrize("where,spec", SPECS, ids=[n for n, _ in SPECS])
def test_worker_groups_fit_the_config(where, spec):
    job, cfg = job_config(spec)
    gpu, cpu = group(spec, "gpu"), group(spec, "cpu")
    g, c = pod_resources(gpu), pod_resources(cpu)
    assert g["gpu"] >= 1 and c["gpu"] == 0  # Ray's num-cpus/num-gpus/memory = requests: test_kuberay_schemas.py
    for grp in (gpu, cpu):
        assert 0 <= grp["minReplicas"] <= grp["replicas"] <= grp["maxReplicas"]
    head = spec["rayClusterSpec"]["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    embed = getattr(cfg, "embed", None)
    if hasattr(embed, "num_gpus") and embed.num_gpus > 0:
        per_pod = g["gpu"] // embed.num_gpus
        assert per_pod >= 1 and g["cpu"] >= embed.num_cpus, f"{where}: a GPU pod cannot hold one embedder actor"
        assert gpu["maxReplicas"] * per_pod >= embed.num_actors, (
            f"{where}: embed.num_actors={embed.num_actors} but the gpu group holds {gpu['maxReplicas'] * per_pod}")
    if job.command == "generate-pairs":
        s = cfg.synth
        assert s.backend == "openai" and gpu["maxReplicas"] == 0, "external LLM: no GPU workers"
        assert cpu["maxReplicas"] * c["cpu"] >= s.concurrency * s.actor_num_cpus
    training = getattr(cfg, "train", None)
    if hasattr(training, "num_workers") and training.use_gpu:  # one GPU per Ray Train worker
        assert gpu["maxReplicas"] * g["gpu"] >= training.num_workers, (
            f"{where}: {training.num_workers} training workers, room for {gpu['maxReplicas'] * g['gpu']:g}")


def test_credentials_only_from_kubernetes_secrets():
    seen = set()
    for name, d in ALL:
        assert d["kind"] != "Secret", f"{name}: no Secret objects in the repo (create them with kubectl)"
        for c in containers(d):
            for e in c.get("env", []):
                if SECRET_NAME.search(e["name"]):
                    assert "value" not in e, f"{name}: {e['name']} has a literal value"
                    assert "secretKeyRef" in e["valueFrom"], f"{name}: {e['name']} not from a Secret"
                    seen.add(e["name"])
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "OPENAI_API_KEY", "HF_TOKEN"} <= seen
    for where, spec in SPECS:
        env = yaml.safe_load(spec["runtimeEnvYAML"]).get("env_vars", {})
        assert not [k for k in env if SECRET_NAME.search(k)], f"{where}: secrets in runtimeEnvYAML (Ray records it)"


def test_the_api_key_variable_of_the_pairs_config_comes_from_a_secret():
    spec = next(s for n, s in SPECS if n == "rayjob-generate-pairs.yaml")
    _, cfg = job_config(spec)
    names = {e["name"] for c in containers(spec) for e in c.get("env", []) if "valueFrom" in e}
    assert cfg.synth.openai.api_key_env in names


def test_dashboard_and_job_api_stay_inside_the_cluster():
    for name, d in ALL:
        assert d["kind"] != "Ingress", name
        if d["kind"] == "Service":
            assert d["spec"].get("type", "ClusterIP") == "ClusterIP", name
    clusters = [d["spec"] for _, d in ALL if d["kind"] == "RayCluster"] + [s["rayClusterSpec"] for _, s in SPECS]
    for spec in clusters:
        head = spec["headGroupSpec"]
        assert head.get("serviceType", "ClusterIP") == "ClusterIP"
        assert head.get("enableIngress", False) is False
        assert spec["authOptions"]["mode"] == "token"
        for c in containers(spec):
            assert "hostPort" not in str(c.get("ports", ""))


def test_nightly_cronjob_creates_the_reembed_rayjob():
    k8s = next(d for _, d in ALL if d["kind"] == "CronJob")
    pod = k8s["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    cmd = pod["containers"][0]["command"]
    assert cmd[:2] == ["kubectl", "create"] and cmd[-1] == "/manifests/rayjob.yaml"
    cm_name = pod["volumes"][0]["configMap"]["name"]
    cm = next(d for _, d in ALL if d["kind"] == "ConfigMap" and d["metadata"]["name"] == cm_name)
    created = yaml.safe_load(cm["data"]["rayjob.yaml"])
    assert created["kind"] == "RayJob" and "generateName" in created["metadata"]  # a new name every night
    assert driver_job(entry(created["spec"])[0]).command == "reembed"
    role = next(d for _, d in ALL if d["kind"] == "Role")
    assert {"create"} <= set(role["rules"][0]["verbs"]) and role["rules"][0]["resources"] == ["rayjobs"]
    assert role["rules"][0]["apiGroups"] == [created["apiVersion"].split("/")[0]]
    binding = next(d for _, d in ALL if d["kind"] == "RoleBinding")
    assert binding["subjects"][0]["name"] == pod["serviceAccountName"]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]


def test_dockerfile_builds_the_node_image():
    text = (REPO / "cluster" / "Dockerfile").read_text()
    assert re.search(r"^FROM rayproject/ray:2\.60\.0-py311-gpu", text, re.M)
    assert 'pip install --no-cache-dir "torch==' in text
    for path in ("medembed", "jobs"):
        assert f"COPY {path} ./{path}" in text
    cluster_model = load_config(by_name("embed").config_class(), "embed_cluster").model.name
    assert cluster_model in text, "the cluster config's model is cached in the image"
    assert "HF_HUB_OFFLINE=1" in text
    assert not re.search(r"^(ENV|ARG)\s.*(KEY|SECRET|TOKEN|PASSWORD)\s*=", text, re.M | re.I)
    images = {c["image"] for _, d in ALL for c in containers(d) if "medembed" in c["image"]}
    assert images == {"ghcr.io/medembed/medembed:0.1.0"}
