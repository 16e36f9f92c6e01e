"""Plans the cluster cannot place fail at once with the fields to change (local Ray); warn on an existing cluster."""

from __future__ import annotations

import logging

import pytest

from medembed.config import EmbedJobConfig, RayConfig
from medembed.runtime import ray_setup
from medembed.stages import embed as stage
from medembed.training import trainer
from medembed.training.config import TrainConfig

LOCAL = RayConfig()


def nodes(*cpus: float, gpus: float = 0) -> list[dict]:
    return [{"Alive": True, "Resources": {"CPU": c, **({"GPU": gpus} if gpus else {})}} for c in cpus]


@pytest.fixture(autouse=True)
def one_node(monkeypatch):
    monkeypatch.setattr(ray_setup.ray, "nodes", lambda: nodes(2.0))


def test_too_many_cpus_fails_on_a_local_instance(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray_setup.ray, "cluster_resources", lambda: {"CPU": 2.0})
    trainer.check_resources(TrainConfig(num_workers=1, cpus_per_worker=2), LOCAL)
    trainer.check_resources(TrainConfig(num_workers=2, cpus_per_worker=1), LOCAL)
    with pytest.raises(RuntimeError, match=r"4 CPUs \(train.num_workers x train.cpus_per_worker\) but the cluster has 2"):
        trainer.check_resources(TrainConfig(num_workers=2, cpus_per_worker=2), LOCAL)
    with pytest.raises(RuntimeError, match=r"1 GPUs \(train.num_workers x train.use_gpu\) but the cluster has 0"):
        trainer.check_resources(TrainConfig(num_workers=1, use_gpu=True), LOCAL)


def test_embedding_plan_uses_the_same_check(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray_setup.ray, "cluster_resources", lambda: {"CPU": 2.0})
    cfg = EmbedJobConfig.model_validate({"embed": {"num_actors": 1, "num_gpus": 1}})
    with pytest.raises(RuntimeError, match=r"the embedding plan needs .*1 GPUs \(embed.num_actors x embed.num_gpus\)"):
        stage.check_resources(cfg)


def test_existing_cluster_only_warns(monkeypatch, caplog):
    monkeypatch.setattr(ray_setup.ray, "cluster_resources", lambda: {"CPU": 1.0})
    with caplog.at_level(logging.WARNING, logger=ray_setup.__name__):
        trainer.check_resources(TrainConfig(num_workers=4, cpus_per_worker=1), RayConfig(address="127.0.0.2:6379"))
    assert "waiting for the autoscaler" in caplog.text and "4 CPUs" in caplog.text


def test_a_worker_must_fit_on_one_node(monkeypatch, caplog):
    """Two 1-CPU nodes hold 2 CPUs in all, but no 2-CPU worker: Ray would wait for it forever."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray_setup.ray, "cluster_resources", lambda: {"CPU": 2.0})
    monkeypatch.setattr(ray_setup.ray, "nodes", lambda: nodes(1.0, 1.0) + [{"Alive": False, "Resources": {"CPU": 8}}])
    trainer.check_resources(TrainConfig(num_workers=2, cpus_per_worker=1), LOCAL)
    with pytest.raises(RuntimeError, match=r"2 CPUs on one node for each \(train.cpus_per_worker\) but the largest "
                                           r"node has 1"):
        trainer.check_resources(TrainConfig(num_workers=1, cpus_per_worker=2), LOCAL)
    cfg = EmbedJobConfig.model_validate({"embed": {"num_actors": 1, "num_cpus": 2}, "chunking": {"num_cpus": 2}})
    with pytest.raises(RuntimeError, match=r"2 CPUs on one node for each \(embed.num_cpus\)"):
        stage.check_resources(cfg)
    with caplog.at_level(logging.WARNING, logger=ray_setup.__name__):
        trainer.check_resources(TrainConfig(num_workers=1, cpus_per_worker=2), RayConfig(address="127.0.0.2:6379"))
    assert "on one node" in caplog.text and "waiting for the autoscaler" in caplog.text


def test_each_names_only_what_no_node_has(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray_setup.ray, "cluster_resources", lambda: {"CPU": 8.0, "GPU": 1.0})
    monkeypatch.setattr(ray_setup.ray, "nodes", lambda: nodes(4.0) + nodes(2.0, gpus=1))
    with pytest.raises(RuntimeError, match=r"none has all") as e:  # a 4-CPU node, a GPU node with 2 CPUs
        trainer.check_resources(TrainConfig(num_workers=1, cpus_per_worker=4, use_gpu=True), LOCAL)
    assert "largest node" not in str(e.value)
    trainer.check_resources(TrainConfig(num_workers=1, cpus_per_worker=2, use_gpu=True), LOCAL)
