"""`medembed reembed` on a local Ray instance: an incremental run equals a fresh full embed, a run with
nothing changed writes nothing, bad input defers deletions (exit 4), a new model gets a new table that
the serving name switches to, and `medembed rollback` returns it."""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

import lance
import numpy as np
import pytest

from medembed import schema as S
from medembed.index import serving
from medembed.index.search import Retriever

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

TABLE = "notes__all_minilm_l6_v2"
WORDS = ("fever cough dyspnea sepsis lactate creatinine troponin anemia ferritin biopsy lymphoma ascites cirrhosis "
         "stroke aphasia seizure insulin ketoacidosis").split()


def note(i: int, edition: int = 0, long: bool = False) -> dict:
    words = [WORDS[(i * 7 + k * (edition + 1)) % len(WORDS)] for k in range(60 if long else 14)]
    return {"id": f"d{i:02d}", "title": f"Case {i}", "text": f"Patient {i} (edition {edition}): " + " ".join(words)}


def write_corpus(folder: Path, notes: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "notes.jsonl").write_text("".join(json.dumps(n) + "\n" for n in notes))
    return folder


V1 = [note(i, long=i in (2, 5)) for i in range(12)]
# d01 edited, d02 edited and shorter, d05 edited and longer, d03 deleted, d20 added
V2 = [note(i, edition=1 if i in (1, 2, 5) else 0, long=i == 5) for i in range(12) if i != 3] + [note(20)]


def overrides(tmp: Path, corpus: Path, db: str = "db", *extra: str) -> list[str]:
    return [f"input.uri={corpus}", f"store.uri={tmp / db}", "store.corpus_name=notes", f"output.run_dir={tmp / 'runs'}",
            "chunking.max_tokens=32", "chunking.overlap_tokens=4", "embed.batch_size=16", "sync.lease_ttl_s=20", *extra]


def run(tmp: Path, corpus: Path, name: str, *extra: str, db: str = "db") -> tuple[int, dict]:
    """One run through the runner (as `medembed reembed` does); returns (exit code, manifest)."""
    from medembed.app.registry import by_name
    from medembed.app.runner import run_job

    args = argparse.Namespace(config=None, overrides=[*overrides(tmp, corpus, db, *extra), f"output.run_name={name}"],
                              print_config=False, verbose=False)
    code = run_job(by_name("reembed"), args)
    return code, json.loads((tmp / "runs" / name / "manifest.json").read_text())


def table_rows(uri: str, version: int | None = None) -> dict[str, tuple[str, np.ndarray]]:
    t = lance.dataset(uri, version=version).to_table(columns=[S.CHUNK_ID, S.CONTENT_HASH, S.VECTOR])
    return {c: (h, np.asarray(v, np.float32)) for c, h, v in zip(t[S.CHUNK_ID].to_pylist(),
                                                                  t[S.CONTENT_HASH].to_pylist(), t[S.VECTOR].to_pylist())}


