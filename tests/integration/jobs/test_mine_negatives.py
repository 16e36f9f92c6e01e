"""Hard-negative mining on a local Ray instance: job driver, Parquet output, equality with a local computation."""

from __future__ import annotations

import glob
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from medembed.mining import columns as M
from medembed.mining.output import flat_rows
from medembed.mining.selection import Selection, SelectParams, select_negatives
from medembed.synth import columns as P
from tests.support.builders import sample_pairs_table

pytestmark = pytest.mark.integration

N_NOTES = 30
WINDOW = {"min_rank": 2, "max_rank": 20, "num_negatives": 4, "top_k": 30, "relative_margin": 0.05}


def job_sets(tmp: Path, *extra: str) -> list[str]:
    """The job's config overrides for a run under ``tmp``."""
    return [f"pairs.path={tmp / 'pairs.parquet'}", f"candidates.store_uri={tmp / 'lancedb'}",
            f"output.dir={tmp / 'triplets'}", f"output.run_dir={tmp / 'runs'}", "output.run_name=it",
            "mining.batch_size=32", "mining.num_actors=1", "mining.num_cpus=1", "embed.num_cpus=1",
            "embed.torch_threads=1", *[f"mining.{k}={v}" for k, v in WINDOW.items()], *extra]


def run_mining(tmp: Path, pairs, *extra: str) -> tuple[dict, list[str]]:
    """Run the job on ``pairs`` under ``tmp``; (manifest, triplet files)."""
    from medembed.app.runner import main_for

    pq.write_table(pairs, tmp / "pairs.parquet")
    argv = ["--config", "mine_negatives"] + [a for s in job_sets(tmp, *extra) for a in ("--set", s)]
    assert main_for("mine_negatives", argv) == 0
    manifest = json.loads((tmp / "runs" / "it" / "manifest.json").read_text())
    return manifest, sorted(glob.glob(str(tmp / "triplets" / "it" / "triplets" / "*.parquet")))


@pytest.fixture(scope="module")
def mined_run(tmp_path_factory, ray_local):
    pairs = sample_pairs_table(N_NOTES)
    manifest, files = run_mining(tmp_path_factory.mktemp("mining"), pairs)
    assert manifest["execution"] == "in driver"  # a tiny CPU job: the driver embeds the positives and mines
    return pairs, manifest, files


def test_a_restarted_worker_encodes_the_queries_it_lost(mined_run):
    """The worker mines from queries it encoded ahead, or (restarted, state lost) encodes them itself: same rows."""
    from medembed.embedding.card import resolve_card
    from medembed.embedding.encoders import encoder_actor_kwargs
    from medembed.jobs.mine_negatives import miner_kwargs
    from medembed.mining.config import MineNegativesJobConfig
    from medembed.mining.one_actor import MiningWorker
    from medembed.runtime.storage import DEFAULT_STORAGE

    pairs, manifest, files = mined_run
    cfg = MineNegativesJobConfig.model_validate(manifest["config"])  # the config the job ran with
    worker = MiningWorker(encoder_actor_kwargs(cfg.model, cfg.embed, DEFAULT_STORAGE, resolve_card(cfg.model)))
    db_uri, table = manifest["candidates"]["uri"].rsplit("/", 1)
    miner = miner_kwargs(cfg, db_uri, table.removesuffix(".lance"))  # what the job gives its miner
    assert worker.encode_queries(pairs) == pairs.num_rows
    batch = pairs.slice(8, 16)
    ahead = worker.mine(8, batch, miner).to_pylist()
    worker.query_vectors = None  # what a restarted actor has
    lost = worker.mine(8, batch, miner).to_pylist()
    assert [r[M.QUERY_ID] for r in ahead] == batch[P.PAIR_ID].to_pylist()
    job = {r[M.QUERY_ID]: r for r in pq.read_table(files).to_pylist()}
    for a, b in zip(ahead, lost):
        assert a[M.NEGATIVE_IDS] == b[M.NEGATIVE_IDS] == job[a[M.QUERY_ID]][M.NEGATIVE_IDS]
        assert np.allclose(a[M.NEGATIVE_SCORES], b[M.NEGATIVE_SCORES], atol=1e-5)


def test_an_in_process_worker_is_called_like_an_actor(ray_local):
    """Calls run at once, in order, results behind ObjectRefs; an error surfaces at the call; stop drops the object."""
    from medembed.runtime.in_process import InProcess, stop

    class Worker:
        def __init__(self):
            self.seen = []

        def add(self, x):
            self.seen.append(x)
            return list(self.seen)

        def fail(self):
            raise ValueError("row 3: bad passage")

    w = InProcess(Worker())
    refs = [w.add.remote(1), w.add.remote(2)]
    assert ray_local.get(refs) == [[1], [1, 2]]
    with pytest.raises(ValueError, match="row 3"):
        w.fail.remote()
    with pytest.raises(AttributeError):
        getattr(w, "_hidden")  # noqa: B009
    stop(w)
    assert w.obj is None


