"""Write cluster/kuberay/*.yaml from one source: the node types, the pod specs and the common RayJob fields.

    python cluster/generate.py            # rewrite cluster/kuberay/*.yaml
    python cluster/generate.py --check    # exit 1 (naming the files) when a committed file differs

Edit this file, never the YAML: tests/unit/deploy/test_kuberay_manifests.py fails when a committed manifest
is not byte-identical to what this script writes, validates every manifest against the vendored upstream
KubeRay CRDs (tests/data/kuberay/) and the Kubernetes API models, and checks every pod's requests against
NODE_TYPES below.

Sizing. A pod pinned to an instance type must fit that type's *allocatable* resources (what the kubelet
offers after its own reserve) less what the node's DaemonSets take. NODE_TYPES computes allocatable with the
formulas of the EKS AMIs (AL2 bootstrap.sh, AL2023 nodeadm):
  kube-reserved CPU    6% of the 1st core, 1% of the 2nd, 0.5% of the 3rd and 4th, 0.25% of every further one
  kube-reserved memory 255 MiB + 11 MiB per pod the node may run (max pods from its ENIs: 58 on *.xlarge
                       and *.2xlarge types with the VPC CNI)
  eviction threshold   memory.available < 100 MiB
The node's memory *capacity* is below the nominal size (kernel and firmware: an m5.xlarge reports about
15.2 of its 16 GiB); we take 94% of nominal. DaemonSets (aws-node, kube-proxy, EBS CSI node, NVIDIA device
plugin on GPU nodes, a log agent) are budgeted at 500m CPU and 1 GiB per node. A pod's requests equal its
limits (Guaranteed QoS), and Ray's --num-cpus / --num-gpus / --memory (rayStartParams) equal the requests, so
Ray never schedules more than the pod was given.

GPU workers run on g6.2xlarge (1 NVIDIA L4, 8 vCPU, 32 GiB): every *_cluster config gives an embedder actor
embed.num_cpus: 4, and a g6.xlarge (4 vCPU, 16 GiB) offers only ~3.4 schedulable CPUs and ~13 GiB after the
reserve, so a 4-CPU actor could never be placed there. The 2xlarge costs ~20% more per hour and leaves room
for training's data loading. CPU workers and the head run on m7i.2xlarge.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

OUT = Path(__file__).resolve().parent / "kuberay"
IMAGE = "ghcr.io/medembed/medembed:0.1.0"
RAY_VERSION = "2.60.0"
# registry.k8s.io publishes a kubectl image per Kubernetes release (v1.28 on); its entrypoint is kubectl, no shell.
KUBECTL_IMAGE = "registry.k8s.io/kubectl:v1.33.5"
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
GPU_RESOURCE = "nvidia.com/gpu"
SECRET = "medembed-credentials"
SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "OPENAI_API_KEY", "HF_TOKEN")
NIGHTLY_SCHEDULE = "0 2 * * *"
NIGHTLY_TIME_ZONE = "Etc/UTC"
NIGHTLY_SCHEDULER_LABEL = "medembed.io/nightly-scheduler"
EXIT_LEASE_HELD = 3  # medembed.index.lease.EXIT_LEASE_HELD (a test checks they agree)
MIN_KUBERAY = "1.5.1"  # authOptions (token auth) arrived in 1.5.1; a 1.5.0 operator drops or rejects it

GIB = 1024**3
MIB = 1024**2

# ----------------------------------------------------------------------------------------------- node types

DAEMONSET_CPU_M = 500
DAEMONSET_MEMORY_MIB = 1024
MEMORY_CAPACITY_FRACTION = 0.94
EVICTION_MEMORY_MIB = 100


@dataclass(frozen=True)
class NodeType:
    """An EC2 instance type and what a pod pinned to it may request."""

    name: str
    vcpu: int
    memory_gib: int
    gpus: int
    max_pods: int
    gpu_model: str = ""

    @property
    def kube_reserved_cpu_m(self) -> int:
        steps = [(1, 60.0), (1, 10.0), (2, 5.0)]  # (cores, millicores reserved per core)
        left, reserved = self.vcpu, 0.0
        for cores, per in steps:
            take = min(left, cores)
            reserved += take * per
            left -= take
        return int(reserved + left * 2.5)

    @property
    def kube_reserved_memory_mib(self) -> int:
        return 255 + 11 * self.max_pods

    @property
    def allocatable_cpu_m(self) -> int:
        return self.vcpu * 1000 - self.kube_reserved_cpu_m

    @property
    def allocatable_memory_mib(self) -> int:
        capacity = int(self.memory_gib * 1024 * MEMORY_CAPACITY_FRACTION)
        return capacity - self.kube_reserved_memory_mib - EVICTION_MEMORY_MIB

    @property
    def schedulable_cpu_m(self) -> int:
        """Allocatable less the DaemonSets: what the pods of one medembed node may request together."""
        return self.allocatable_cpu_m - DAEMONSET_CPU_M

    @property
    def schedulable_memory_mib(self) -> int:
        return self.allocatable_memory_mib - DAEMONSET_MEMORY_MIB


NODE_TYPES: dict[str, NodeType] = {t.name: t for t in (
    NodeType("m7i.2xlarge", vcpu=8, memory_gib=32, gpus=0, max_pods=58),
    NodeType("g6.xlarge", vcpu=4, memory_gib=16, gpus=1, max_pods=58, gpu_model="L4"),
    NodeType("g6.2xlarge", vcpu=8, memory_gib=32, gpus=1, max_pods=58, gpu_model="L4"),
)}


@dataclass(frozen=True)
class Pool:
    """A pod shape pinned to one node type: one pod per node."""

    node_type: str
    cpu: int
    memory_gib: int
    gpus: int = 0
    shm_gib: int = 8  # /dev/shm (Ray's object store); counted against the pod's memory


HEAD = Pool("m7i.2xlarge", cpu=4, memory_gib=16)
GPU = Pool("g6.2xlarge", cpu=7, memory_gib=26, gpus=1)
CPU = Pool("m7i.2xlarge", cpu=7, memory_gib=26)

# ----------------------------------------------------------------------------------------------------- jobs


@dataclass(frozen=True)
class Job:
    command: str  # `medembed <command>`, file rayjob-<command>.yaml
    driver: str  # jobs/<driver>
    config: str  # shipped config (medembed/configs/<config>.yaml)
    summary: str
    deadline_s: int = 6 * 3600
    gpu_max: int = 4
    cpu_min: int = 0
    cpu_max: int = 2
    lease_skip: bool = False  # a held writer lease (exit 3) ends the job as succeeded: nothing to do


JOBS = (
    Job("embed", "embed.py", "embed_cluster",
        "Embed a corpus into a LanceDB table on S3 (re-runs only embed new or changed notes).",
        gpu_max=8, cpu_max=4),
    Job("evaluate", "evaluate.py", "evaluate_cluster",
        "Retrieval metrics of base and candidate models on BEIR sets staged on S3."),
    Job("generate-pairs", "generate_pairs.py", "generate_pairs_cluster",
        "Synthetic (query, passage) pairs from an external OpenAI-compatible LLM endpoint; CPU workers only.",
        deadline_s=12 * 3600, gpu_max=0, cpu_min=1, cpu_max=4),
    Job("mine-negatives", "mine_negatives.py", "mine_negatives_cluster",
        "Hard negatives for the pairs on GPU workers; triplets on S3."),
    Job("pipeline", "pipeline.py", "pipeline_cluster",
        "generate_pairs -> mine_negatives -> train -> evaluate -> promote (gate) -> embed; completed stages are "
        "reused on retry.",
        deadline_s=24 * 3600, gpu_max=8, cpu_min=1, cpu_max=4),
    Job("reembed", "reembed.py", "reembed_cluster",
        "Nightly incremental re-embed of the served table (the nightly CronJob or RayCronJob runs this).",
        gpu_max=8, cpu_max=4, lease_skip=True),
    Job("train", "train.py", "train_cluster",
        "Ray Train V2 fine-tuning, one GPU per worker; checkpoints on S3, a retry resumes them.",
        deadline_s=24 * 3600),
)
NIGHTLY = next(j for j in JOBS if j.command == "reembed")

# What happens to a finished RayJob (KubeRay deletionStrategy.deletionRules; TTLs count from the job's end and
# must grow Workers <= Cluster <= Self). Succeeded: the Ray cluster goes at once (state is on S3; the submitter
# pod's log, `kubectl logs job/<rayjob>`, stays), the RayJob a day later. Failed (the job, or the deployment:
# deadline, submission) after all backoffLimit retries: the cluster stays an hour for its dashboard and logs,
# the RayJob a week. Nightly RayJobs therefore never pile up.
DAY = 24 * 3600
DELETION_RULES = [
    ({"jobStatus": "SUCCEEDED"}, "DeleteCluster", 0),
    ({"jobStatus": "SUCCEEDED"}, "DeleteSelf", DAY),
    ({"jobStatus": "FAILED"}, "DeleteCluster", 3600),
    ({"jobStatus": "FAILED"}, "DeleteSelf", 7 * DAY),
    ({"jobDeploymentStatus": "Failed"}, "DeleteCluster", 3600),
    ({"jobDeploymentStatus": "Failed"}, "DeleteSelf", 7 * DAY),
]

# ------------------------------------------------------------------------------------------------ pod specs


def _quantity_gi(gib: int) -> str:
    return f"{gib}Gi"


def resources(pool: Pool) -> dict[str, Any]:
    amount: dict[str, str] = {"cpu": str(pool.cpu), "memory": _quantity_gi(pool.memory_gib)}
    if pool.gpus:
        amount[GPU_RESOURCE] = str(pool.gpus)
    return {"requests": dict(amount), "limits": dict(amount)}


def ray_start_params(pool: Pool, head: bool) -> dict[str, str]:
    """Ray's logical resources = the pod's requests (the head advertises no CPUs: it runs no tasks)."""
    params = {"num-cpus": "0" if head else str(pool.cpu)}
    if pool.gpus:
        params["num-gpus"] = str(pool.gpus)
    params["memory"] = str(pool.memory_gib * GIB)
    if head:
        params["dashboard-host"] = "0.0.0.0"  # inside the pod; the Service is ClusterIP and token auth is on
    return params


def env() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"name": key, "valueFrom": {"secretKeyRef": {"name": SECRET, "key": key, "optional": True}}}
        for key in SECRET_KEYS
    ]
    out += [{"name": "AWS_REGION", "value": "us-east-1"}, {"name": "HF_HUB_OFFLINE", "value": "1"}]
    return out


def pod_template(pool: Pool, head: bool, pool_label: str | None) -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": "medembed"}
    if pool_label:
        labels["medembed.io/pool"] = pool_label
    container: dict[str, Any] = {
        "name": "ray-head" if head else "ray-worker",
        "image": IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "env": env(),
        "resources": resources(pool),
        "volumeMounts": [{"name": "shm", "mountPath": "/dev/shm"}],
    }
    if head:
        container["ports"] = [
            {"containerPort": 6379, "name": "gcs"},
            {"containerPort": 8265, "name": "dashboard"},
            {"containerPort": 10001, "name": "client"},
        ]
    spec: dict[str, Any] = {
        "containers": [container],
        "volumes": [{"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": _quantity_gi(pool.shm_gib)}}],
        "nodeSelector": {INSTANCE_TYPE_LABEL: pool.node_type},
    }
    if pool.gpus:
        spec["tolerations"] = [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]
    return {"metadata": {"labels": labels}, "spec": spec}


def worker_group(name: str, pool: Pool, replicas: int, min_replicas: int, max_replicas: int) -> dict[str, Any]:
    return {
        "groupName": name,
        "replicas": replicas,
        "minReplicas": min_replicas,
        "maxReplicas": max_replicas,
        "rayStartParams": ray_start_params(pool, head=False),
        "template": pod_template(pool, head=False, pool_label=name),
    }


def ray_cluster_spec(gpu_max: int, cpu_min: int, cpu_max: int) -> dict[str, Any]:
    return {
        "rayVersion": RAY_VERSION,
        "enableInTreeAutoscaling": True,
        "autoscalerOptions": {"idleTimeoutSeconds": 600, "upscalingMode": "Default"},
        "authOptions": {"mode": "token"},
        "headGroupSpec": {
            "serviceType": "ClusterIP",
            "enableIngress": False,
            "rayStartParams": ray_start_params(HEAD, head=True),
            "template": pod_template(HEAD, head=True, pool_label=None),
        },
        "workerGroupSpecs": [
            worker_group("gpu", GPU, 0, 0, gpu_max),
            worker_group("cpu", CPU, cpu_min, cpu_min, cpu_max),
        ],
    }


def entrypoint(job: Job) -> str:
    cmd = f"python jobs/{job.driver} --config {job.config}"
    if not job.lease_skip:
        return cmd
    # Another run holding the table's writer lease (a second scheduler applied by mistake, a manual run) is not a
    # failure: nothing to do tonight, so no RayJob retry either (KubeRay retries any failed attempt). The script
    # is ONE quoted `sh -c` word: KubeRay pastes the entrypoint unquoted into the submitter's bash line
    # (`ray job submit ... -- <entrypoint> ; fi ; ray job logs ...`), so a bare `||` would apply to `ray job
    # submit` there; `ray job submit` shlex-joins the words again and Ray runs them with /bin/sh -c.
    script = (f"{cmd} || {{ rc=$?; if [ $rc -eq {EXIT_LEASE_HELD} ]; then "
              f"echo medembed: another run holds the writer lease, exit {EXIT_LEASE_HELD}: skipped; exit 0; fi; "
              f"exit $rc; }}")
    return f"sh -c {shlex.quote(script)}"


def rayjob_spec(job: Job) -> dict[str, Any]:
    return {
        "entrypoint": entrypoint(job),
        "runtimeEnvYAML": ('working_dir: /home/ray/medembed\n'
                           'env_vars:\n  TOKENIZERS_PARALLELISM: "false"\n  HF_HUB_OFFLINE: "1"\n'),
        "backoffLimit": 2,
        "activeDeadlineSeconds": job.deadline_s,
        "submissionMode": "K8sJobMode",
        "deletionStrategy": {"deletionRules": [
            {"condition": {**cond, "ttlSeconds": ttl}, "policy": policy} for cond, policy, ttl in DELETION_RULES
        ]},
        "rayClusterSpec": ray_cluster_spec(job.gpu_max, job.cpu_min, job.cpu_max),
    }


def job_labels(job: Job) -> dict[str, str]:
    return {"app.kubernetes.io/name": "medembed", "medembed.io/job": job.command}


# ------------------------------------------------------------------------------------------------ documents

REQUIRES = (f"KubeRay >= {MIN_KUBERAY} (authOptions token auth) with the RayJobDeletionPolicy feature\n"
            "gate (deletionRules; on by default from 1.6.0, on 1.5.x set --feature-gates=RayJobDeletionPolicy=true)")


def raycluster() -> tuple[str, list[dict]]:
    head = f"""\
