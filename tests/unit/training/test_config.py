"""The train job config: shipped defaults load, bad values fail naming the field."""

from __future__ import annotations

import pytest

from medembed.config import ConfigError, load_config
from medembed.training.config import TrainJobConfig


def test_shipped_config_loads_with_the_documented_defaults():
    cfg = load_config(TrainJobConfig, "train")
    assert cfg.model.name == "BAAI/bge-base-en-v1.5"
    assert cfg.train.temperature == 0.02 and cfg.train.interpolate == [0.25, 0.5, 0.75, 1.0]
    assert cfg.train.query_max_length < cfg.train.passage_max_length
    assert cfg.output.dir == "./output/models"


@pytest.mark.parametrize(("override", "field"), [
    ("train.interpolate=[0.5, 1.5]", "train.interpolate"),
    ("train.interpolate=[]", "train.interpolate"),
    ("train.temperature=0", "train.temperature"),
    ("train.batch_size=1", "train.batch_size"),
    ("train.dev_fraction=0", "needs a dev split"),
])
def test_bad_values_name_the_field(override, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_config(TrainJobConfig, "train", [override])


def test_distillation_needs_negatives():
    with pytest.raises(ValueError, match="set train.num_negatives > 0"):
        TrainJobConfig.model_validate({"train": {"distill_weight": 1.0, "num_negatives": 0}})
