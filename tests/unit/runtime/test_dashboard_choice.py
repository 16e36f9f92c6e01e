"""A local Ray instance starts its dashboard for the jobs that run Ray Train, unless ray.dashboard says otherwise."""

import pytest

from medembed.app.registry import JOBS
from medembed.config import RayConfig


def test_only_the_training_jobs_ask_for_the_dashboard():
    assert sorted(c for c, j in JOBS.items() if j.ray_train) == ["pipeline", "train"]


@pytest.mark.parametrize("setting, ray_train, expected", [
    (None, True, True), (None, False, False), (False, True, False), (True, False, True)])
def test_ray_dashboard_overrides_the_job(monkeypatch, setting, ray_train, expected):
    from medembed.runtime import ray_setup

    seen = {}
    monkeypatch.setattr(ray_setup.ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray_setup, "cluster_address", lambda cfg: None)
    monkeypatch.setattr(ray_setup.ray, "init", lambda **kw: seen.update(kw))

    class Stop(Exception):
        pass

    def stop():
        raise Stop

    monkeypatch.setattr(ray_setup.ray, "get_runtime_context", stop)
    with pytest.raises(Stop):
        ray_setup.init_ray(RayConfig(dashboard=setting), ray_train=ray_train)
    assert seen["include_dashboard"] is expected and seen["dashboard_host"] == "127.0.0.1"
