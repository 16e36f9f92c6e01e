"""ray_cluster.yaml: valid for the installed Ray's cluster launcher, and sized for the shipped cluster configs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml

from medembed.config import load_config
from medembed.jobs import by_name
from tests.support.paths import REPO

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
