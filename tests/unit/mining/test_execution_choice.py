"""Which execution a mining job picks for its number of pairs and the GPUs it asks for."""

import pytest

from medembed.jobs.mine_negatives import choose_execution
from medembed.mining.config import MiningConfig


@pytest.mark.parametrize("pairs, gpus, expected", [
    (500, 0, "in driver"), (2000, 0, "in driver"), (2001, 0, "one actor"), (10_000, 0, "one actor"),
    (10_001, 0, "actor pools"), (500, 1, "one actor"), (500, 0.5, "one actor"), (20_000, 1, "actor pools")])
def test_defaults(pairs, gpus, expected):
    assert choose_execution(pairs, MiningConfig(), gpus) == expected


def test_zero_thresholds_turn_each_execution_off():
    assert choose_execution(10, MiningConfig(in_driver_max_pairs=0), 0) == "one actor"
    assert choose_execution(10, MiningConfig(one_actor_max_pairs=0), 0) == "actor pools"
    # the pools win over the driver when both thresholds say so: one_actor_max_pairs caps both
    assert choose_execution(10, MiningConfig(one_actor_max_pairs=5, in_driver_max_pairs=100), 0) == "actor pools"