@pytest.mark.parametrize("execution, sets", [
    ("one actor", ["mining.in_driver_max_pairs=0"]),
    ("actor pools", ["mining.one_actor_max_pairs=0", "mining.batch_size=7", "embed.batch_size=16"])])
def test_actors_give_the_same_triplets_as_the_driver(mined_run, tmp_path, execution, sets):
    pairs, one, one_files = mined_run
    pools, pool_files = run_mining(tmp_path, pairs, *sets)
    assert pools["execution"] == execution
    a = {r[M.QUERY_ID]: r for r in pq.read_table(one_files).to_pylist()}
    b = {r[M.QUERY_ID]: r for r in pq.read_table(pool_files).to_pylist()}
    assert a.keys() == b.keys() and len(a) == pairs.num_rows
    for k, row in a.items():
        assert row[M.NEGATIVE_IDS] == b[k][M.NEGATIVE_IDS], k
        assert np.allclose(row[M.NEGATIVE_SCORES], b[k][M.NEGATIVE_SCORES], atol=1e-4)
        assert row[M.POSITIVE_SCORE] == pytest.approx(b[k][M.POSITIVE_SCORE], abs=1e-4)
    assert pools["counts"] == one["counts"]


def test_manifest_accounts_for_every_query(mined_run):
    pairs, manifest, _ = mined_run
    c = manifest["counts"]
    assert manifest["status"] == "succeeded"
    assert c["queries_in"] == pairs.num_rows
    assert c["queries_complete"] + c["queries_short"] == pairs.num_rows
    assert c["queries_short"] == sum(c["queries_short_by_reason"].values())
    assert c["candidates"] == len(set(pairs[P.PASSAGE].to_pylist()))
    fnf = c["false_negative_filter"]
    assert fnf["removed"] == fnf["removed_absolute_margin"] + fnf["removed_relative_margin"]
    assert fnf["removed_share"] == round(fnf["removed"] / fnf["considered"], 4)
    assert manifest["throughput"]["queries_per_s"] > 0


def test_triplets_load_with_datasets_and_respect_the_rules(mined_run):
    import datasets

    pairs, manifest, files = mined_run
    ds = datasets.load_dataset("parquet", data_files=files, split="train")
    assert ds.column_names[:3] == [M.QUERY, M.POSITIVE, M.NEGATIVES]
    assert len(ds) == pairs.num_rows == manifest["counts"]["rows_out"]
    assert sum(len(r) for r in ds[M.NEGATIVES]) == manifest["counts"]["negatives_out"]
    for row in ds:
        assert row[M.N_NEGATIVES] == len(row[M.NEGATIVES]) <= WINDOW["num_negatives"]
        assert (row[M.SHORTFALL_REASON] is None) == (row[M.N_NEGATIVES] == WINDOW["num_negatives"])
        assert row[M.POSITIVE] not in row[M.NEGATIVES]
        assert row[M.POSITIVE_ID] not in row[M.NEGATIVE_IDS]
        assert row[M.QUERY_NOTE_ID] not in row[M.NEGATIVE_NOTE_IDS]
        pos = row[M.POSITIVE_SCORE]
        threshold = pos - abs(pos) * WINDOW["relative_margin"]
        assert all(s <= threshold + 1e-6 for s in row[M.NEGATIVE_SCORES])
        assert row[M.NEGATIVE_SCORES] == sorted(row[M.NEGATIVE_SCORES], reverse=True)


def candidates_of(pairs) -> tuple[list[str], np.ndarray]:
    """The candidate passages (sorted) and the note of each, as the job builds them from the pairs."""
    passages = sorted(set(pairs[P.PASSAGE].to_pylist()))
    first_note: dict[str, str] = {}
    for n, p in zip(pairs[P.NOTE_ID].to_pylist(), pairs[P.PASSAGE].to_pylist()):
        first_note.setdefault(p, n)
    return passages, np.asarray([first_note[p] for p in passages], dtype=object)


def local_selection(scores: np.ndarray, row: dict, passages: list[str], notes: np.ndarray, top_k: int,
                    params: SelectParams) -> tuple[Selection, np.ndarray, int]:
    """The selection rule applied by hand to one query's scores over every candidate: (selection, order, pos)."""
    order = np.argsort(-scores, kind="stable")[:top_k]
    pos = passages.index(row[P.PASSAGE])
    sel = select_negatives(scores[order], order == pos, notes[order] == row[P.NOTE_ID], scores[pos], params)
    return sel, order, pos