Long-lived RayCluster for interactive use and `medembed submit`:
  kubectl apply -f cluster/kuberay/raycluster.yaml
  kubectl port-forward svc/medembed-head-svc 8265:8265      # dashboard + job API on localhost only
  export RAY_AUTH_TOKEN=$(kubectl get secret medembed -o jsonpath='{{.data.auth_token}}' | base64 -d)
  medembed submit embed --address http://127.0.0.1:8265 --config embed_cluster
Requires KubeRay >= {MIN_KUBERAY} (authOptions). Worker groups: gpu ({GPU.node_type}: 1 GPU, {GPU.cpu} CPUs, \
{GPU.memory_gib}Gi per pod: one embedder actor or one Ray Train worker each) and cpu ({CPU.node_type}: \
{CPU.cpu} CPUs, {CPU.memory_gib}Gi: reading, chunking, pair generation against an external LLM). Head runs no \
tasks (num-cpus 0). Credentials: Secret {SECRET} (optional keys), see cluster/README.md."""
    doc = {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": "medembed", "labels": {"app.kubernetes.io/name": "medembed"}},
        "spec": ray_cluster_spec(gpu_max=8, cpu_min=1, cpu_max=4),
    }
    return head, [doc]


def rayjob(job: Job) -> tuple[str, list[dict]]:
    head = f"""\
