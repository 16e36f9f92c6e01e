"""Results JSON (MTEB-like layout, round trip), comparison tables with deltas, and the bar chart."""

from __future__ import annotations

import json
import struct

import pytest

from medembed import __version__
from medembed.evaluation.report import (
    compare,
    make_result,
    metric_label,
    plot_comparison,
    read_result,
    read_results,
    result_path,
    save_png,
    score_of,
    to_markdown,
    to_text,
    write_result,
)

BGE, MEDEMBED, OURS = "BAAI/bge-base-en-v1.5", "abhinand/MedEmbed-base-v0.1", "medembed/ours"
NDCG10 = {  # ours has no "med" result
    BGE: {"scifact": 0.7234, "med": 0.5512, "pubmedqa": 0.6801},
    MEDEMBED: {"scifact": 0.7456, "med": 0.5498, "pubmedqa": 0.7102},
    OURS: {"scifact": 0.7001, "pubmedqa": 0.6900},
}


def _result(model: str, dataset: str, ndcg: float, split: str = "test") -> dict:
    scores = {"ndcg_at_10": ndcg, "map_at_10": ndcg - 0.05, "recall_at_100": 0.9, "precision_at_1": 0.6,
              "mrr_at_10": ndcg + 0.01}
    return make_result(dataset_name=dataset, split=split, model_name=model, model_revision="rev1", scores=scores,
                       evaluation_time=12.5, num_queries=300, num_documents=5183)


def _results() -> list[dict]:
    return [_result(m, d, v) for m, per in NDCG10.items() for d, v in per.items()]


def test_result_layout_is_mteb_like():
    r = _result(BGE, "scifact", 0.7234)
    assert r == {
        "dataset_name": "scifact",
        "split": "test",
        "model": {"name": BGE, "revision": "rev1"},
        "scores": {"test": [{"ndcg_at_10": 0.7234, "map_at_10": pytest.approx(0.6734), "recall_at_100": 0.9,
                             "precision_at_1": 0.6, "mrr_at_10": pytest.approx(0.7334), "main_score": 0.7234,
                             "hf_subset": "default", "languages": ["eng-Latn"]}]},
        "evaluation_time": 12.5,
        "num_queries": 300,
        "num_documents": 5183,
        "medembed_version": __version__,
    }
    assert score_of(r) == 0.7234
    assert score_of(r, "recall_at_100") == 0.9
    with pytest.raises(KeyError, match="main metric 'ndcg_at_10'"):
        make_result(dataset_name="x", split="test", model_name="m", model_revision=None, scores={"map_at_10": 0.1},
                    evaluation_time=0, num_queries=0, num_documents=0)


def _model_and_dataset(result: dict) -> tuple[str, str]:
    return result["model"]["name"], result["dataset_name"]


def test_json_round_trip(tmp_path):
    results = _results()
    paths = [write_result(r, result_path(str(tmp_path / "results"), r["model"]["name"], r["model"]["revision"],
                                         r["dataset_name"])) for r in results]
    assert paths[0] == f"{tmp_path}/results/BAAI__bge-base-en-v1.5/rev1/scifact.json"
    assert result_path("s3://b/res/", "m", None, "med") == "s3://b/res/m/no_revision_available/med.json"
    assert read_result(paths[0]) == results[0]
    assert json.loads((tmp_path / "results/BAAI__bge-base-en-v1.5/rev1/scifact.json").read_text()) == results[0]
    back = read_results(str(tmp_path / "results"))
    assert sorted(back, key=_model_and_dataset) == sorted(results, key=_model_and_dataset)

    (tmp_path / "other.json").write_text('{"dataset_name": "x"}')
    with pytest.raises(ValueError, match="not a medembed evaluation result"):
        read_result(str(tmp_path / "other.json"))


def test_comparison_values_averages_and_deltas():
    cmp = compare(_results(), baseline=BGE)
    assert cmp.models == [BGE, MEDEMBED, OURS]
    assert cmp.datasets == ["scifact", "med", "pubmedqa"]
    assert cmp.values[OURS] == {"scifact": 0.7001, "pubmedqa": 0.6900}
    # averages: (0.7234 + 0.5512 + 0.6801) / 3 = 1.9547 / 3; (0.7456 + 0.5498 + 0.7102) / 3 = 2.0056 / 3
    assert cmp.average[BGE] == pytest.approx(1.9547 / 3, abs=1e-12)
    assert cmp.average[MEDEMBED] == pytest.approx(2.0056 / 3, abs=1e-12)
    assert cmp.average[OURS] is None  # lacks "med"
    assert cmp.delta(MEDEMBED, "scifact") == pytest.approx(0.0222, abs=1e-12)  # 0.7456 - 0.7234
    assert cmp.delta(MEDEMBED, "med") == pytest.approx(-0.0014, abs=1e-12)     # 0.5498 - 0.5512
    assert cmp.delta(MEDEMBED) == pytest.approx(0.0509 / 3, abs=1e-12)         # (2.0056 - 1.9547) / 3
    assert cmp.delta(OURS, "med") is None
    assert cmp.delta(OURS) is None
    assert cmp.delta(BGE, "med") is None

    # baseline moves first; datasets restrict and order the columns
    sub = compare(_results(), baseline=MEDEMBED, datasets=["pubmedqa", "scifact"])
    assert sub.models == [MEDEMBED, BGE, OURS]
    assert sub.datasets == ["pubmedqa", "scifact"]
    assert sub.average[OURS] == pytest.approx((0.6900 + 0.7001) / 2, abs=1e-12)
    assert compare(_results(), metric="mrr_at_10").values[BGE]["med"] == pytest.approx(0.5612)


