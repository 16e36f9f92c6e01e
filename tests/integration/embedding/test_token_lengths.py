"""Forward passes sized by exact token counts: the per-device token budget, and rows whose counts the embedder fills."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from medembed import schema as S
from medembed.config import EmbedConfig, ModelConfig
from medembed.embedding import encoders
from medembed.embedding.embedder import ChunkEmbedder
from medembed.embedding.encoders import CPU_TOKEN_BUDGET, GPU_TOKEN_BUDGET, build_encoder
from medembed.runtime.storage import DEFAULT_STORAGE

pytestmark = pytest.mark.integration

TEXTS = ["Fever.", "A 60-year-old man with ARDS from COVID-19 was treated with dexamethasone and prone positioning.",
         "The patient developed a blistering rash two weeks after starting lamotrigine. " * 40]


@pytest.fixture(scope="module")
def encoder():
    return build_encoder(ModelConfig(), EmbedConfig(torch_threads=2), DEFAULT_STORAGE)


def test_the_token_budget_defaults_by_device_and_a_set_one_wins(encoder):
    assert EmbedConfig().token_budget is None and not encoder.on_gpu and encoder.token_budget == CPU_TOKEN_BUDGET
    gpu = encoders.BucketedEncoder()
    gpu.embed_cfg, gpu.on_gpu = EmbedConfig(), True
    assert gpu.token_budget == GPU_TOKEN_BUDGET
    gpu.embed_cfg = EmbedConfig(token_budget=777)
    assert gpu.token_budget == 777


def test_token_counts_are_the_models_own_truncated_at_its_max_length(encoder):
    counts = encoder.count_tokens(TEXTS)
    want = [len(ids) for ids in encoder.st.tokenizer(TEXTS)["input_ids"]]
    assert counts[:2] == want[:2] and counts[0] == 4  # [CLS] fever . [SEP]
    assert want[2] > 256 and counts[2] == encoder.model.max_seq_length == 256


def test_the_embedder_fills_missing_counts_and_gives_the_same_vectors(encoder):
    n = len(TEXTS)
    rows = pa.table({S.CHUNK_ID: [f"d{i}#0" for i in range(n)], S.TITLE: [""] * n, S.TEXT: TEXTS,
                     S.N_TOKENS: pa.array([None, 30, None], pa.int32())})
    embedder = ChunkEmbedder.__new__(ChunkEmbedder)
    embedder.encoder = encoder
    out = embedder(rows)
    counts = encoder.count_tokens(TEXTS)
    assert out[S.N_TOKENS].to_pylist() == [counts[0], 30, counts[2]]  # a given count is kept
    vecs = np.asarray(out[S.VECTOR].to_pylist(), dtype=np.float32)
    ref = encoder.st.encode(TEXTS, normalize_embeddings=True, batch_size=1)
    assert np.allclose(vecs, ref, atol=1e-5)