@pytest.fixture(scope="module")
def world(ray_local, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reembed")
    corpus = write_corpus(tmp / "corpus", V1)
    code, m = run(tmp, corpus, "first")
    assert code == 0, m.get("error")
    return tmp, corpus, m


def test_first_run_builds_verifies_and_serves(world):
    tmp, _, m = world
    c = m["counts"]
    assert (c["documents_new"], c["documents_changed"], c["documents_unchanged"], c["documents_deleted"]) == (12, 0, 0, 0)
    assert c["chunks_embedded"] == c["chunks_in_corpus"] == c["rows_after"] > 12  # d02, d05 span several chunks
    assert m["serving_before"] is None
    assert m["serving_after"]["table"] == TABLE and m["serving_after"]["rows"] == c["rows_after"]
    assert m["verification"]["recheck"] == {"new": 0, "changed": 0, "unchanged": 12, "deleted": 0}
    assert min(m["verification"]["sample_scores"]) > 0.99
    assert (c["documents_tokenized"], c["chunks_tokenized"]) == (12, c["chunks_in_corpus"])
    for phase in ("lease", "read_hash", "diff", "embed_stage", "commit", "indexes", "verify", "switch"):
        assert phase in m["durations_s"]
    assert not (tmp / "db" / "_medembed" / "leases" / "notes.json").exists()  # released
    ds = lance.dataset(str(tmp / "db" / f"{TABLE}.lance"))
    assert serving.serving_tag(m["serving_after"]["version"]) in ds.tags.list()


def test_incremental_run_equals_a_fresh_full_embed(world):
    tmp, corpus, first = world
    write_corpus(corpus, V2)
    code, m = run(tmp, corpus, "second")
    assert code == 0, m.get("error")
    c = m["counts"]
    assert (c["documents_new"], c["documents_changed"], c["documents_unchanged"], c["documents_deleted"]) == (1, 3, 8, 1)
    # only the new and changed documents were read again and tokenized; the 8 unchanged ones were hashed only
    assert (c["documents_reread"], c["documents_tokenized"], c["chunks_tokenized"]) == (4, 4, c["chunks_embedded"])
    assert c["chunks_in_corpus"] == c["chunks_unchanged"] + c["chunks_embedded"] == c["rows_after"]
    v = m["versions"]
    assert v["after_commit"] == v["before"] + 1  # adds and removals: ONE version
    assert m["serving_before"] == first["serving_after"]
    assert m["serving_after"]["version"] == v["after"] > v["before"]
    uri = str(tmp / "db" / f"{TABLE}.lance")
    changed_chunks = sum(1 for cid in table_rows(uri, v["after_commit"]) if cid.split("#")[0] in ("d01", "d02", "d05", "d20"))
    assert c["chunks_embedded"] == changed_chunks

    # a fresh full embed of today's corpus into another database, its table-wide steps (indexes, the sample
    # searches) in Ray tasks of their own as a large table's are: the same table
    code, fresh = run(tmp, corpus, "fresh", "store.index_off_driver_rows=0", db="db_fresh")
    assert code == 0 and fresh["counts"]["documents_new"] == 12
    assert m["indexes"]["ran_in"] == m["verification"]["sample_ran_in"] == {"process": "driver"}
    for where in (fresh["indexes"]["ran_in"], fresh["verification"]["sample_ran_in"]):
        assert where["process"] == "ray task" and where["peak_rss_mib"] > 50 and where["num_cpus"] == 1.0
    assert fresh["indexes"]["fts_index"] == "built" and min(fresh["verification"]["sample_scores"]) > 0.99
    assert fresh["indexes"]["rows"] == fresh["counts"]["rows_after"] == c["rows_after"]
    got, want = table_rows(uri), table_rows(str(tmp / "db_fresh" / f"{TABLE}.lance"))
    assert sorted(got) == sorted(want)
    assert {k: h for k, (h, _) in got.items()} == {k: h for k, (h, _) in want.items()}
    np.testing.assert_allclose(np.stack([got[k][1] for k in sorted(got)]), np.stack([want[k][1] for k in sorted(want)]),
                               atol=1e-5)
    assert not any(k.startswith("d03#") for k in got)

    # readers of the serving name see the new version; the previous one is still there, pinned and tagged
    r = Retriever.open(str(tmp / "db"), "notes")
    assert r.tbl.version == m["serving_after"]["version"]
    assert {d for d in r.rows()[S.DOC_ID]} == {n["id"] for n in V2}
    old = table_rows(uri, first["serving_after"]["version"])
    assert any(k.startswith("d03#") for k in old)
    ptr = serving.read_pointer(str(tmp / "db"), "notes")
    assert [h.version for h in ptr.history] == [first["serving_after"]["version"]]


def test_run_with_nothing_changed_writes_no_version(world):
    tmp, corpus, _ = world
    uri = str(tmp / "db" / f"{TABLE}.lance")
    versions = len(lance.dataset(uri).versions())
    pointer = (tmp / "db" / "_medembed" / "serving" / "notes.json").read_text()
    code, m = run(tmp, corpus, "third")
    assert code == 0, m.get("error")
    c = m["counts"]
    assert c["chunks_embedded"] == c["chunks_removed"] == 0 and c["documents_unchanged"] == 12
    assert c["documents_tokenized"] == c["documents_reread"] == 0 and c["chunks_unchanged"] == c["rows_after"]
    assert len(lance.dataset(uri).versions()) == versions
    assert (tmp / "db" / "_medembed" / "serving" / "notes.json").read_text() == pointer
    assert m["serving_after"] == m["serving_before"] and "embed_stage" in m["durations_s"]


def test_unreadable_file_exits_4_and_deletes_nothing(world):
    tmp, corpus, _ = world
    uri = str(tmp / "db" / f"{TABLE}.lance")
    write_corpus(corpus, [n for n in V2 if n["id"] != "d04"] + [note(21)])  # d04 gone: its source may be the bad file
    (corpus / "more.jsonl.gz").write_bytes(b"\x1f\x8b\x08\x00 this is not gzip data " * 10)
    try:
        code, m = run(tmp, corpus, "bad-input")
    finally:
        (corpus / "more.jsonl.gz").unlink()
    assert code == 4 and m["status"] == "succeeded_with_quarantine", m.get("error")
    c = m["counts"]
    assert c["quarantine_by_reason"] == {S.R_UNREADABLE_FILE: 1}
    assert (c["documents_new"], c["documents_deleted"], c["documents_delete_deferred"]) == (1, 0, 1)
    docs = set(lance.dataset(uri).to_table(columns=[S.DOC_ID])[S.DOC_ID].to_pylist())
    assert "d04" in docs and "d21" in docs  # the good data is in, nothing was deleted
    q = [json.loads(ln) for f in (tmp / "runs" / "bad-input" / "quarantine").glob("*.jsonl") for ln in f.read_text().splitlines()]
    assert [r[S.Q_SOURCE].endswith("more.jsonl.gz") for r in q] == [True]
    # the next clean run deletes it
    code, m = run(tmp, corpus, "clean-again")
    assert code == 0 and m["counts"]["documents_deleted"] == 1
    assert "d04" not in set(lance.dataset(uri).to_table(columns=[S.DOC_ID])[S.DOC_ID].to_pylist())


def test_new_model_builds_a_new_table_switches_and_rolls_back(world, bundled_model_path, capsys):
    tmp, corpus, _ = world
    promoted = tmp / "minilm-promoted"  # the same weights under another model id: a "newly promoted" model
    promoted.mkdir()
    for f in Path(bundled_model_path).iterdir():
        os.symlink(f, promoted / f.name) if f.is_file() else shutil.copytree(f, promoted / f.name)
    ptr_before = serving.read_pointer(str(tmp / "db"), "notes")
    before = ptr_before.current
    code, m = run(tmp, corpus, "promoted", f"model.name={promoted}")
    assert code == 0, m.get("error")
    new_table = "notes__minilm_promoted"
    assert m["serving_before"]["table"] == TABLE and m["serving_after"]["table"] == new_table
    assert m["counts"]["documents_new"] == m["counts"]["documents_in_corpus"]
    assert m["verification"]["recheck"]["unchanged"] == m["counts"]["documents_in_corpus"]
    r = Retriever.open(str(tmp / "db"), "notes")
    assert r.name == new_table and r.metadata[S.META_MODEL_ID] == "minilm-promoted"
    # same weights: same vectors as the served table had
    old, new = table_rows(str(tmp / "db" / f"{TABLE}.lance"), before.version), table_rows(
        str(tmp / "db" / f"{new_table}.lance"))
    assert sorted(old) == sorted(new)
    np.testing.assert_allclose(np.stack([old[k][1] for k in sorted(old)]), np.stack([new[k][1] for k in sorted(new)]),
                               atol=1e-5)

    from medembed.app.cli import main

    assert main(["rollback", "--db", str(tmp / "db"), "--name", "notes"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["after"]["table"] == TABLE and out["after"]["version"] == before.version
    r = Retriever.open(str(tmp / "db"), "notes")
    assert r.name == TABLE and r.tbl.version == before.version
    after = serving.read_pointer(str(tmp / "db"), "notes")  # exactly one step back
    assert [h.key for h in after.history] == [h.key for h in ptr_before.history]


def test_table_from_before_doc_hash_is_migrated_once(world):
    """A table written before doc_hash existed (simulated: the two columns dropped) gets them added by the next
    run; every document counts as changed once, is re-embedded with its hash, and the run after is a no-op."""
    tmp, corpus, _ = world
    uri = str(tmp / "db" / f"{TABLE}.lance")
    lance.dataset(uri).drop_columns([S.DOC_HASH, S.DOC_CHUNKS])
    rows = lance.dataset(uri).count_rows()
    code, m = run(tmp, corpus, "migrate")
    assert code == 0, m.get("error")
    c = m["counts"]
    assert m["change_detection"]["table_migrated"] is True
    assert (c["documents_changed"], c["documents_new"], c["documents_unchanged"]) == (c["documents_in_corpus"], 0, 0)
    assert c["chunks_removed"] == c["rows_before"] == rows and c["rows_after"] == c["chunks_embedded"]
    t = lance.dataset(uri).to_table(columns=[S.CHUNK_ID, S.DOC_HASH, S.DOC_CHUNKS])
    assert t.num_rows == c["rows_after"] and len(set(t[S.CHUNK_ID].to_pylist())) == t.num_rows
    assert t[S.DOC_HASH].null_count == 0 and t[S.DOC_CHUNKS].null_count == 0
    code, m = run(tmp, corpus, "after-migrate")
    assert code == 0 and m["counts"]["documents_unchanged"] == c["documents_in_corpus"]
    assert m["counts"]["documents_tokenized"] == 0 and m["change_detection"]["table_migrated"] is False
