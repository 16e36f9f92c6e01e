"""`medembed embed` with the benchmark instrument encoder: the real job (one actor and streaming) writes a table
marked as instrument, with deterministic hash vectors; refused without MEDEMBED_ALLOW_INSTRUMENT=1."""

from __future__ import annotations

import json

import lance
import numpy as np
import pytest

from medembed import schema as S
from medembed.config import EmbedJobConfig, load_config
from medembed.embedding.chunking import document_input
from medembed.embedding.instrument import ENV, InstrumentRefused, hash_vectors, text_seeds
from medembed.jobs.embed import embed
from medembed.runtime.manifest import RunManifest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def run(tmp, corpus, name, *overrides):
    cfg = load_config(EmbedJobConfig, None, [
        f"input.uri={corpus}", f"store.uri={tmp / 'db'}", f"store.table={name}", f"output.run_dir={tmp / 'runs'}",
        "model.name=instrument:hash-64", "chunking.max_tokens=48", "chunking.overlap_tokens=8", *overrides])
    m = RunManifest("embed", cfg.output.run_dir, cfg.model_dump(mode="json"), run_id=name)
    counts = embed(cfg, m)
    m.finish()
    return counts


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, shared_data):
    tmp = tmp_path_factory.mktemp("instrument")
    notes = [json.loads(line) for line in (shared_data / "pmc_patients" / "notes.jsonl").open() if line.strip()][:40]
    path = tmp / "notes.jsonl"
    path.write_text("".join(json.dumps({"id": n["patient_uid"], "title": n["title"], "text": n["patient"]}) + "\n"
                            for n in notes))
    return tmp, path


def test_refused_without_env(corpus, monkeypatch):
    tmp, path = corpus
    monkeypatch.delenv(ENV, raising=False)
    with pytest.raises(InstrumentRefused, match="MEDEMBED_ALLOW_INSTRUMENT"):
        run(tmp, path, "refused")
    assert not (tmp / "db" / "refused.lance").exists()


def test_job_writes_marked_deterministic_table(ray_local, corpus, monkeypatch):
    tmp, path = corpus
    monkeypatch.setenv(ENV, "1")
    one = run(tmp, path, "one_actor")
    streamed = run(tmp, path, "streamed", "embed.one_actor_max_mib=0", "embed.batch_size=32")
    assert one["chunks_written"] == streamed["chunks_written"] > 40 * 3  # ~700-token notes, 48-token chunks
    tables = {n: lance.dataset(str(tmp / "db" / f"{n}.lance")) for n in ("one_actor", "streamed")}
    rows = {}
    for n, ds in tables.items():
        md = ds.schema.metadata
        assert md[S.META_INSTRUMENT.encode()] == b"true"
        assert md[S.META_BACKEND.encode()] == b"instrument" and md[S.META_MODEL_ID.encode()] == b"instrument:hash-64"
        t = ds.to_table(columns=[S.CHUNK_ID, S.TITLE, S.TEXT, S.VECTOR, S.N_TOKENS]).sort_by(S.CHUNK_ID)
        assert t.num_rows == one["chunks_written"]
        assert len(set(t.column(S.CHUNK_ID).to_pylist())) == t.num_rows
        rows[n] = t
    a, b = rows["one_actor"], rows["streamed"]
    assert a.column(S.CHUNK_ID).to_pylist() == b.column(S.CHUNK_ID).to_pylist()
    va = np.stack(a.column(S.VECTOR).to_numpy(zero_copy_only=False))
    vb = np.stack(b.column(S.VECTOR).to_numpy(zero_copy_only=False))
    assert np.array_equal(va, vb)  # same content, same vectors: in any process, either execution path
    inputs = [document_input(t, x) for t, x in zip(a.column(S.TITLE).to_pylist(), a.column(S.TEXT).to_pylist())]
    assert np.array_equal(va, hash_vectors(text_seeds(inputs), 64))
    np.testing.assert_allclose(np.linalg.norm(va, axis=1), 1.0, rtol=1e-5)
    assert max(a.column(S.N_TOKENS).to_pylist()) == 48  # chunks cut by the real tokenizer at max_tokens
