"""A training worker group the cluster cannot place fails at once with the fields to change (local Ray)."""

from __future__ import annotations

import logging

import pytest

from medembed.training import trainer
from medembed.training.config import TrainConfig


def test_too_many_cpus_fails_on_a_local_instance(monkeypatch):
    monkeypatch.setattr(trainer.ray, "cluster_resources", lambda: {"CPU": 2.0})
    trainer.check_resources(TrainConfig(num_workers=1, cpus_per_worker=2), external_cluster=False)
    trainer.check_resources(TrainConfig(num_workers=2, cpus_per_worker=1), external_cluster=False)
    with pytest.raises(RuntimeError, match=r"4 CPUs \(train.num_workers x train.cpus_per_worker\) but the cluster has 2"):
        trainer.check_resources(TrainConfig(num_workers=2, cpus_per_worker=2), external_cluster=False)
    with pytest.raises(RuntimeError, match=r"1 GPUs .* but the cluster has 0"):
        trainer.check_resources(TrainConfig(num_workers=1, use_gpu=True), external_cluster=False)


def test_existing_cluster_only_warns(monkeypatch, caplog):
    monkeypatch.setattr(trainer.ray, "cluster_resources", lambda: {"CPU": 1.0})
    with caplog.at_level(logging.WARNING, logger=trainer.__name__):
        trainer.check_resources(TrainConfig(num_workers=4, cpus_per_worker=1), external_cluster=True)
    assert "waiting for the autoscaler" in caplog.text and "4 CPUs" in caplog.text
