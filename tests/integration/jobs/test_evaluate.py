"""`medembed eval` on a local Ray instance: scores equal a plain local computation, results/chart files, table reuse."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from medembed.embedding.chunking import document_input
from medembed.evaluation.datasets import dataset_from_pairs, load_beir
from medembed.evaluation.metrics import evaluate, metric_names
from tests.support.beir import TINY_CORPUS, TINY_QRELS, TINY_QUERIES, write_beir
from tests.support.builders import sample_pairs_table
from tests.support.paths import SAMPLE

pytestmark = pytest.mark.integration

K_VALUES = [1, 3, 5, 10, 100]
CANDIDATE_PROMPT = "query: "  # the candidate differs from the base only by its query prompt
N_PAIR_NOTES = 6


def _corpus() -> list[dict]:
    notes = [json.loads(line) for line in SAMPLE.read_text().splitlines() if line.startswith("{")][:8]
    return TINY_CORPUS + [{"_id": f"n{i}", "title": n.get("title", ""), "text": n["text"]} for i, n in enumerate(notes)]


def _run(tmp: Path, name: str) -> dict:
    from medembed.app.runner import main_for

    models = ("[{name: 'bundled:all-MiniLM-L6-v2', label: base}, "
              f"{{name: 'bundled:all-MiniLM-L6-v2', label: candidate, query_prompt: '{CANDIDATE_PROMPT}'}}]")
    sets = [f"models={models}", f"datasets=[{{name: tiny, uri: '{tmp / 'tiny'}', split: test}}]",
            f"pairs_dev.path={tmp / 'pairs.parquet'}", "pairs_dev.dev_fraction=1.0",
            f"store.uri={tmp / 'lancedb'}", f"output.dir={tmp / 'eval'}", f"output.run_dir={tmp / 'runs'}",
            f"output.run_name={name}", "embed.batch_size=8", "embed.torch_threads=1"]
    argv = ["--config", "evaluate"] + [a for s in sets for a in ("--set", s)]
    assert main_for("evaluate", argv) == 0
    return json.loads((tmp / "runs" / name / "manifest.json").read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory, ray_local):
    tmp = tmp_path_factory.mktemp("evaluate")
    write_beir(tmp / "tiny", _corpus(), TINY_QUERIES, TINY_QRELS)
    pq.write_table(sample_pairs_table(N_PAIR_NOTES), tmp / "pairs.parquet")
    first = _run(tmp, "first")
    second = _run(tmp, "second")
    return tmp, first, second


def _local_scores(st_model, tmp: Path) -> dict[str, dict[str, dict[str, float]]]:
    """The same evaluation without Ray or LanceDB: encode, numpy top-k, metrics.evaluate."""
    datasets = [load_beir(str(tmp / "tiny"), "test", name="tiny"),
                dataset_from_pairs(pq.read_table(tmp / "pairs.parquet"), name="pairs-dev", split="dev")]
    out: dict[str, dict[str, dict[str, float]]] = {}
    for label, prompt in (("base", None), ("candidate", CANDIDATE_PROMPT)):
        for ds in datasets:
            docs = st_model.encode([document_input(t, x) for t, x in zip(ds.corpus.titles, ds.corpus.texts)],
                                   normalize_embeddings=True)
            qs = st_model.encode(ds.queries.texts, prompt=prompt, normalize_embeddings=True)
            sims = qs @ docs.T
            run = {}
            for qid, row in zip(ds.queries.ids, sims):
                top = np.argsort(-row, kind="stable")[:100]
                run[qid] = {ds.corpus.ids[i]: float(row[i]) for i in top}
            out.setdefault(label, {})[ds.name] = evaluate(run, ds.qrels, K_VALUES).mean
    return out


def test_ray_scores_equal_a_local_computation(runs, st_model):
    tmp, first, _ = runs
    expected = _local_scores(st_model, tmp)
    assert first["status"] == "succeeded"
    for key, path in first["output"]["results"].items():
        label, dataset = key.split("/")
        result = json.loads(Path(path).read_text())
        entry = result["scores"][result["split"]][0]
        assert {m: entry[m] for m in metric_names(K_VALUES)} == expected[label][dataset], key
        assert entry["main_score"] == expected[label][dataset]["ndcg_at_10"]
        assert result["model"]["name"] == label and result["dataset_name"] == dataset
    assert sorted(first["output"]["results"]) == ["base/pairs-dev", "base/tiny", "candidate/pairs-dev",
                                                   "candidate/tiny"]
    n_pairs = sample_pairs_table(N_PAIR_NOTES).num_rows
    assert first["datasets"]["pairs-dev"]["queries"] == n_pairs
    assert first["datasets"]["tiny"] == {"split": "test", "documents": len(_corpus()), "queries": 2}
    assert first["counts"]["queries_evaluated"] == 2 * (2 + n_pairs)


def test_comparison_table_and_chart_hold_the_numbers(runs):
    _, first, _ = runs
    out = first["output"]
    md = Path(out["comparison"]).read_text()
    values = first["comparison"]["values"]
    for dataset in ("tiny", "pairs-dev"):
        base, cand = values["base"][dataset], values["candidate"][dataset]
        assert f"{base * 100:.2f}" in md
        assert f"{cand * 100:.2f} ({(cand - base) * 100:+.2f})" in md
        assert first["comparison"]["delta"]["candidate"][dataset] == pytest.approx(cand - base)
        assert base == first["scores"]["base"][dataset]["ndcg_at_10"]
    assert md.splitlines()[0] == "nDCG@10 (x100); deltas vs base"
    png = Path(out["chart"])
    assert png.name == "ndcg_at_10.png" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    marker = json.loads((Path(out["artifact"]) / "_SUCCESS.json").read_text())
    assert marker["kind"] == "evaluation" and marker["run_id"] == "first"
    assert marker["scores"]["candidate"]["tiny"] == values["candidate"]["tiny"]


def test_corpus_tables_are_built_once_and_reused(runs):
    _, first, second = runs
    # the candidate embeds documents exactly as the base does (same document prompt): its tables are the base's
    assert first["counts"]["tables_built"] == 2 and first["counts"]["tables_reused"] == 2
    assert first["counts"]["documents_embedded"] == len(_corpus()) + first["datasets"]["pairs-dev"]["documents"]
    assert second["counts"]["tables_built"] == 0 and second["counts"]["tables_reused"] == 4
    assert second["counts"]["documents_embedded"] == 0
    assert {t["built_by"] for t in second["tables"].values()} == {"first"}
    assert second["scores"] == first["scores"]
