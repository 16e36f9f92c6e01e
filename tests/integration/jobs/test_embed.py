"""The embedding job on a local Ray instance with the bundled model: exact counts, exactly-once,
and the distributed result equal to a plain local computation."""

from __future__ import annotations

import json

import lance
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from medembed import schema as S
from medembed.config import EmbedJobConfig, load_config
from medembed.embedding.chunking import document_input
from medembed.jobs.embed import embed
from medembed.runtime.manifest import RunManifest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

NOTES = {
    "n1": ("Aortic dissection", "A 54-year-old man had tearing chest pain radiating to the back; CT angiography "
                                "showed a Stanford type A aortic dissection and he underwent emergency surgery."),
    "n2": ("Kawasaki disease", "A 3-year-old girl had five days of fever, conjunctivitis and a strawberry tongue, "
                               "and received intravenous immunoglobulin."),
    "n3": ("Lithium toxicity", "Coarse tremor, ataxia and confusion developed in a woman on lithium after she "
                               "started a thiazide diuretic; levels were 3.1 mmol/L and she needed hemodialysis."),
    "n4": ("Long note", " ".join(f"On day {i} the creatinine was {1 + i / 10:.1f} mg/dL and urine output "
                                 f"was {400 + i} mL." for i in range(80))),
}


def write_corpus(root):
    root.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"id": k, "title": t, "text": x}) for k, (t, x) in list(NOTES.items())[:2]]
    lines += ['{"id": "bad-json", "text": ', json.dumps({"id": "", "text": "no id"}),
              json.dumps({"id": "empty", "text": "   "})]
    (root / "a.jsonl").write_bytes(("\n".join(lines) + "\n").encode() + b'{"id": "bin", "text": "\xff"}\n')
    csv = "id,title,text\n" + f'n3,{NOTES["n3"][0]},"{NOTES["n3"][1]}"\n' + "short,row\n" + 'n1,dup,"duplicate id"\n'
    (root / "b.csv").write_text(csv)
    pq.write_table(pa.table({"id": ["n4"], "title": [NOTES["n4"][0]], "text": [NOTES["n4"][1]]}), root / "c.parquet")
    (root / "notes.txt").write_text("not a supported format")


def run(tmp_path, corpus, *overrides, name="r"):
    cfg = load_config(EmbedJobConfig, None, [
        f"input.uri={corpus}", f"store.uri={tmp_path / 'db'}", "store.corpus_name=t", f"output.run_dir={tmp_path / 'runs'}",
        "chunking.max_tokens=64", "chunking.overlap_tokens=8", "embed.batch_size=16", *overrides])
    m = RunManifest("embed", cfg.output.run_dir, cfg.model_dump(mode="json"), run_id=name)
    counts = embed(cfg, m)
    m.finish()
    return counts, m


