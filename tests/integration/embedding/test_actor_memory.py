"""CPU model actors start with glibc keeping freed memory (``embed.cpu_keep_memory``); GPU actors and ``false`` don't."""

from __future__ import annotations

import sys

import pytest

from medembed.config import EmbedConfig, ModelConfig, S3Config
from medembed.embedding.card import resolve_card
from medembed.embedding.encoders import encoder_actor_kwargs
from medembed.runtime.memory import KEEP_MEMORY_ENV, cpu_actor_options, kept_from_start

pytestmark = [pytest.mark.integration, pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc")]


def test_options_only_for_cpu_actors_that_keep_memory():
    assert cpu_actor_options(0, True) == {"runtime_env": {"env_vars": KEEP_MEMORY_ENV}}
    assert cpu_actor_options(1, True) == {} and cpu_actor_options(0.5, True) == {}
    assert cpu_actor_options(0, False) == {}
    assert EmbedConfig().cpu_keep_memory is True


def _kept(worker) -> bool:
    import ray

    from medembed.runtime.in_process import stop

    try:
        return ray.get(worker.__ray_call__.remote(lambda self: kept_from_start()), timeout=120)
    finally:
        stop(worker)


@pytest.mark.parametrize("keep", [True, False])
def test_corpus_and_mining_workers_start_with_the_setting(ray_local, keep):
    from medembed.mining import one_actor as mining_actor
    from medembed.stages import one_actor as embed_actor

    model = ModelConfig()
    kwargs = encoder_actor_kwargs(model, EmbedConfig(), S3Config(), resolve_card(model))
    assert _kept(embed_actor.start_worker(kwargs, 1, 0, keep_memory=keep)) is keep
    assert _kept(mining_actor.start_worker(kwargs, 1, 0, keep_memory=keep)) is keep


def test_ray_data_pool_actor_gets_the_environment_beside_the_job_env(ray_local):
    """The map_batches arguments the embedding, candidate, evaluation and mining pools pass reach the actor and
    merge with the job's own environment variables (HF_HUB_OFFLINE comes from ray_local's runtime_env)."""
    import os

    import ray

    class Probe:
        def __call__(self, batch):
            return {"kept": [kept_from_start()] * len(batch["id"]), "offline": [os.environ.get("HF_HUB_OFFLINE")] * len(batch["id"])}

    rows = ray.data.range(4).map_batches(Probe, compute=ray.data.ActorPoolStrategy(size=1), batch_size=4,
                                          **cpu_actor_options(0, True)).take_all()
    assert [r["kept"] for r in rows] == [True] * 4 and {r["offline"] for r in rows} == {"1"}