def test_ray_result_equals_a_local_numpy_computation(mined_run):
    from medembed.config import ModelConfig
    from medembed.embedding.encoders import build_encoder
    from medembed.runtime.storage import DEFAULT_STORAGE

    pairs, manifest, files = mined_run
    got = {r[M.QUERY_ID]: r for r in pq.read_table(files).to_pylist()}
    enc = build_encoder(ModelConfig(), None, DEFAULT_STORAGE)
    passages, notes = candidates_of(pairs)
    scores = enc.encode_queries(pairs[P.QUERY].to_pylist()) @ enc.encode_documents(passages).T
    params = SelectParams(**{k: v for k, v in WINDOW.items() if k != "top_k"})
    complete = 0
    for i, row in enumerate(pairs.to_pylist()):
        sel, order, _ = local_selection(scores[i], row, passages, notes, WINDOW["top_k"], params)
        out = got[row[P.PAIR_ID]]
        assert [passages[order[j]] for j in sel.indices] == out[M.NEGATIVES]
        assert np.allclose(sel.scores, out[M.NEGATIVE_SCORES], atol=1e-4)
        assert sel.reason == out[M.SHORTFALL_REASON]
        complete += sel.reason is None
    assert manifest["counts"]["queries_complete"] == complete


def test_flat_rows_explode_one_row_per_negative(mined_run):
    import datasets

    _, manifest, files = mined_run
    nested = pq.read_table(files)
    flat = flat_rows(nested)
    assert flat.num_rows == manifest["counts"]["negatives_out"]
    assert flat.column_names[:3] == [M.QUERY, M.POSITIVE, M.NEGATIVE]
    first = nested.to_pylist()[0]
    rows = [r for r in flat.to_pylist() if r[M.QUERY_ID] == first[M.QUERY_ID]]
    assert [r[M.NEGATIVE] for r in rows] == first[M.NEGATIVES]
    assert [r[M.NEGATIVE_RANK] for r in rows] == list(range(first[M.N_NEGATIVES]))
    path = Path(files[0]).parent.parent / "flat.parquet"
    pq.write_table(flat, path)
    assert len(datasets.load_dataset("parquet", data_files=str(path), split="train")) == flat.num_rows


HYBRID = {"min_rank": 0, "max_rank": 20, "num_negatives": 3, "top_k": 30, "absolute_margin": 0.5}


def test_hybrid_teacher_ranks_by_fused_scores_like_a_local_computation(tmp_path, ray_local):
    """mining.teacher=hybrid: negatives and scores are z(cosine) + w * z(BM25) over every candidate."""
    from medembed.app.runner import main_for
    from medembed.config import ModelConfig
    from medembed.embedding.encoders import build_encoder
    from medembed.mining.lexical import BM25, hybrid_scores
    from medembed.runtime.storage import DEFAULT_STORAGE
    from medembed.training.data import read_triplets

    pairs = sample_pairs_table(N_NOTES)
    pq.write_table(pairs, tmp_path / "pairs.parquet")
    sets = [f"pairs.path={tmp_path / 'pairs.parquet'}", f"candidates.store_uri={tmp_path / 'lancedb'}",
            f"output.dir={tmp_path / 'triplets'}", f"output.run_dir={tmp_path / 'runs'}", "output.run_name=hy",
            "mining.batch_size=32", "mining.num_cpus=1", "embed.num_cpus=1", "embed.torch_threads=1",
            "mining.teacher=hybrid", "mining.lexical_weight=0.5", *[f"mining.{k}={v}" for k, v in HYBRID.items()]]
    assert main_for("mine_negatives", ["--config", "mine_negatives"] + [a for s in sets for a in ("--set", s)]) == 0
    out_dir = tmp_path / "triplets" / "hy" / "triplets"
    got = {r[M.QUERY_ID]: r for r in pq.read_table(sorted(glob.glob(str(out_dir / "*.parquet")))).to_pylist()}

    enc = build_encoder(ModelConfig(), None, DEFAULT_STORAGE)
    passages, notes = candidates_of(pairs)
    queries = pairs[P.QUERY].to_pylist()
    dense = enc.encode_queries(queries) @ enc.encode_documents(passages).T
    fused = hybrid_scores(dense, BM25(passages).scores(queries), 0.5)
    params = SelectParams(relative_margin=None, **{k: v for k, v in HYBRID.items() if k != "top_k"})
    picked_differently = 0
    for i, row in enumerate(pairs.to_pylist()):
        sel, order, pos = local_selection(fused[i], row, passages, notes, HYBRID["top_k"], params)
        out = got[row[P.PAIR_ID]]
        assert [passages[order[j]] for j in sel.indices] == out[M.NEGATIVES]
        assert np.allclose(sel.scores, out[M.NEGATIVE_SCORES], atol=1e-3)
        assert out[M.POSITIVE_SCORE] == pytest.approx(float(fused[i][pos]), abs=1e-3)
        assert all(s + HYBRID["absolute_margin"] <= out[M.POSITIVE_SCORE] + 1e-4 for s in out[M.NEGATIVE_SCORES])
        picked_differently += list(np.argsort(-dense[i], kind="stable")[:5]) != list(order[:5])
    assert picked_differently > 0  # BM25 changed some rankings: the teacher is not the dense one
    trip = read_triplets(str(out_dir))
    assert trip.scores == "hybrid(lexical_weight=0.5)"  # training knows what it distils