RayJob: `medembed {job.command}` ({job.summary})
  kubectl apply -f cluster/kuberay/rayjob-{job.command}.yaml
Requires {REQUIRES}.
Secret: see cluster/README.md.
Each attempt (backoffLimit retries) starts a NEW Ray cluster: the job resumes from S3 (config {job.config}),
never from the head's disk. The dashboard/job API stays inside the cluster (ClusterIP service, token auth).
Finished: deletionRules remove the Ray cluster and later the RayJob itself (see cluster/generate.py)."""
    if job.lease_skip:
        head += f"\nA held writer lease (exit {EXIT_LEASE_HELD}) ends the job as succeeded (skipped), not retried."
    doc = {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": {"name": f"medembed-{job.command}", "labels": job_labels(job)},
        "spec": rayjob_spec(job),
    }
    return head, [doc]


def nightly_labels() -> dict[str, str]:
    return {**job_labels(NIGHTLY), NIGHTLY_SCHEDULER_LABEL: "true"}


def cronjob_nightly() -> tuple[str, list[dict]]:
    head = f"""\
DEFAULT nightly scheduler: a plain Kubernetes CronJob that creates a RayJob (generateName medembed-nightly-)
from the template in the ConfigMap below, every night at 02:00 {NIGHTLY_TIME_ZONE}. Needs no feature gate.
Apply exactly ONE nightly scheduler: this file or raycronjob-nightly.yaml (the alternative), never both:
  kubectl get cronjobs,raycronjobs -l {NIGHTLY_SCHEDULER_LABEL}    # must list one object
