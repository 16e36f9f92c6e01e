from __future__ import annotations

import pytest

from medembed.config import ConfigError, EmbedJobConfig, load_config, parse_override


def test_defaults_load_and_overrides_are_typed():
    cfg = load_config(EmbedJobConfig, None, ["embed.num_actors=4", "store.fts=false", "model.name=BAAI/bge-base-en-v1.5"])
    assert cfg.embed.num_actors == 4
    assert cfg.store.fts is False
    assert cfg.model.name == "BAAI/bge-base-en-v1.5"


@pytest.mark.parametrize("name", ["embed.yaml", "embed_pmc_patients.yaml", "embed_cluster.yaml"])
def test_shipped_configs_validate(name):
    cfg = load_config(EmbedJobConfig, name)
    assert cfg.input.text_fields


def test_cluster_preset_uses_bge_on_gpus():
    cfg = load_config(EmbedJobConfig, "embed_cluster")
    assert cfg.model.name == "BAAI/bge-base-en-v1.5"
    assert cfg.embed.num_gpus == 1


def test_invalid_value_names_the_field():
    with pytest.raises(ConfigError) as e:
        load_config(EmbedJobConfig, None, ["embed.num_actors=0"])
    assert "embed.num_actors" in str(e.value)


def test_unknown_field_names_the_field(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("store:\n  urii: ./x\n")
    with pytest.raises(ConfigError) as e:
        load_config(EmbedJobConfig, p)
    assert "store.urii" in str(e.value) and str(p) in str(e.value)


def test_overlap_must_be_smaller_than_window():
    with pytest.raises(ConfigError) as e:
        load_config(EmbedJobConfig, None, ["chunking.max_tokens=64", "chunking.overlap_tokens=64"])
    assert "overlap_tokens" in str(e.value)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(EmbedJobConfig, tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("store: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(EmbedJobConfig, bad)


def test_parse_override_rejects_garbage():
    with pytest.raises(ConfigError):
        parse_override("no-equals-sign")
    assert parse_override("a.b=3") == ("a.b", 3)
    assert parse_override("a.b=[x, y]") == ("a.b", ["x", "y"])
