"""Offline checks of Kubernetes manifests: the upstream KubeRay CRD schemas, the Kubernetes API models, node fit.

Each check returns a list of error strings (empty: valid) so a test can assert on them, and a mutation test can
show that a broken manifest is rejected.

- ``crd_errors``: a KubeRay object against the ``openAPIV3Schema`` of its CRD, vendored in
  tests/data/kuberay/<version>/ (see SOURCE.md there). Strict like ``kubectl apply --validate=strict``: every
  object schema that does not say ``x-kubernetes-preserve-unknown-fields`` rejects fields it does not name (the
  API server would prune them and, with strict field validation, refuse the object).
- ``k8s_errors``: a built-in object (CronJob, ConfigMap, Role, ...) or an embedded pod template against the models
  of the ``kubernetes`` client (pydantic, unknown fields forbidden, required fields required); field names must be
  the API's camelCase names (the models would also take their Python names).
- ``fit_errors``: a pod's requests against NODE_TYPES of cluster/generate.py for the instance type it pins.
- ``ray_param_errors``: a Ray group's rayStartParams equal its pod's requests.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import re
import sys
import types
import typing
from decimal import Decimal
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes.client.models as k8s_models
import yaml
from kubernetes.utils import parse_quantity
from pydantic import BaseModel

from tests.support.paths import REPO

KUBERAY_VERSION = "v1.7.0"
CRD_DIR = REPO / "tests" / "data" / "kuberay" / KUBERAY_VERSION
CRD_FILES = {
    "RayCluster": "ray.io_rayclusters.yaml",
    "RayJob": "ray.io_rayjobs.yaml",
    "RayCronJob": "ray.io_raycronjobs.yaml",
}
BUILTIN_GROUPS = {"v1", "batch/v1", "rbac.authorization.k8s.io/v1"}


def load_generator() -> types.ModuleType:
    """cluster/generate.py as a module (it is a script, not part of the medembed package)."""
    name = "medembed_cluster_generate"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "cluster" / "generate.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


# --------------------------------------------------------------------------------------------- KubeRay CRDs


def _strict(node: Any) -> None:
    """In place: every object schema without x-kubernetes-preserve-unknown-fields rejects unnamed fields."""
    if isinstance(node, list):
        for item in node:
            _strict(item)
        return
    if not isinstance(node, dict):
        return
    if (node.get("type") == "object" or "properties" in node) and "additionalProperties" not in node \
            and not node.get("x-kubernetes-preserve-unknown-fields"):
        node["additionalProperties"] = False
    for key, value in node.items():
        if key == "properties":
            for sub in value.values():
                _strict(sub)
        elif key in ("items", "additionalProperties", "anyOf", "allOf", "oneOf", "not"):
            _strict(value)


@functools.cache
@functools.cache
def crd(kind: str) -> dict:
    """The vendored CRD of ``kind``, parsed once (about 1 MB of YAML each; callers must not change it)."""
    path = CRD_DIR / CRD_FILES[kind]
    return yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


@functools.cache
def crd_validator(kind: str, version: str = "v1") -> jsonschema.protocols.Validator:
    doc = crd(kind)
    assert doc["spec"]["names"]["kind"] == kind, doc["spec"]["names"]
    served = {v["name"]: v for v in doc["spec"]["versions"]}
    schema = copy.deepcopy(served[version]["schema"]["openAPIV3Schema"])
    # metadata is the API server's ObjectMeta (the CRD says only `type: object`): checked with the k8s model
    schema["properties"]["metadata"] = {"type": "object"}
    _strict(schema)
    schema["properties"]["metadata"] = {"type": "object"}
    return jsonschema.Draft7Validator(schema)


def crd_errors(doc: dict, where: str = "") -> list[str]:
    kind = doc.get("kind")
    if kind not in CRD_FILES:
        return [f"{where}: kind {kind!r} has no vendored KubeRay CRD"]
    group, _, version = str(doc.get("apiVersion", "")).partition("/")
    if group != crd(kind)["spec"]["group"]:
        return [f"{where}: apiVersion {doc.get('apiVersion')!r}, the CRD's group is {crd(kind)['spec']['group']}"]
    errors = [f"{where}: {'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
              for e in crd_validator(kind, version).iter_errors(doc)]
    errors += k8s_errors(doc.get("metadata", {}), "V1ObjectMeta", f"{where}: metadata")
    for path, template in pod_templates(doc):
        errors += k8s_errors(template, "V1PodTemplateSpec", f"{where}: {path}")
    return errors


def pod_templates(doc: dict) -> list[tuple[str, dict]]:
    """(path, template) of every pod template of a KubeRay object (RayCluster, RayJob, RayCronJob)."""
    spec = doc.get("spec", {})
    if doc.get("kind") == "RayCronJob":
        spec, prefix = spec.get("jobTemplate", {}), "spec.jobTemplate."
    else:
        prefix = "spec."
    out = []
    if doc.get("kind") in ("RayJob", "RayCronJob"):
        if "submitterPodTemplate" in spec:
            out.append((f"{prefix}submitterPodTemplate", spec["submitterPodTemplate"]))
        spec, prefix = spec.get("rayClusterSpec", {}), f"{prefix}rayClusterSpec."
    if "template" in spec.get("headGroupSpec", {}):
        out.append((f"{prefix}headGroupSpec.template", spec["headGroupSpec"]["template"]))
    for i, g in enumerate(spec.get("workerGroupSpecs", [])):
        if "template" in g:
            out.append((f"{prefix}workerGroupSpecs[{i}].template", g["template"]))
    return out


# ------------------------------------------------------------------------------------- Kubernetes API models


def _model(name: str) -> type[BaseModel]:
    return getattr(k8s_models, name)


def _inner_models(annotation: Any) -> list[tuple[str, type[BaseModel]]]:
    """('', M) for a model field, ('[]', M) for a list of models, ('{}', M) for a map of models."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [("", annotation)]
    if origin in (typing.Union, types.UnionType):
        return [m for a in args if a is not type(None) for m in _inner_models(a)]
    if origin is list and args:
        return [("[]", m) for _, m in _inner_models(args[0])]
    if origin is dict and len(args) == 2:
        return [("{}", m) for _, m in _inner_models(args[1])]
    return []


