"""Mining with corpus chunks from a `medembed embed` table as extra candidates (candidates.table)."""

from __future__ import annotations

import glob
import json

import pyarrow.parquet as pq
import pytest

from medembed.mining import columns as M
from tests.support.builders import sample_pairs_table
from tests.support.paths import REPO

pytestmark = [pytest.mark.integration, pytest.mark.timeout(400)]


def test_corpus_table_chunks_become_candidates(ray_local, tmp_path, monkeypatch):

    from medembed.app.runner import main_for

    monkeypatch.chdir(REPO)
    db = tmp_path / "db"
    assert main_for("embed", ["--config", "embed", "--set", f"store.uri={db}",
                       "--set", f"output.run_dir={tmp_path / 'runs'}", "--set", "input.limit=60"]) == 0
    pairs = sample_pairs_table()
    pq.write_table(pairs, tmp_path / "pairs.parquet")
    sets = [f"pairs.path={tmp_path / 'pairs.parquet'}", f"candidates.uri={db}",
            "candidates.table=sample__all_minilm_l6_v2", f"candidates.store_uri={tmp_path / 'cands'}",
            f"output.dir={tmp_path / 'triplets'}", f"output.run_dir={tmp_path / 'runs'}", "output.run_name=mc",
            "mining.num_actors=1", "mining.min_rank=0", "mining.max_rank=30", "mining.num_negatives=3"]
    assert main_for("mine_negatives", ["--config", "mine_negatives"] + [a for s in sets for a in ("--set", s)]) == 0
    manifest = json.loads((tmp_path / "runs" / "mc" / "manifest.json").read_text())
    positives = len(set(pairs.column("passage").to_pylist()))
    assert manifest["candidates"]["positives"] == positives
    assert manifest["candidates"]["corpus_chunks"] == 60  # one chunk per short sample note
    assert manifest["counts"]["candidates"] == positives + 60
    rows = pq.read_table(glob.glob(str(tmp_path / "triplets" / "mc" / "triplets" / "*.parquet"))).to_pylist()
    chosen = [i for r in rows for i in r[M.NEGATIVE_IDS]]
    assert any("#" in i for i in chosen)  # corpus chunk ids (doc#index) are picked as negatives
    for r in rows:
        assert r[M.QUERY_NOTE_ID] not in r[M.NEGATIVE_NOTE_IDS]  # a note's own chunks are excluded too
