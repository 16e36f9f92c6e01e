"""Deployment files parse and agree with the code they launch."""

from __future__ import annotations

import yaml

from tests.support.paths import REPO


def test_runtime_env_excludes_local_outputs():
    env = yaml.safe_load((REPO / "cluster" / "runtime_env.yaml").read_text())
    assert {".git", "lancedb", "runs"} <= set(env["excludes"])
    assert not any("KEY" in k or "SECRET" in k for k in env.get("env_vars", {}))


def test_cluster_config_and_image_match_pinned_versions():
    cfg = yaml.safe_load((REPO / "ray_cluster.yaml").read_text())
    assert cfg["head_node_type"] in cfg["available_node_types"]
    dockerfile = (REPO / "cluster" / "Dockerfile").read_text()
    pyproject = (REPO / "pyproject.toml").read_text()
    assert "rayproject/ray:2.60.0" in dockerfile and '"ray[default,data,train]==2.60.0"' in pyproject
