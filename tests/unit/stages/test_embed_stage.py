"""The embed stage bundles the embedder with its constructor, ``map_batches`` arguments and input checks."""

from __future__ import annotations

import ast
from pathlib import Path

import pyarrow as pa
import pytest
import ray

import medembed.embedding as embedding_pkg
from medembed import schema as S
from medembed.config import EmbedConfig, ModelConfig
from medembed.embedding.card import ModelCard
from medembed.embedding.embedder import ChunkEmbedder
from medembed.runtime.storage import DEFAULT_STORAGE
from medembed.stages.embed import EmbedStage

CARD = ModelCard(source="x", path="/nowhere", model_id="org/tiny-model", revision="r1", dim=8, max_seq_length=32)


def test_stage_carries_what_the_pools_passed_by_hand():
    embed = EmbedConfig(batch_size=7, num_actors=3, num_cpus=2, num_gpus=0)
    stage = EmbedStage.create(ModelConfig(), embed, DEFAULT_STORAGE, CARD)
    assert stage.fn is ChunkEmbedder
    assert stage.fn_constructor_kwargs["card"] == CARD.to_dict()
    assert stage.fn_constructor_kwargs["storage"] is DEFAULT_STORAGE
    kw = stage.map_batches_kwargs
    assert (kw["batch_size"], kw["batch_format"], kw["num_cpus"], kw["num_gpus"]) == (7, "pyarrow", 2, 0)
    assert isinstance(kw["compute"], ray.data.ActorPoolStrategy)
    assert stage.batch_size == 7


def test_input_columns_are_checked_before_any_actor_starts():
    stage = EmbedStage.create(ModelConfig(), EmbedConfig(), DEFAULT_STORAGE, CARD)
    stage.check_input([S.TITLE, S.TEXT, S.N_TOKENS, S.CHUNK_ID])
    with pytest.raises(KeyError, match="n_tokens"):
        stage.over_table(pa.table({S.TITLE: ["t"], S.TEXT: ["x"]}))


def test_embedding_imports_no_table_or_ingest_code():
    for path in Path(embedding_pkg.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            for name in names:
                assert not name.startswith(("medembed.index", "medembed.ingest", "medembed.stages")), (path.name, name)