def test_markdown_table_is_exact():
    # x100, 2 decimals; deltas in points: 74.56 - 72.34 = +2.22, 54.98 - 55.12 = -0.14, 71.02 - 68.01 = +3.01,
    # averages 65.1567 and 66.8533 -> 65.16, 66.85 (+1.70); ours 70.01 - 72.34 = -2.33, 69.00 - 68.01 = +0.99
    assert to_markdown(compare(_results(), baseline=BGE)) == (
        "nDCG@10 (x100); deltas vs BAAI/bge-base-en-v1.5\n"
        "\n"
        "| model | scifact | med | pubmedqa | average |\n"
        "|---|---:|---:|---:|---:|\n"
        "| BAAI/bge-base-en-v1.5 | 72.34 | 55.12 | 68.01 | 65.16 |\n"
        "| abhinand/MedEmbed-base-v0.1 | 74.56 (+2.22) | 54.98 (-0.14) | 71.02 (+3.01) | 66.85 (+1.70) |\n"
        "| medembed/ours | 70.01 (-2.33) | - | 69.00 (+0.99) | - |\n"
    )


def test_text_table_is_exact():
    cmp = compare([r for r in _results() if r["model"]["name"] != OURS], baseline=BGE, datasets=["scifact", "med"])
    # averages: (72.34 + 55.12) / 2 = 63.73; (74.56 + 54.98) / 2 = 64.77 -> +1.04
    assert to_text(cmp, digits=1) == (
        "nDCG@10 (x100); deltas vs BAAI/bge-base-en-v1.5\n"
        "model                            scifact          med      average\n"
        "---------------------------  -----------  -----------  -----------\n"
        "BAAI/bge-base-en-v1.5               72.3         55.1         63.7\n"
        "abhinand/MedEmbed-base-v0.1  74.6 (+2.2)  55.0 (-0.1)  64.8 (+1.0)\n"
    )
    plain = compare(_results()[:1], metric="ndcg_at_10")
    assert to_text(plain, scale=1.0, digits=4).splitlines() == [
        "nDCG@10", "model                  scifact  average", "---------------------  -------  -------",
        "BAAI/bge-base-en-v1.5   0.7234   0.7234"]


def test_comparison_errors():
    with pytest.raises(ValueError, match=r"two results for model 'BAAI/bge-base-en-v1\.5' on dataset 'med'"):
        compare([*_results(), _result(BGE, "med", 0.1)])
    with pytest.raises(ValueError, match="baseline 'nope' has no results"):
        compare(_results(), baseline="nope")
    assert compare([*_results(), _result(BGE, "med", 0.1, split="dev")], split="dev").models == [BGE]
    assert metric_label("recall_at_100") == "Recall@100"
    assert metric_label("main_score") == "main_score"


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.mark.parametrize("include_average", [False, True])
def test_bar_chart(tmp_path, include_average):
    pytest.importorskip("matplotlib", reason="matplotlib not installed")
    cmp = compare(_results(), baseline=BGE)
    fig = plot_comparison(cmp, include_average=include_average)
    ax = fig.axes[0]
    groups = 3 + include_average
    assert len(ax.patches) == 3 * groups  # one bar per model and group, a gap bar where a value is missing
    assert [t.get_text() for t in ax.get_xticklabels()] == ["scifact", "med", "pubmedqa"] + (
        ["average"] if include_average else [])
    heights = [round(p.get_height(), 2) for p in ax.patches]
    assert heights[:groups] == [72.34, 55.12, 68.01] + ([65.16] if include_average else [])  # baseline's bars
    labels = {t.get_text() for t in ax.texts}
    assert {"72.3", "74.6", "70.0", "55.0"} <= labels
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [BGE, MEDEMBED, OURS]

    out = save_png(fig, str(tmp_path / "charts" / "ndcg.png"))
    data = (tmp_path / "charts" / "ndcg.png").read_bytes()
    assert out.endswith("ndcg.png")
    assert len(data) > 10_000
    width, height = _png_size(data)
    assert width > 400
    assert height > 300