Requires {REQUIRES}.
concurrencyPolicy Forbid: no second creator pod while one runs. Cleanup: the CronJob keeps 3 finished Jobs,
each Job is deleted a day after it ends; each RayJob (it has no owner) deletes its Ray cluster and then itself
(deletionRules). A second run that finds the writer lease held exits {EXIT_LEASE_HELD}, which the entrypoint
turns into success (skipped), so it is not retried. The kubectl pod may only create/get/list RayJobs (Role)."""
    spec = rayjob_spec(NIGHTLY)
    template = {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": {"generateName": "medembed-nightly-", "labels": job_labels(NIGHTLY)},
        "spec": spec,
    }
    name = "medembed-nightly"
    docs = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": name},
         "rules": [{"apiGroups": ["ray.io"], "resources": ["rayjobs"], "verbs": ["create", "get", "list"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": name},
         "subjects": [{"kind": "ServiceAccount", "name": name}],
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"{name}-rayjob"},
         "data": {"rayjob.yaml": dump_doc(template)}},
        {"apiVersion": "batch/v1", "kind": "CronJob",
         "metadata": {"name": name, "labels": nightly_labels()},
         "spec": {
             "schedule": NIGHTLY_SCHEDULE,
             "timeZone": NIGHTLY_TIME_ZONE,
             "concurrencyPolicy": "Forbid",
             "startingDeadlineSeconds": 3600,
             "successfulJobsHistoryLimit": 3,
             "failedJobsHistoryLimit": 3,
             "jobTemplate": {"spec": {
                 "backoffLimit": 2,
                 "activeDeadlineSeconds": 600,
                 "ttlSecondsAfterFinished": DAY,
                 "template": {"spec": {
                     "serviceAccountName": name,
                     "restartPolicy": "OnFailure",
                     "containers": [{
                         "name": "create-rayjob",
                         "image": KUBECTL_IMAGE,
                         "command": ["kubectl", "create", "-f", "/manifests/rayjob.yaml"],
                         "resources": {"requests": {"cpu": "50m", "memory": "64Mi"},
                                       "limits": {"cpu": "200m", "memory": "128Mi"}},
                         "securityContext": {"allowPrivilegeEscalation": False},
                         "volumeMounts": [{"name": "manifests", "mountPath": "/manifests", "readOnly": True}],
                     }],
                     "volumes": [{"name": "manifests", "configMap": {"name": f"{name}-rayjob"}}],
                 }},
             }},
         }},
    ]
    return head, docs


def raycronjob_nightly() -> tuple[str, list[dict]]:
    head = f"""\
