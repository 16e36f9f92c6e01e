"""ray_cluster.yaml: valid for the installed Ray's cluster launcher, and sized for the shipped cluster configs."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml

from medembed.app.registry import by_name
from medembed.config import load_config
from tests.support.paths import REPO
from tests.unit.deploy.schemas import load_generator

CONFIG = yaml.safe_load((REPO / "ray_cluster.yaml").read_text())
SCHEMA_PATH = Path(ray.__file__).parent / "autoscaler" / "ray-schema.json"


def node_types() -> dict[str, dict]:
    return CONFIG["available_node_types"]


def gpu_types() -> dict[str, dict]:
    return {k: v for k, v in node_types().items() if v["resources"].get("GPU", 0) > 0}


def test_validates_against_the_schema_ray_ships():
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.validate(CONFIG, schema)  # raises with the offending path
    broken = {**CONFIG, "docker": {**CONFIG["docker"], "imagee": "typo"}}
    with pytest.raises(jsonschema.ValidationError):  # the schema is strict: the check can fail
        jsonschema.validate(broken, schema)


def test_node_types_cpu_head_gpu_and_cpu_workers():
    types = node_types()
    head = types[CONFIG["head_node_type"]]
    assert head["resources"].get("CPU") == 0 and not head["resources"].get("GPU"), "the head runs no tasks"
    gpus = gpu_types()
    assert gpus, "a GPU worker type for embedding and training"
    for t in gpus.values():
        assert re.match(r"g[56]\.", t["node_config"]["InstanceType"]), t["node_config"]["InstanceType"]
    cpu_workers = [k for k, v in types.items() if k != CONFIG["head_node_type"] and not v["resources"].get("GPU")]
    assert cpu_workers, "a CPU worker type for ingestion and pair generation"
    for name, t in types.items():
        if name == CONFIG["head_node_type"]:
            continue
        assert 0 <= t["min_workers"] <= t["max_workers"], name
    assert sum(t["max_workers"] for n, t in types.items() if n != CONFIG["head_node_type"]) <= CONFIG["max_workers"]


AMI = re.compile(r"ami-[0-9a-f]{8,17}|resolve:ssm:/aws/service/deeplearning/ami/x86_64/[a-z0-9.-]*gpu[a-z0-9.-]*/latest/ami-id")


def node_errors(config: dict) -> list[str]:
    """Every node type boots a current GPU AMI (not Ray's built-in DEFAULT_AMI), has a root disk for the
    multi-GB image, and advertises no more CPUs/GPUs than its instance type has (NODE_TYPES)."""
    from ray.autoscaler._private.aws.config import DEFAULT_AMI

    table = load_generator().NODE_TYPES
    errors = []
    for name, t in config["available_node_types"].items():
        nc = t["node_config"]
        image = nc.get("ImageId", "")
        if not AMI.fullmatch(image):
            errors.append(f"{name}: ImageId {image!r} is neither an ami-... ID nor the DLAMI's SSM parameter")
        if image in DEFAULT_AMI.values():
            errors.append(f"{name}: ImageId {image} is Ray's old default Deep Learning AMI")
        disks = {d["DeviceName"]: d.get("Ebs", {}) for d in nc.get("BlockDeviceMappings", [])}
        if disks.get("/dev/sda1", {}).get("VolumeSize", 0) < 100:
            errors.append(f"{name}: no root disk (/dev/sda1) of >= 100 GB for the node image: {disks}")
        node = table.get(nc["InstanceType"])
        if node is None:
            errors.append(f"{name}: {nc['InstanceType']} is not in NODE_TYPES (cluster/generate.py)")
            continue
        if t["resources"].get("CPU", 0) > node.vcpu or t["resources"].get("GPU", 0) != node.gpus:
            errors.append(f"{name}: resources {t['resources']} but {node.name} has {node.vcpu} vCPU, {node.gpus} GPU")
    return errors


def test_every_node_type_has_a_current_gpu_ami_a_disk_and_fits_its_instance():
    assert node_errors(CONFIG) == []
    images = {t["node_config"]["ImageId"] for t in node_types().values()}
    assert len(images) == 1, f"one AMI for all node types (the same image runs everywhere): {images}"
    text = (REPO / "ray_cluster.yaml").read_text()
    assert "aws ssm get-parameter --region" in text and "PIN" in text  # how to pin it per region is documented


@pytest.mark.parametrize("node,mutate", [
    ("cpu_worker", lambda nc: nc.pop("BlockDeviceMappings")),
    ("gpu_worker", lambda nc: nc.pop("ImageId")),
    ("head", lambda nc: nc.update(ImageId="ami-0271ce88f6c03e149")),  # Ray's DEFAULT_AMI for us-east-1
    ("gpu_worker", lambda nc: nc.update(InstanceType="m7i.2xlarge")),  # GPU: 1 on an instance without a GPU
])
def test_a_node_type_without_ami_disk_or_room_is_rejected(node, mutate):
    broken = copy.deepcopy(CONFIG)
    mutate(broken["available_node_types"][node]["node_config"])
    errors = node_errors(broken)
    assert errors and all(e.startswith(f"{node}:") for e in errors), errors
    jsonschema.validate(broken, json.loads(SCHEMA_PATH.read_text()))  # Ray's schema alone would accept it


def test_image_and_setup_commands():
    assert CONFIG["docker"]["image"].endswith(":0.1.0")
    assert CONFIG["setup_commands"], "setup commands check the image"
    assert any("ray.__version__ == '2.60.0'" in c for c in CONFIG["setup_commands"])


def test_dashboard_and_job_api_bind_to_localhost():
    head = " ".join(CONFIG["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head
    assert "0.0.0.0" not in head
    assert "RAY_AUTH_MODE=token" in " ".join(CONFIG["docker"]["run_options"])


def test_no_credentials_in_the_launcher_config():
    text = (REPO / "ray_cluster.yaml").read_text()
    assert not re.search(r"(AWS_SECRET_ACCESS_KEY|AWS_ACCESS_KEY_ID|API_KEY|HF_TOKEN|RAY_AUTH_TOKEN)\s*[=:]", text)


@pytest.mark.parametrize("command,config", [("embed", "embed_cluster"), ("mine-negatives", "mine_negatives_cluster")])
def test_gpu_nodes_fit_the_embedder_actors_of_the_cluster_configs(command, config):
    cfg = load_config(by_name(command).config_class(), config)
    e = cfg.embed
    assert e.num_gpus >= 1
    fits = [t for t in gpu_types().values() if t["resources"]["GPU"] >= e.num_gpus and t["resources"]["CPU"] >= e.num_cpus]
    assert fits, f"no GPU node type holds one embedder actor ({e.num_gpus} GPU, {e.num_cpus} CPU)"
    capacity = sum(t["max_workers"] * (t["resources"]["GPU"] // e.num_gpus) for t in fits)
    assert capacity >= e.num_actors, f"{config}: {e.num_actors} actors but room for {capacity}"
