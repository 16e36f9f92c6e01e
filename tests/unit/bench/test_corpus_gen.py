"""bench/corpus_gen.py: deterministic by seed, real sentences, streamed shards, nightly delta versions."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.realdata

ROOT = Path(__file__).resolve().parents[3]
_spec = importlib.util.spec_from_file_location("corpus_gen", ROOT / "bench" / "corpus_gen.py")
corpus_gen = sys.modules.setdefault("corpus_gen", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(corpus_gen)


def rows(folder: Path) -> dict[str, tuple[str, str]]:
    out = {}
    for f in sorted(folder.glob("part-*")):
        if f.suffix == ".jsonl":
            recs = [json.loads(line) for line in f.read_text(encoding="utf-8").splitlines()]
        else:
            recs = pq.read_table(f).to_pylist()
        for r in recs:
            assert r["id"] not in out
            out[r["id"]] = (r["title"], r["text"])
    return out


def test_deterministic_streamed_real_text(tmp_path):
    a = corpus_gen.generate(tmp_path / "a", 2500, seed=7, shard_docs=1000)
    corpus_gen.generate(tmp_path / "b", 2500, seed=7, shard_docs=1000)
    corpus_gen.generate(tmp_path / "c", 2500, seed=8, shard_docs=1000, fmt="parquet")
    assert a["files"] == ["part-00000.jsonl", "part-00001.jsonl", "part-00002.jsonl"]
    for name in a["files"]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    ra, rc = rows(tmp_path / "a"), rows(tmp_path / "c")
    assert len(ra) == len(rc) == 2500 and next(iter(ra)) == "g7-0000000000"
    assert sum(ra[k][1] == rc[k.replace("g7", "g8")][1] for k in ra) == 0  # another seed, other documents
    pool = corpus_gen.load_pool()
    sentences = set(pool.sentences)
    title, text = ra["g7-0000001234"]
    assert title in set(pool.titles)
    assert all(s in sentences for s in corpus_gen._SENT.split(text))  # recombined real sentences
    mean_chars = sum(len(x) for _, x in ra.values()) / len(ra)
    assert 0.8 < mean_chars / pool.note_chars.mean() < 1.2  # document lengths follow the real notes
    # a document depends only on (seed, i), not on where a range starts
    ids, titles, texts = next(corpus_gen.iter_docs(pool, 3, seed=7, start=1233))
    assert ids[1] == "g7-0000001234" and (titles[1], texts[1]) == (title, text)


def test_delta_version(tmp_path):
    base = corpus_gen.generate(tmp_path / "base", 3000, seed=1)
    night = corpus_gen.generate(tmp_path / "night", 3000, seed=1, delta_seed=5, changed=0.01, added=0.005,
                                deleted=0.005, fmt="parquet")
    ids = json.loads((tmp_path / "night" / "delta_ids.json").read_text())
    b, n = rows(tmp_path / "base"), rows(tmp_path / "night")
    assert 15 <= len(ids["changed"]) <= 50 and 3 <= len(ids["deleted"]) <= 30 and len(ids["added"]) == 15
    assert night["docs"] == base["docs"] - len(ids["deleted"]) + 15 == len(n)
    assert set(n) == (set(b) - set(ids["deleted"])) | set(ids["added"])
    assert all(n[k][1] != b[k][1] and n[k][0] == b[k][0] for k in ids["changed"])
    unchanged = set(b) - set(ids["changed"]) - set(ids["deleted"])
    assert all(n[k] == b[k] for k in unchanged)
    again = corpus_gen.generate(tmp_path / "again", 3000, seed=1, delta_seed=5, changed=0.01, added=0.005,
                                deleted=0.005, fmt="parquet")
    assert json.loads((tmp_path / "again" / "delta_ids.json").read_text()) == ids and again["docs"] == night["docs"]


def test_size_from_chunks(tmp_path):
    info = corpus_gen.generate(tmp_path / "c", chunks=2000, max_tokens=128, overlap=32)
    est = info["estimate"]
    assert 6 < est["chunks_per_doc"] < 16 and 100 < est["tokens_per_chunk"] <= 128
    assert info["docs"] == -(-2000 // est["chunks_per_doc"])