@pytest.fixture(scope="module")
def built(ray_local, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("embed")
    corpus = tmp / "corpus"
    write_corpus(corpus)
    counts, m = run(tmp, corpus, name="first")
    return tmp, corpus, counts, m


def table(tmp):
    return lance.dataset(str(tmp / "db" / "t__all_minilm_l6_v2.lance"))


def test_counts_and_quarantine(built):
    tmp, _, counts, m = built
    assert counts["documents_accepted"] == 4
    assert counts["quarantine_by_reason"] == {
        S.R_DUPLICATE_ID: 1, S.R_EMPTY_TEXT: 1, S.R_MALFORMED_CSV: 1, S.R_MALFORMED_JSON: 1, S.R_MISSING_ID: 1,
        S.R_UNDECODABLE: 1, S.R_UNREADABLE_FILE: 1}
    q = [json.loads(line) for f in sorted((tmp / "runs" / "first" / "quarantine").glob("*.jsonl"))
         for line in f.read_text().splitlines()]
    by_reason = {r[S.Q_REASON]: r for r in q}
    assert by_reason[S.R_MALFORMED_JSON][S.Q_SOURCE].endswith("a.jsonl")
    assert by_reason[S.R_MALFORMED_JSON][S.Q_LOCATION] == "line 3"
    assert by_reason[S.R_MALFORMED_CSV][S.Q_LOCATION] == "line 3"
    assert by_reason[S.R_UNREADABLE_FILE][S.Q_SOURCE].endswith("notes.txt")
    manifest = json.loads((tmp / "runs" / "first" / "manifest.json").read_text())
    assert manifest["status"] == "succeeded"
    assert manifest["counts"]["chunks_written"] == counts["chunks_written"] == table(tmp).count_rows()
    assert manifest["model"]["model_id"] == "sentence-transformers/all-MiniLM-L6-v2" and manifest["model"]["dim"] == 384
    assert manifest["throughput"]["chunks_per_s"] > 0


def test_table_rows_schema_and_metadata(built):
    tmp, *_ = built
    ds = table(tmp)
    t = ds.to_table()
    ids = t.column(S.CHUNK_ID).to_pylist()
    assert len(ids) == len(set(ids))
    assert {i.split("#")[0] for i in ids} == {"n1", "n2", "n3", "n4"}
    assert sum(1 for i in ids if i.startswith("n4#")) > 3  # the long note was chunked
    md = {k.decode(): v.decode() for k, v in ds.schema.metadata.items()}
    assert md[S.META_MODEL_ID] == "sentence-transformers/all-MiniLM-L6-v2" and md[S.META_DIM] == "384"
    vecs = np.stack(t.column(S.VECTOR).to_numpy(zero_copy_only=False))
    assert vecs.dtype == np.float32 and np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-4)
    assert set(t.column(S.MODEL_ID).to_pylist()) == {"sentence-transformers/all-MiniLM-L6-v2"}


def test_distributed_vectors_equal_local_encode(built, st_model):
    tmp, *_ = built
    t = table(tmp).to_table().to_pylist()
    texts = [document_input(r[S.TITLE], r[S.TEXT]) for r in t]
    local = st_model.encode(texts, normalize_embeddings=True, batch_size=8)
    ray_vecs = np.stack([np.asarray(r[S.VECTOR], dtype=np.float32) for r in t])
    assert np.abs(local - ray_vecs).max() < 1e-4


def test_streaming_path_writes_the_same_table_as_the_one_actor_path(built, tmp_path, monkeypatch):
    """A small input runs in one actor (read, chunk, embed, write); the streaming pipeline must agree row for row."""
    from ray.data._internal.execution.streaming_executor import StreamingExecutor

    tmp, corpus, first, m = built
    assert m.data["execution"] == "one actor"

    def in_driver(*a, **k):
        raise AssertionError("a Ray Data execution ran in the driver: the wave runner should run it")

    with monkeypatch.context() as mp:  # every execution in a wave runner's process, none in the driver (this one)
        mp.setattr(StreamingExecutor, "execute", in_driver)
        counts, m2 = run(tmp_path, corpus, "embed.one_actor_max_mib=0", "store.commit_every=1", "embed.block_mib=0.001",
                         "embed.writer_actors=2", "store.index_off_driver_rows=0", "embed.wave_mib=0.0001",
                         name="streamed")
    # two writer actors (fragments in any order); compaction and indexes in a Ray task of their own, not the driver;
    # a wave per file (three Ray Data executions, one committer; b.csv's repeated id n1 is caught across waves)
    assert m2.data["execution"] == "streaming" and m2.data["ray_data_executions"] == 3
    assert m2.data["wave_runner_peak_rss_mib"] > 50  # the runners' own processes
    assert m.data["indexes"]["ran_in"] == {"process": "driver"}
    ran_in = m2.data["indexes"]["ran_in"]
    assert ran_in["process"] == "ray task" and ran_in["peak_rss_mib"] > 50 and ran_in["seconds"] > 0
    assert m2.data["indexes"]["fts_index"] == "built" and m2.data["indexes"]["rows"] == counts["rows_after"]
    for k in ("documents_accepted", "quarantine_by_reason", "chunks_written", "tokens_embedded"):
        assert counts[k] == first[k], k
    assert counts["commits"] > 1  # blocks committed as they came
    a = table(tmp).to_table().sort_by(S.CHUNK_ID)
    b = table(tmp_path).to_table().sort_by(S.CHUNK_ID)
    assert a.column(S.CHUNK_ID).to_pylist() == b.column(S.CHUNK_ID).to_pylist()
    assert a.column(S.TEXT).to_pylist() == b.column(S.TEXT).to_pylist()
    va, vb = (np.stack(t.column(S.VECTOR).to_numpy(zero_copy_only=False)) for t in (a, b))
    assert np.abs(va - vb).max() < 1e-4

    # streamed re-run with one document changed: hashed on Ray Data, only that one read again and tokenized
    import shutil

    changed = tmp_path / "corpus_changed"
    shutil.copytree(corpus, changed)
    pq.write_table(pa.table({"id": ["n4"], "title": ["Long note, amended"], "text": [NOTES["n4"][1]]}),
                   changed / "c.parquet")
    rows_before, n4_before = table(tmp_path).count_rows(), table(tmp_path).count_rows(filter="doc_id = 'n4'")
    again, m3 = run(tmp_path, changed, "embed.one_actor_max_mib=0", name="streamed-again")
    assert m3.data["execution"] == "streaming" and "change_detection" in m3.data["durations_s"]
    assert m3.data["ray_data_executions"] == 1
    assert (again["documents_tokenized"], again["documents_unchanged_skipped"], again["documents_replaced"]) == (1, 3, 1)
    n4 = table(tmp_path).count_rows(filter="doc_id = 'n4'")
    assert again["chunks_written"] == n4 and table(tmp_path).count_rows() == rows_before - n4_before + n4
    ids = table(tmp_path).to_table(columns=[S.CHUNK_ID]).column(0).to_pylist()
    assert len(ids) == len(set(ids))