def _camel_case_errors(cls: type[BaseModel], data: Any, path: str) -> list[str]:
    """Field names must be the API's (camelCase) names: the pydantic models also accept their Python names."""
    if not isinstance(data, dict):
        return []
    errors = []
    by_api_name = {(f.serialization_alias or f.alias or name): f for name, f in cls.model_fields.items()}
    for key, value in data.items():
        field = by_api_name.get(key)
        if field is None:
            if key in cls.model_fields:
                errors.append(f"{path}.{key}: not an API field name (Python name of one)")
            continue  # pydantic reports unknown fields
        for kind, inner in _inner_models(field.annotation):
            if kind == "":
                errors += _camel_case_errors(inner, value, f"{path}.{key}")
            elif kind == "[]" and isinstance(value, list):
                for i, item in enumerate(value):
                    errors += _camel_case_errors(inner, item, f"{path}.{key}[{i}]")
            elif kind == "{}" and isinstance(value, dict):
                for k, item in value.items():
                    errors += _camel_case_errors(inner, item, f"{path}.{key}.{k}")
    return errors


def k8s_errors(data: Any, model: str, where: str = "") -> list[str]:
    """``data`` against the kubernetes client's model ``model`` (e.g. V1PodTemplateSpec): strict."""
    cls = _model(model)
    errors = _camel_case_errors(cls, data, where)
    try:
        cls.model_validate(data)
    except Exception as e:  # pydantic.ValidationError: one line per problem, with its field path
        errors += [f"{where}: {'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()]
    return errors


def builtin_model(doc: dict) -> str:
    """The kubernetes client model of a built-in object (apiVersion v1, batch/v1, rbac.../v1)."""
    version = str(doc.get("apiVersion", ""))
    assert version in BUILTIN_GROUPS, f"{doc.get('kind')}: apiVersion {version!r} not handled"
    return f"V1{doc['kind']}"


def manifest_errors(doc: dict, where: str = "") -> list[str]:
    """Any manifest document: KubeRay kinds against their CRD, built-in kinds against the Kubernetes models."""
    if doc.get("kind") in CRD_FILES:
        return crd_errors(doc, where)
    return k8s_errors(doc, builtin_model(doc), where)


# --------------------------------------------------------------------------------------------- node fitting


def quantity(value: Any) -> Decimal:
    return parse_quantity(value)


def pod_requests(pod_spec: dict) -> dict[str, Decimal]:
    """Summed requests of a pod's containers (init containers run before them and are not added)."""
    total: dict[str, Decimal] = {}
    for c in pod_spec.get("containers", []):
        for name, value in c.get("resources", {}).get("requests", {}).items():
            total[name] = total.get(name, Decimal(0)) + quantity(value)
    return total


def fit_errors(pod_spec: dict, where: str = "") -> list[str]:
    """A pod pinned to an instance type fits what NODE_TYPES says such a node can schedule; requests = limits."""
    gen = load_generator()
    label = gen.INSTANCE_TYPE_LABEL
    pinned = pod_spec.get("nodeSelector", {}).get(label)
    if pinned is None:
        return [f"{where}: no nodeSelector {label}: the pod may land on any node"]
    node = gen.NODE_TYPES.get(pinned)
    if node is None:
        return [f"{where}: instance type {pinned} is not in NODE_TYPES (cluster/generate.py)"]
    errors = []
    for c in pod_spec.get("containers", []):
        res = c.get("resources", {})
        if res.get("requests") != res.get("limits"):
            errors.append(f"{where}: container {c.get('name')}: requests {res.get('requests')} != limits "
                          f"{res.get('limits')}")
    req = pod_requests(pod_spec)
    cpu_m = req.get("cpu", Decimal(0)) * 1000
    mem_mib = req.get("memory", Decimal(0)) / 2**20
    gpus = req.get(gen.GPU_RESOURCE, Decimal(0))
    if cpu_m > node.schedulable_cpu_m:
        errors.append(f"{where}: requests {cpu_m:g}m CPU, a {pinned} node schedules {node.schedulable_cpu_m}m "
                      f"(allocatable {node.allocatable_cpu_m}m less DaemonSets)")
    if mem_mib > node.schedulable_memory_mib:
        errors.append(f"{where}: requests {mem_mib:g}Mi memory, a {pinned} node schedules "
                      f"{node.schedulable_memory_mib}Mi (allocatable {node.allocatable_memory_mib}Mi less DaemonSets)")
    if gpus > node.gpus:
        errors.append(f"{where}: requests {gpus} GPUs, a {pinned} node has {node.gpus}")
    if node.gpus and not any(t.get("key") == gen.GPU_RESOURCE for t in pod_spec.get("tolerations", [])):
        errors.append(f"{where}: pinned to GPU type {pinned} without a {gen.GPU_RESOURCE} toleration")
    for vol in pod_spec.get("volumes", []):
        limit = vol.get("emptyDir", {}).get("sizeLimit")
        if vol.get("emptyDir", {}).get("medium") == "Memory" and limit and quantity(limit) > req.get("memory", 0):
            errors.append(f"{where}: in-memory volume {vol['name']} ({limit}) exceeds the pod's memory")
    return errors


def ray_param_errors(group: dict, where: str = "", head: bool = False) -> list[str]:
    """Ray's --num-cpus/--num-gpus/--memory of a group equal its pod's requests (the head: num-cpus 0)."""
    params = group.get("rayStartParams", {})
    req = pod_requests(group["template"]["spec"])
    gpu_resource = load_generator().GPU_RESOURCE
    want = {
        "num-cpus": Decimal(0) if head else req.get("cpu", Decimal(0)),
        "num-gpus": req.get(gpu_resource, Decimal(0)),
        "memory": req.get("memory", Decimal(0)),
    }
    errors = []
    for key, value in want.items():
        if key not in params and not (key == "num-gpus" and value == 0):
            errors.append(f"{where}: rayStartParams has no {key} (the pod requests {value})")
        elif key in params and Decimal(params[key]) != value:
            errors.append(f"{where}: rayStartParams {key}={params[key]} but the pod requests {value}")
    return errors


# ----------------------------------------------------------------------------------------------------- cron

_CRON_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12),
                ("day of week", 0, 7))
