"""cluster/kuberay/: generated from cluster/generate.py, valid against the upstream KubeRay CRDs and the Kubernetes
API, every pod fits the node type it pins, and the nightly schedule cleans up after itself.

No network: the CRDs are vendored in tests/data/kuberay/ (SOURCE.md), the Kubernetes API schema is the
``kubernetes`` client's models. The checks live in schemas.py; the mutation tests at the end show that each one
rejects a broken manifest.
"""

from __future__ import annotations

import copy
import hashlib
import os
import re
import shlex
import subprocess
import sys
import zoneinfo
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from medembed.index.lease import EXIT_LEASE_HELD
from tests.support.paths import REPO
from tests.unit.deploy import schemas
from tests.unit.deploy.schemas import (
    crd_errors,
    fit_errors,
    k8s_errors,
    load_generator,
    manifest_errors,
    parse_cron,
    pod_templates,
    ray_param_errors,
    read_docs,
)

gen = load_generator()
KUBERAY = REPO / "cluster" / "kuberay"
FILES = sorted(KUBERAY.glob("*.yaml"))
DOCS = [(f"{p.name}#{i}:{d['kind']}", d) for p in FILES for i, d in enumerate(read_docs(p))]


def _with_configmap_templates() -> list[tuple[str, dict]]:
    """Every document, plus the RayJob a ConfigMap carries as text (the CronJob creates it every night)."""
    out = list(DOCS)
    for where, d in DOCS:
        if d["kind"] == "ConfigMap":
            for key, text in d.get("data", {}).items():
                inner = yaml.safe_load(text)
                if isinstance(inner, dict) and "apiVersion" in inner:
                    out.append((f"{where}:{key}", inner))
    return out


ALL_DOCS = _with_configmap_templates()
RAY_DOCS = [(w, d) for w, d in ALL_DOCS if d["kind"] in schemas.CRD_FILES]


def rayjob_specs() -> list[tuple[str, dict]]:
    out = []
    for where, d in RAY_DOCS:
        if d["kind"] == "RayJob":
            out.append((where, d["spec"]))
        elif d["kind"] == "RayCronJob":
            out.append((where, d["spec"]["jobTemplate"]))
    return out


SPECS = rayjob_specs()
NIGHTLY_SPECS = [(w, s) for w, s in SPECS if "jobs/reembed.py" in s["entrypoint"]]


def cluster_spec(doc: dict) -> dict:
    if doc["kind"] == "RayCluster":
        return doc["spec"]
    job = doc["spec"]["jobTemplate"] if doc["kind"] == "RayCronJob" else doc["spec"]
    return job["rayClusterSpec"]


GROUPS = [(f"{w}:head", cluster_spec(d)["headGroupSpec"], True) for w, d in RAY_DOCS] + [
    (f"{w}:{g['groupName']}", g, False) for w, d in RAY_DOCS for g in cluster_spec(d)["workerGroupSpecs"]]
PODS = [(f"{w}:{path}", t["spec"]) for w, d in RAY_DOCS for path, t in pod_templates(d)]


# ------------------------------------------------------------------------------------------- the sources


def test_vendored_crds_are_the_upstream_files_named_in_source_md():
    source = (schemas.CRD_DIR / "SOURCE.md").read_text()
    assert f"tag: `{schemas.KUBERAY_VERSION}`" in source and "github.com/ray-project/kuberay" in source
    assert re.search(r"commit: `[0-9a-f]{40}`", source)
    for kind, name in schemas.CRD_FILES.items():
        row = next(line for line in source.splitlines() if line.startswith(f"| `{name}`"))
        digest = hashlib.sha256((schemas.CRD_DIR / name).read_bytes()).hexdigest()
        assert f"`{digest}`" in row, f"{name}: sha256 {digest} is not the one in SOURCE.md"
        doc = schemas.crd(kind)
        assert doc["kind"] == "CustomResourceDefinition" and doc["spec"]["group"] == "ray.io"
        assert any(v["name"] == "v1" and v["storage"] for v in doc["spec"]["versions"]), name


def test_generated_manifests_are_current():
    files = gen.render()
    assert sorted(files) == sorted(p.name for p in FILES), "cluster/kuberay/ has files generate.py does not write"
    stale = [name for name, text in files.items() if (KUBERAY / name).read_text() != text]
    assert not stale, f"edit cluster/generate.py, then run `python cluster/generate.py`: {stale} differ"
    assert gen.stale() == []