def test_rerun_is_exactly_once_and_change_replaces(built, tmp_path):
    tmp, corpus, first, _ = built
    before = table(tmp).count_rows()
    counts, _ = run(tmp, corpus, name="second")
    assert counts["chunks_written"] == 0 and counts["chunks_unchanged_skipped"] == before
    assert counts["documents_tokenized"] == 0 and counts["documents_unchanged_skipped"] == 4  # hashed, not chunked
    assert table(tmp).count_rows() == before
    # change one document: only its chunk is re-embedded and replaced, nothing duplicated
    changed = corpus.parent / "corpus_changed"
    import shutil

    shutil.copytree(corpus, changed)
    p = changed / "c.parquet"
    pq.write_table(pa.table({"id": ["n4"], "title": ["Long note, amended"], "text": [NOTES["n4"][1]]}), p)
    n4_before = table(tmp).count_rows(filter="doc_id = 'n4'")
    counts, _ = run(tmp, changed, name="third")
    n4 = table(tmp).count_rows(filter="doc_id = 'n4'")
    assert counts["documents_replaced"] == 1 and counts["documents_unchanged_skipped"] == 3
    assert counts["documents_tokenized"] == 1  # only n4 reached the tokenizer
    assert counts["chunks_written"] == n4  # the longer title leaves less room per chunk: n4 may grow
    assert table(tmp).count_rows() == before - n4_before + n4
    ids = table(tmp).to_table(columns=[S.CHUNK_ID]).column(0).to_pylist()
    assert len(ids) == len(set(ids)) and sorted(i for i in ids if i.startswith("n4#")) == sorted(f"n4#{k}" for k in range(n4))
    titles = set(table(tmp).to_table(filter="doc_id = 'n4'", columns=[S.TITLE]).column(0).to_pylist())
    assert titles == {"Long note, amended"}


def test_search_modes_and_cli(built, capsys):
    tmp, *_ = built
    from medembed.app.cli import main

    db = str(tmp / "db")
    for mode in ("vector", "fts", "hybrid"):
        assert main(["search", "lithium tremor after thiazide", "--db", db, "--mode", mode, "-k", "3", "--json"]) == 0
        hits = json.loads(capsys.readouterr().out)
        assert hits[0]["doc_id"] == "n3", mode
    assert main(["search", "aortic dissection surgery", "--db", db, "-k", "2"]) == 0
    out = capsys.readouterr().out
    assert "n1" in out.splitlines()[1] and "n1#0" in out


def test_model_mismatch_is_refused(built):
    tmp, *_ = built
    from medembed.index.tables import TableModelMismatch, check_model

    with pytest.raises(TableModelMismatch, match="holds vectors of model"):
        check_model(table(tmp), "BAAI/bge-base-en-v1.5", 768, "t")