_NAMES = {3: ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"],
          4: ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]}


def parse_cron(expr: str) -> list[set[int]]:
    """The five fields of a standard cron expression (as CronJob and RayCronJob take it) as sets of values.

    Raises ValueError naming the field. ``*``, ``a``, ``a-b``, ``*/n``, ``a-b/n``, ``a/n`` and lists; month
    and weekday names; no macros (``@daily``) and no ``TZ=`` prefix (use ``timeZone``).
    """
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(f"{expr!r}: {len(fields)} fields, cron takes 5 (minute hour day-of-month month weekday)")
    out = []
    for i, (text, (name, lo, hi)) in enumerate(zip(fields, _CRON_FIELDS)):
        values: set[int] = set()
        for part in text.split(","):
            m = re.fullmatch(r"(\*|\w+(?:-\w+)?)(?:/(\d+))?", part)
            if not m:
                raise ValueError(f"{expr!r}: {name} field {text!r} is not cron syntax")
            base, step = m.group(1), int(m.group(2) or 1)
            if step < 1:
                raise ValueError(f"{expr!r}: {name} step must be >= 1")

            def value(tok: str, _i: int = i, _name: str = name, _lo: int = lo, _hi: int = hi) -> int:
                names = _NAMES.get(_i, [])
                if tok.upper() in names:
                    return names.index(tok.upper()) + (1 if _i == 3 else 0)
                if not tok.isdigit() or not _lo <= int(tok) <= _hi:
                    raise ValueError(f"{expr!r}: {_name} value {tok!r} outside {_lo}-{_hi}")
                return int(tok)

            if base == "*":
                start, end = lo, hi
            elif "-" in base:
                start, end = (value(t) for t in base.split("-"))
                if start > end:
                    raise ValueError(f"{expr!r}: {name} range {base} is backwards")
            else:
                start = value(base)
                end = hi if m.group(2) else start
            values.update(range(start, end + 1, step))
        out.append(values)
    return out


def read_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]