def test_generator_check_mode_names_a_stale_file(tmp_path):
    for name, text in gen.render().items():
        (tmp_path / name).write_text(text)
    assert gen.stale(tmp_path) == []
    (tmp_path / "rayjob-train.yaml").write_text((tmp_path / "rayjob-train.yaml").read_text() + "# edited\n")
    (tmp_path / "extra.yaml").write_text("{}\n")
    assert gen.stale(tmp_path) == ["extra.yaml", "rayjob-train.yaml"]


def test_exit_code_of_a_held_lease_is_the_one_medembed_uses():
    assert gen.EXIT_LEASE_HELD == EXIT_LEASE_HELD


# ------------------------------------------------------------------------------------------------ schemas


@pytest.mark.parametrize("where,doc", ALL_DOCS, ids=[w for w, _ in ALL_DOCS])
def test_manifest_is_valid_against_the_upstream_schema(where, doc):
    assert manifest_errors(doc, where) == []


def test_every_kind_is_checked():
    kinds = {d["kind"] for _, d in ALL_DOCS}
    assert {"RayCluster", "RayJob", "RayCronJob", "CronJob", "ConfigMap", "Role", "RoleBinding",
            "ServiceAccount"} == kinds
    assert len(PODS) == 3 * len(RAY_DOCS)  # head + gpu + cpu everywhere: every pod template is checked


# KubeRay v1.7.0 utils/constant.go: RayCluster names <= 53, RayJob <= 47, RayCronJob <= 36 (its RayJobs add 11)
MAX_NAME = {"RayCluster": 53, "RayJob": 47, "RayCronJob": 36}


@pytest.mark.parametrize("where,doc", RAY_DOCS, ids=[w for w, _ in RAY_DOCS])
def test_names_pass_kuberay_validation(where, doc):
    meta = doc["metadata"]
    name = meta.get("name") or meta["generateName"] + "x" * 5  # the API server appends 5 characters
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name), f"{where}: {name} is not a DNS-1035 label"
    assert len(name) <= MAX_NAME[doc["kind"]], f"{where}: {name} longer than {MAX_NAME[doc['kind']]}"


# --------------------------------------------------------------------------------------------- node types


def test_node_types_follow_the_eks_reserve_formulas():
    m7i, g6, g6x2 = (gen.NODE_TYPES[n] for n in ("m7i.2xlarge", "g6.xlarge", "g6.2xlarge"))
    assert (m7i.kube_reserved_cpu_m, g6.kube_reserved_cpu_m) == (90, 80)  # 60+10+5+5(+4*2.5)
    assert m7i.kube_reserved_memory_mib == 255 + 11 * 58 == 893
    assert g6.allocatable_cpu_m == 3920 and g6.schedulable_cpu_m < 4000 - 500
    # a g6.xlarge cannot hold the 4-CPU embedder actor every *_cluster config asks for: hence g6.2xlarge
    assert g6.schedulable_cpu_m < 4000 <= g6x2.schedulable_cpu_m
    for t in gen.NODE_TYPES.values():
        assert 0 < t.schedulable_memory_mib < t.allocatable_memory_mib < t.memory_gib * 1024


@pytest.mark.parametrize("where,pod", PODS, ids=[w for w, _ in PODS])
def test_every_ray_pod_fits_the_node_type_it_pins(where, pod):
    assert fit_errors(pod, where) == []


@pytest.mark.parametrize("where,group,head", GROUPS, ids=[w for w, _, _ in GROUPS])
def test_ray_resources_equal_the_pod_requests(where, group, head):
    assert ray_param_errors(group, where, head=head) == []


def test_every_container_sets_resources():
    for where, d in ALL_DOCS:
        for c in _containers(d):
            res = c.get("resources", {})
            assert res.get("requests") and res.get("limits"), f"{where}: container {c['name']} has no resources"
            assert {"cpu", "memory"} <= set(res["requests"]) and "memory" in res["limits"], (where, c["name"])


