"""The benchmark instrument encoder: refused without MEDEMBED_ALLOW_INSTRUMENT=1 and in every *_cluster preset,
deterministic unit vectors with it."""

from __future__ import annotations

import numpy as np
import pytest

from medembed import schema as S
from medembed.app.runner import config_checks
from medembed.config import ConfigError, EmbedJobConfig, ModelConfig, load_config, shipped_configs
from medembed.embedding.card import resolve_card
from medembed.embedding.encoders import build_encoder
from medembed.embedding.instrument import ENV, InstrumentRefused, hash_vectors, refuse_in_preset, text_seeds
from medembed.runtime.storage import DEFAULT_STORAGE


def test_refused_without_env(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    with pytest.raises(InstrumentRefused, match=r"model.name='instrument:hash'.*benchmark instrument.*"
                                                r"MEDEMBED_ALLOW_INSTRUMENT=1"):
        resolve_card(ModelConfig(name="instrument:hash"))
    monkeypatch.setenv(ENV, "yes")  # only "1" allows it
    with pytest.raises(InstrumentRefused):
        resolve_card(ModelConfig(name="instrument:hash-128"))


@pytest.mark.parametrize("preset", [p for p in shipped_configs() if p.endswith("_cluster")])
def test_refused_in_cluster_presets_even_with_env(monkeypatch, preset):
    monkeypatch.setenv(ENV, "1")
    key = "embed.model.name" if preset.startswith("pipeline") else "model.name"
    with pytest.raises(ConfigError, match=rf"{key}='instrument:hash'.*benchmark instrument.*{preset}"):
        load_config(EmbedJobConfig, preset, [f"{key}=instrument:hash"], checks=config_checks())


def test_config_alone_does_not_know_the_instrument(monkeypatch):
    """config (the bottom layer) runs only the checks it is given; the runner and submit give this one."""
    monkeypatch.setenv(ENV, "1")
    assert load_config(EmbedJobConfig, "embed_cluster", ["model.name=instrument:hash"]).model.name == "instrument:hash"
    assert refuse_in_preset in config_checks()


def test_cluster_presets_exist_and_local_preset_allows_it(monkeypatch):
    assert {"embed_cluster", "reembed_cluster", "pipeline_cluster"} <= set(shipped_configs())
    monkeypatch.setenv(ENV, "1")
    cfg = load_config(EmbedJobConfig, "embed", ["model.name=instrument:hash"], checks=config_checks())
    assert cfg.model.name == "instrument:hash"


def test_card_and_vectors(monkeypatch):
    monkeypatch.setenv(ENV, "1")
    card = resolve_card(ModelConfig(name="instrument:hash-96"))
    assert (card.model_id, card.dim, card.backend, card.max_seq_length) == ("instrument:hash-96", 96, "instrument", 256)
    assert S.table_schema(card.dim, card.model_id, card.revision, card.backend).metadata[b"medembed.instrument"] == b"true"
    assert b"medembed.instrument" not in S.table_schema(384, "m", "r", "torch").metadata
    enc = build_encoder(ModelConfig(name="instrument:hash-96"), None, DEFAULT_STORAGE, card=card)
    texts = ["Title\nchest pain", "Title\nchest pain", "Title\nchest pains", ""]
    v = enc.encode_documents(texts)
    assert v.shape == (4, 96) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
    assert np.array_equal(v[0], v[1]) and not np.allclose(v[0], v[2])
    assert np.array_equal(enc.encode_queries(texts[:1])[0], v[0])  # a query equal to a chunk finds it exactly
    assert np.array_equal(v, hash_vectors(text_seeds(texts), 96))  # the same in any process: no RNG state
    assert enc.count_tokens(["chest pain"]) == [4]  # [CLS] chest pain [SEP]: the real tokenizer
    # near-orthogonal across texts, like random unit vectors
    many = enc.encode_documents([f"chunk {i}" for i in range(500)])
    off = (many @ many.T)[~np.eye(500, dtype=bool)]
    assert abs(off.mean()) < 0.01 and off.std() < 0.15


def test_bad_names(monkeypatch):
    monkeypatch.setenv(ENV, "1")
    for name in ("instrument:random", "instrument:hash-1", "instrument:hash-x"):
        with pytest.raises(InstrumentRefused, match="instrument"):
            resolve_card(ModelConfig(name=name))
