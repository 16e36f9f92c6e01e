"""ONNX backends of the bundled model: one export per revision, vectors that match torch's, the job's quality gate."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medembed.config import EmbedConfig, EmbedJobConfig, ModelConfig
from medembed.embedding.encoders import OnnxEncoder, SentenceTransformerEncoder, build_encoder
from medembed.embedding.onnx_export import DONE_FILE, export_folder
from medembed.embedding.quality import BackendNotValidated, write_quality_record
from medembed.jobs.embed import embed
from medembed.runtime.manifest import RunManifest
from medembed.runtime.storage import DEFAULT_STORAGE

pytestmark = pytest.mark.integration

DOCS = ["A 60-year-old man with ARDS from COVID-19 was treated with dexamethasone and prone positioning.",
        "Fever and chest pain for three days.",
        "The patient developed a blistering rash two weeks after starting lamotrigine " * 8]
QUERIES = ["rash after lamotrigine", "covid ARDS treatment"]
EMBED = EmbedConfig(torch_threads=2, token_budget=512)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("model_cache"))


@pytest.fixture(scope="module")
def torch_vectors():
    enc = build_encoder(ModelConfig(query_prompt="query: "), EMBED, DEFAULT_STORAGE)
    assert isinstance(enc, SentenceTransformerEncoder) and enc.model.backend == "torch"
    return enc.encode_documents(DOCS), enc.encode_queries(QUERIES)


@pytest.mark.parametrize("backend,min_cos,precision", [("onnx", 0.9999, "float32"), ("onnx-int8", 0.98, "int8")])
def test_onnx_backends_match_torch(cache, torch_vectors, backend, min_cos, precision):
    enc = build_encoder(ModelConfig(backend=backend, cache_dir=cache, query_prompt="query: "), EMBED, DEFAULT_STORAGE)
    assert isinstance(enc, OnnxEncoder)
    assert (enc.model.backend, enc.model.precision, enc.dim) == (backend, precision, 384)
    docs, queries = enc.encode_documents(DOCS), enc.encode_queries(QUERIES)
    ref_docs, ref_queries = torch_vectors
    assert docs.dtype == np.float32 and np.allclose(np.linalg.norm(docs, axis=1), 1.0, atol=1e-5)
    assert (docs * ref_docs).sum(1).min() > min_cos
    assert (queries * ref_queries).sum(1).min() > min_cos  # the query prompt reaches the ONNX path too
    info = json.loads((export_folder(enc.model, cache, backend) / DONE_FILE).read_text())
    assert (info["model_id"], info["revision"], info["backend"]) == (enc.model.model_id, enc.model.revision, backend)
    assert enc.encode_documents([]).shape == (0, 384)


def test_bfloat16_vectors_are_unit_length_in_float32(torch_vectors):
    """bf16 (the GPU default; here on CPU) computes the vectors, float32 normalizes them: unit norms to 1e-6,
    where normalizing in bf16 left norms of 0.9994 to 1.0025."""
    enc = build_encoder(ModelConfig(dtype="bfloat16", query_prompt="query: "), EMBED, DEFAULT_STORAGE)
    assert (enc.model.backend, enc.model.precision) == ("torch", "bfloat16")
    docs, queries = enc.encode_documents(DOCS), enc.encode_queries(QUERIES)
    for vecs, ref in zip((docs, queries), torch_vectors):
        assert vecs.dtype == np.float32 and np.abs(np.linalg.norm(vecs, axis=1) - 1.0).max() < 1e-6
        assert (vecs * ref).sum(1).min() > 0.99


def test_export_is_made_once_and_reused(cache):
    card = build_encoder(ModelConfig(backend="onnx", cache_dir=cache), EMBED, DEFAULT_STORAGE).model
    folder = export_folder(card, cache, "onnx")
    stamp = (folder / "model.onnx").stat().st_mtime_ns
    enc = build_encoder(ModelConfig(backend="onnx", cache_dir=cache), EMBED, DEFAULT_STORAGE)
    assert (export_folder(enc.model, cache, "onnx") / "model.onnx").stat().st_mtime_ns == stamp
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no temp folders left


def test_embed_job_refuses_unchecked_backend_before_any_work(cache, tmp_path):
    cfg = EmbedJobConfig.model_validate({"model": {"backend": "onnx-int8", "cache_dir": cache},
                                         "store": {"uri": str(tmp_path / "db")}})
    manifest = RunManifest("embed", str(tmp_path / "runs"), cfg.model_dump())
    with pytest.raises(BackendNotValidated, match="'onnx-int8'.*no quality check"):
        embed(cfg, manifest)
    card = build_encoder(cfg.model, EMBED, DEFAULT_STORAGE).model
    write_quality_record(card, cache, "onnx-int8", {"scifact": (0.60, 0.65)}, 0.995, n_chunks=10)
    with pytest.raises(BackendNotValidated, match="failed its quality check"):
        embed(cfg, manifest)
    assert not (tmp_path / "db").exists()  # refused before a table was touched