ALTERNATIVE nightly scheduler (the default is cronjob-nightly.yaml): the same nightly re-embed as a KubeRay
RayCronJob. ALPHA since KubeRay 1.6, disabled by default; enable the operator's feature gate (helm:
--set featureGates[0].name=RayCronJob --set featureGates[0].enabled=true, i.e. --feature-gates=RayCronJob=true).
Apply exactly ONE nightly scheduler: delete the CronJob first (kubectl delete -f cluster/kuberay/cronjob-nightly.yaml):
  kubectl get cronjobs,raycronjobs -l {NIGHTLY_SCHEDULER_LABEL}    # must list one object
Every night at 02:00 {NIGHTLY_TIME_ZONE} a new RayJob (owned by this RayCronJob, and a new Ray cluster) runs
`medembed reembed` with reembed_cluster; its deletionRules remove the cluster and then the RayJob. A held
writer lease (exit {EXIT_LEASE_HELD}) ends the job as succeeded (skipped), not retried."""
    doc = {
        "apiVersion": "ray.io/v1",
        "kind": "RayCronJob",
        "metadata": {"name": "medembed-nightly", "labels": nightly_labels()},
        "spec": {"schedule": NIGHTLY_SCHEDULE, "timeZone": NIGHTLY_TIME_ZONE, "jobTemplate": rayjob_spec(NIGHTLY)},
    }
    return head, [doc]


# ---------------------------------------------------------------------------------------------------- output


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else ('"' if "'" in value and '"' not in value else None)
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump_doc(doc: dict) -> str:
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=4096)


def render_file(header: str, docs: list[dict]) -> str:
    lines = ["# Generated by cluster/generate.py: edit that file, then run `python cluster/generate.py`."]
    for line in header.splitlines():  # commands (indented) stay whole, prose wraps at 115 columns
        wrapped = [line] if line.startswith(" ") else textwrap.wrap(line, 113, break_on_hyphens=False, break_long_words=False) or [""]
        lines += [f"# {w}".rstrip() for w in wrapped]
    return "\n".join(lines) + "\n" + "---\n".join(dump_doc(d) for d in docs)


def render() -> dict[str, str]:
    """File name (in cluster/kuberay/) -> its text."""
    files = {"raycluster.yaml": render_file(*raycluster())}
    for job in JOBS:
        files[f"rayjob-{job.command}.yaml"] = render_file(*rayjob(job))
    files["cronjob-nightly.yaml"] = render_file(*cronjob_nightly())
    files["raycronjob-nightly.yaml"] = render_file(*raycronjob_nightly())
    return files


def stale(out: Path = OUT) -> list[str]:
    """Files that differ from what render() writes, or that render() does not write."""
    files = render()
    bad = [n for n, text in files.items() if not (out / n).is_file() or (out / n).read_text() != text]
    return sorted(bad + [p.name for p in out.glob("*.yaml") if p.name not in files])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if a committed manifest is not current")
    args = ap.parse_args(argv)
    if args.check:
        bad = stale()
        if bad:
            sys.stderr.write(f"stale (run python cluster/generate.py): {', '.join(bad)}\n")
            return 1
        return 0
    OUT.mkdir(exist_ok=True)
    files = render()
    for p in OUT.glob("*.yaml"):
        if p.name not in files:
            p.unlink()
    for name, text in files.items():
        (OUT / name).write_text(text)
    sys.stdout.write(f"wrote {len(files)} files to {OUT}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