def _containers(obj):
    if isinstance(obj, dict):
        yield from obj.get("containers", []) if isinstance(obj.get("containers"), list) else []
        for v in obj.values():
            yield from _containers(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _containers(v)


# -------------------------------------------------------------------------------------- finished RayJobs


def deletion_errors(spec: dict, where: str = "") -> list[str]:
    """What KubeRay v1.7.0's validateDeletionConfiguration/validateDeletionRules refuse (CEL and Go checks the
    JSON schema cannot express), plus medembed's rule that every terminal state deletes cluster and RayJob."""
    errors = []
    rules = spec.get("deletionStrategy", {}).get("deletionRules", [])
    if not rules:
        return [f"{where}: no deletionStrategy.deletionRules: finished RayJobs would never be deleted"]
    if spec.get("shutdownAfterJobFinishes"):
        errors.append(f"{where}: shutdownAfterJobFinishes and deletionRules are mutually exclusive")
    if spec.get("ttlSecondsAfterFinished", 0) > 0 and not spec.get("shutdownAfterJobFinishes"):
        errors.append(f"{where}: ttlSecondsAfterFinished needs shutdownAfterJobFinishes")
    by_condition: dict[tuple[str, str], dict[str, int]] = {}
    for i, rule in enumerate(rules):
        cond = {k: v for k, v in rule["condition"].items() if k != "ttlSeconds"}
        if len(cond) != 1:
            errors.append(f"{where}: deletionRules[{i}]: exactly one of jobStatus, jobDeploymentStatus")
            continue
        key = next(iter(cond.items()))
        policies = by_condition.setdefault(key, {})
        if rule["policy"] in policies:
            errors.append(f"{where}: deletionRules[{i}]: duplicate {rule['policy']} for {key}")
        policies[rule["policy"]] = rule["condition"].get("ttlSeconds", 0)
        if rule["policy"] == "DeleteWorkers" and spec["rayClusterSpec"].get("enableInTreeAutoscaling"):
            errors.append(f"{where}: deletionRules[{i}]: DeleteWorkers is refused with autoscaling")
    order = ["DeleteWorkers", "DeleteCluster", "DeleteSelf"]
    for key, policies in by_condition.items():
        ttls = [policies[p] for p in order if p in policies]
        if ttls != sorted(ttls):
            errors.append(f"{where}: {key}: TTLs must grow DeleteWorkers <= DeleteCluster <= DeleteSelf: {policies}")
    for key in (("jobStatus", "SUCCEEDED"), ("jobStatus", "FAILED"), ("jobDeploymentStatus", "Failed")):
        missing = {"DeleteCluster", "DeleteSelf"} - set(by_condition.get(key, {}))
        if missing:
            errors.append(f"{where}: {key[0]}={key[1]}: no {sorted(missing)} rule")
    return errors


@pytest.mark.parametrize("where,spec", SPECS, ids=[w for w, _ in SPECS])
def test_finished_rayjobs_are_deleted(where, spec):
    assert deletion_errors(spec, where) == []
    success = {r["policy"]: r["condition"]["ttlSeconds"] for r in spec["deletionStrategy"]["deletionRules"]
               if r["condition"].get("jobStatus") == "SUCCEEDED"}
    assert success["DeleteCluster"] <= 600 and success["DeleteSelf"] <= 2 * 86400  # nightly RayJobs don't pile up


# ---------------------------------------------------------------------------------------------- nightly


def nightly_schedulers() -> list[tuple[str, dict]]:
    return [(w, d) for w, d in ALL_DOCS if d["kind"] in ("CronJob", "RayCronJob")]


@pytest.mark.parametrize("where,doc", nightly_schedulers(), ids=[w for w, _ in nightly_schedulers()])
def test_schedule_parses_and_has_a_time_zone(where, doc):
    minute, hour, dom, month, dow = parse_cron(doc["spec"]["schedule"])
    assert (minute, hour) == ({0}, {2}) and len(dom) == 31 and len(month) == 12, "once a night at 02:00"
    assert "TZ" not in doc["spec"]["schedule"], "use spec.timeZone, not a TZ= prefix"
    zoneinfo.ZoneInfo(doc["spec"]["timeZone"])  # raises for an unknown zone
    assert doc["spec"]["timeZone"] == gen.NIGHTLY_TIME_ZONE


def test_plain_cronjob_cleans_up_and_runs_one_at_a_time():
    cron = next(d for _, d in ALL_DOCS if d["kind"] == "CronJob")["spec"]
    assert cron["concurrencyPolicy"] == "Forbid"
    assert 1 <= cron["successfulJobsHistoryLimit"] <= 5 and 1 <= cron["failedJobsHistoryLimit"] <= 5
    job = cron["jobTemplate"]["spec"]
    assert 0 < job["ttlSecondsAfterFinished"] <= 7 * 86400 and job["activeDeadlineSeconds"] > 0
    (container,) = job["template"]["spec"]["containers"]
    # a published, pinned image: registry.k8s.io/kubectl:vX.Y.Z (bitnami/kubectl tags are no longer published)
    assert re.fullmatch(r"registry\.k8s\.io/kubectl:v1\.\d+\.\d+", container["image"]), container["image"]
    # the RayJobs it creates have no owner: they delete themselves (deletionRules DeleteSelf)
    created = next(s for w, s in NIGHTLY_SPECS if "ConfigMap" in w)
    assert deletion_errors(created) == []


def test_one_nightly_scheduler_is_the_default():
    cron = next(d for _, d in ALL_DOCS if d["kind"] == "CronJob")
    ray_cron = next(d for _, d in ALL_DOCS if d["kind"] == "RayCronJob")
    # the same name and label on both: `kubectl get cronjobs,raycronjobs -l <label>` shows if both are applied
    assert cron["metadata"]["name"] == ray_cron["metadata"]["name"]
    for d in (cron, ray_cron):
        assert d["metadata"]["labels"][gen.NIGHTLY_SCHEDULER_LABEL] == "true"
    assert cron["spec"]["schedule"] == ray_cron["spec"]["schedule"]
    cron_text = (KUBERAY / "cronjob-nightly.yaml").read_text()
    ray_text = (KUBERAY / "raycronjob-nightly.yaml").read_text()
    assert "# DEFAULT nightly scheduler" in cron_text and "ALTERNATIVE" not in cron_text.split("apiVersion")[0]
    assert "# ALTERNATIVE nightly scheduler" in ray_text and "RayCronJob=true" in ray_text
    for text in (cron_text, ray_text):
        assert "exactly ONE nightly scheduler" in text
    readme = (REPO / "cluster" / "README.md").read_text()
    row = next(line for line in readme.splitlines() if "`kuberay/cronjob-nightly.yaml`" in line)
    assert "default" in row.lower()
    row = next(line for line in readme.splitlines() if "`kuberay/raycronjob-nightly.yaml`" in line)
    assert "alternative" in row.lower()
    assert "never both" in readme.lower()


SUBMIT_STUB = """import shlex, sys
args = sys.argv[1:]
print(shlex.join(args[args.index("--") + 1:]))  # what `ray job submit -- <words>` sends Ray (Ray 2.60 cli.py)
"""


def _entrypoint_as_ray_runs_it(entrypoint: str, tmp_path: Path) -> str:
    """The command Ray's job supervisor gets for a RayJob entrypoint in K8sJobMode.

    KubeRay v1.7.0 (common/job.go BuildJobSubmitCommand) pastes the entrypoint unquoted into the submitter's
    bash line `... ray job submit --address ... --no-wait -- <entrypoint> ; fi ; ray job logs ...`, and `ray job
    submit` shlex-joins the words it got. A stub `ray job submit` here prints that joined string.
    """
    stub = tmp_path / "ray_job_submit.py"
    stub.write_text(SUBMIT_STUB)
    line = f"if true ; then {shlex.quote(sys.executable)} {stub} --address http://x:8265 --no-wait -- {entrypoint} ; fi ; echo FOLLOW"
    out = subprocess.run(["/bin/bash", "-c", line], capture_output=True, text=True, timeout=60, check=True).stdout
    received, follow = out.rstrip("\n").rsplit("\n", 1)
    assert follow == "FOLLOW", f"the entrypoint broke the submitter's command line: {out!r}"
    return received


def _run_entrypoint(entrypoint: str, driver_exit: int, tmp_path: Path) -> subprocess.CompletedProcess:
    """Run a RayJob entrypoint as KubeRay + Ray do (submitter bash, then /bin/sh -c), the driver exiting N."""
    (tmp_path / "jobs").mkdir(exist_ok=True)
    (tmp_path / "jobs" / "reembed.py").write_text(
        "import os, sys\nsys.exit(int(os.environ['DRIVER_EXIT']))\n")
    command = _entrypoint_as_ray_runs_it(entrypoint, tmp_path)
    env = {**os.environ, "DRIVER_EXIT": str(driver_exit)}
    return subprocess.run(command, shell=True, executable="/bin/sh", cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60, check=False)


@pytest.mark.parametrize("where,spec", NIGHTLY_SPECS, ids=[w for w, _ in NIGHTLY_SPECS])
def test_a_held_lease_is_a_skip_not_a_failure(where, spec, tmp_path):
    assert len(NIGHTLY_SPECS) == 3  # rayjob-reembed, the RayCronJob's template, the CronJob's ConfigMap
    held = _run_entrypoint(spec["entrypoint"], EXIT_LEASE_HELD, tmp_path)
    assert held.returncode == 0 and "writer lease" in held.stdout and "skipped" in held.stdout
    assert _run_entrypoint(spec["entrypoint"], 0, tmp_path).returncode == 0
    for code in (1, 2, 4):  # failed, bad config, quarantined input: still failures, still retried
        assert _run_entrypoint(spec["entrypoint"], code, tmp_path).returncode == code


@pytest.mark.parametrize("where,spec", SPECS, ids=[w for w, _ in SPECS])
def test_entrypoint_survives_the_submitter_shell(where, spec, tmp_path):
    # what Ray runs is the entrypoint itself (the submitter's bash only strips one level of quoting)
    assert shlex.split(_entrypoint_as_ray_runs_it(spec["entrypoint"], tmp_path)) == shlex.split(spec["entrypoint"])


def test_a_bare_shell_operator_in_an_entrypoint_is_caught(tmp_path):
    bare = "python jobs/reembed.py --config reembed_cluster || true"  # `||` would bind to ray job submit
    with pytest.raises(AssertionError):
        assert shlex.split(_entrypoint_as_ray_runs_it(bare, tmp_path)) == shlex.split(bare)


# --------------------------------------------------------------------------------------------------- docs


def test_docs_state_kuberay_1_5_1_or_later():
    found = []
    for path in [REPO / "README.md", REPO / "cluster" / "README.md", *FILES]:
        for m in re.finditer(r"KubeRay\s*>=\s*(\d+)\.(\d+)(?:\.(\d+))?", path.read_text()):
            version = tuple(int(x or 0) for x in m.groups())
            found.append(str(path.relative_to(REPO)))
            assert version >= (1, 5, 1), f"{path}: '{m.group(0)}': authOptions needs KubeRay 1.5.1"
    assert {"README.md", "cluster/README.md", "cluster/kuberay/raycluster.yaml"} <= set(found), found


# ----------------------------------------------------------------------------- broken manifests are refused


def _doc(name: str, kind: str) -> dict:
    return copy.deepcopy(next(d for w, d in DOCS if w.startswith(f"{name}#") and d["kind"] == kind))


def _gpu_group(doc: dict) -> dict:
    return next(g for g in cluster_spec(doc)["workerGroupSpecs"] if g["groupName"] == "gpu")


def _cpu_group(doc: dict) -> dict:
    return next(g for g in cluster_spec(doc)["workerGroupSpecs"] if g["groupName"] == "cpu")


def _set(path: list, value) -> Callable[[dict], None]:
    def mutate(doc: dict) -> None:
        obj = doc
        for key in path[:-1]:
            obj = obj[key]
        obj[path[-1]] = value
    return mutate


def _rename(path: list, new: str) -> Callable[[dict], None]:
    def mutate(doc: dict) -> None:
        obj = doc
        for key in path[:-1]:
            obj = obj[key]
        obj[new] = obj.pop(path[-1])
    return mutate


def _check_doc(doc: dict) -> list[str]:
    return manifest_errors(doc, "mutated")


def _check_pods(doc: dict) -> list[str]:
    return [e for p, t in pod_templates(doc) for e in fit_errors(t["spec"], p)]


def _check_groups(doc: dict) -> list[str]:
    return [e for g in cluster_spec(doc)["workerGroupSpecs"] for e in ray_param_errors(g, g["groupName"])]


def _container(doc: dict, group=_gpu_group) -> dict:
    return group(doc)["template"]["spec"]["containers"][0]


def _oversize_gpu_memory(doc: dict) -> None:
    for key in ("requests", "limits"):  # the original 28Gi on a 16 GiB g6.xlarge
        _container(doc)["resources"][key]["memory"] = "28Gi"
    _gpu_group(doc)["template"]["spec"]["nodeSelector"][gen.INSTANCE_TYPE_LABEL] = "g6.xlarge"


def _oversize_cpu(doc: dict) -> None:
    for key in ("requests", "limits"):  # 8 CPUs on an 8-vCPU node: no room for the kubelet reserve
        _container(doc, _cpu_group)["resources"][key]["cpu"] = "8"
    _cpu_group(doc)["rayStartParams"]["num-cpus"] = "8"


MUTATIONS = {
    "RayJob field typo (backoffLimitt)": ("rayjob-embed.yaml", "RayJob", _rename(["spec", "backoffLimit"],
                                                                                 "backoffLimitt"), _check_doc),
    "worker group field typo (minReplica)": (
        "raycluster.yaml", "RayCluster", lambda d: _rename(["minReplicas"], "minReplica")(_gpu_group(d)), _check_doc),
    "container field typo (imagePullPolicyy)": (
        "rayjob-train.yaml", "RayJob", lambda d: _rename(["imagePullPolicy"], "imagePullPolicyy")(_container(d)),
        _check_doc),
    "deletion policy not in the enum": (
        "rayjob-reembed.yaml", "RayJob",
        _set(["spec", "deletionStrategy", "deletionRules", 0, "policy"], "DeleteEverything"), _check_doc),
    "RayCronJob field typo (timezone)": (
        "raycronjob-nightly.yaml", "RayCronJob", _rename(["spec", "timeZone"], "timezone"), _check_doc),
    "CronJob field typo (concurrencyPolicyy)": (
        "cronjob-nightly.yaml", "CronJob", _rename(["spec", "concurrencyPolicy"], "concurrencyPolicyy"), _check_doc),
    "CronJob field in Python spelling (concurrency_policy)": (
        "cronjob-nightly.yaml", "CronJob", _rename(["spec", "concurrencyPolicy"], "concurrency_policy"), _check_doc),
    "oversized GPU pod (28Gi on g6.xlarge)": ("rayjob-embed.yaml", "RayJob", _oversize_gpu_memory, _check_pods),
    "oversized CPU pod (8 CPUs on m7i.2xlarge)": ("raycluster.yaml", "RayCluster", _oversize_cpu, _check_pods),
    "unknown instance type": (
        "rayjob-evaluate.yaml", "RayJob",
        lambda d: _gpu_group(d)["template"]["spec"]["nodeSelector"].update({gen.INSTANCE_TYPE_LABEL: "g6.48xlarge"}),
        _check_pods),
    "Ray num-cpus above the pod's request": (
        "rayjob-pipeline.yaml", "RayJob", lambda d: _cpu_group(d)["rayStartParams"].update({"num-cpus": "8"}),
        _check_groups),
    "Ray memory missing": (
        "rayjob-pipeline.yaml", "RayJob", lambda d: _gpu_group(d)["rayStartParams"].pop("memory"), _check_groups),
    "deletionRules together with shutdownAfterJobFinishes": (
        "rayjob-embed.yaml", "RayJob", _set(["spec", "shutdownAfterJobFinishes"], True),
        lambda d: deletion_errors(d["spec"], "mutated")),
    "no DeleteSelf rule (RayJobs pile up)": (
        "rayjob-reembed.yaml", "RayJob",
        lambda d: d["spec"]["deletionStrategy"].update(deletionRules=[
            r for r in d["spec"]["deletionStrategy"]["deletionRules"] if r["policy"] != "DeleteSelf"]),
        lambda d: deletion_errors(d["spec"], "mutated")),
}


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_a_mutated_manifest_is_rejected(name):
    file, kind, mutate, check = MUTATIONS[name]
    doc = _doc(file, kind)
    assert check(doc) == [], "the unmutated manifest passes"
    mutate(doc)
    errors = check(doc)
    print(f"{name}:", *errors, sep="\n    ")  # shown with -s: what a user would read
    assert errors, f"{name}: not detected"


@pytest.mark.parametrize("expr", ["0 24 * * *", "0 2 * *", "61 2 * * *", "0 2 * * MON-", "0 5-2 * * *",
                                  "TZ=UTC 0 2 * * *", "@daily"])
def test_a_broken_schedule_is_rejected(expr):
    with pytest.raises(ValueError):
        parse_cron(expr)


def test_schedule_parser_reads_lists_ranges_steps_and_names():
    minute, hour, dom, month, dow = parse_cron("*/15 1-5/2 1,15 JAN-MAR MON-FRI")
    assert minute == {0, 15, 30, 45} and hour == {1, 3, 5} and dom == {1, 15}
    assert month == {1, 2, 3} and dow == {1, 2, 3, 4, 5}


def test_k8s_models_reject_a_typo_inside_a_configmap_rayjob():
    cm = _doc("cronjob-nightly.yaml", "ConfigMap")
    inner = yaml.safe_load(cm["data"]["rayjob.yaml"])
    inner["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["envv"] = []
    errors = crd_errors(inner, "cm")
    assert any("envv" in e for e in errors), errors
    assert k8s_errors({"name": "x", "imagee": "y"}, "V1Container", "c")
