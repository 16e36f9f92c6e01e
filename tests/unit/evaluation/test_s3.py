"""Datasets, results and charts on S3: a loopback S3 API (moto server), reached through storage_options."""

from __future__ import annotations

import logging

import pytest

from medembed.evaluation.datasets import load_beir
from medembed.evaluation.report import compare, make_result, read_result, read_results, result_path, write_result
from tests.support.beir import write_beir
from tests.support.s3_server import CREDENTIALS, REGION, S3Server

pytest.importorskip("moto", reason="moto not installed")
pytest.importorskip("s3fs", reason="s3fs not installed")

BUCKET = "medembed-eval"


@pytest.fixture(scope="module")
def s3():
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with S3Server() as server:
        server.client().create_bucket(Bucket=BUCKET)
        yield server


@pytest.fixture
def options(s3) -> dict:
    """Explicit fsspec options, so the test does not depend on (or touch) the AWS_* environment."""
    return {"key": CREDENTIALS["AWS_ACCESS_KEY_ID"], "secret": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            "client_kwargs": {"endpoint_url": s3.endpoint, "region_name": REGION}}


def test_beir_folder_on_s3(s3, options, tmp_path):
    s3.upload_dir(write_beir(tmp_path / "tiny"), BUCKET, "sets/tiny")
    ds = load_beir(f"s3://{BUCKET}/sets/tiny/", "test", storage_options=options)
    assert ds.name == "tiny"
    assert ds.queries.ids == ["q1", "q2"]
    assert ds.qrels == {"q1": {"d1": 2}, "q2": {"d2": 1, "d4": 0}}
    with pytest.raises(FileNotFoundError, match=r"tiny/qrels/dev\.tsv not found"):
        load_beir(f"s3://{BUCKET}/sets/tiny", "dev", storage_options=options)


def test_results_and_chart_on_s3(s3, options):
    root = f"s3://{BUCKET}/results"
    written = []
    for model, value in (("BAAI/bge-base-en-v1.5", 0.70), ("medembed/ours", 0.75)):
        r = make_result(dataset_name="tiny", split="test", model_name=model, model_revision="r1",
                        scores={"ndcg_at_10": value}, evaluation_time=1.0, num_queries=2, num_documents=4)
        written.append(r)
        uri = write_result(r, result_path(root, model, "r1", "tiny"), storage_options=options)
        assert read_result(uri, storage_options=options) == r
    assert sorted(s3.keys(BUCKET, "results/")) == ["results/BAAI__bge-base-en-v1.5/r1/tiny.json",
                                                   "results/medembed__ours/r1/tiny.json"]
    cmp = compare(read_results(root, storage_options=options), baseline="BAAI/bge-base-en-v1.5")
    assert cmp.delta("medembed/ours", "tiny") == pytest.approx(0.05)

    pytest.importorskip("matplotlib", reason="matplotlib not installed")
    from medembed.evaluation.report import plot_comparison, save_png

    save_png(plot_comparison(cmp), f"s3://{BUCKET}/charts/ndcg.png", storage_options=options)
    body = s3.client().get_object(Bucket=BUCKET, Key="charts/ndcg.png")["Body"].read()
    assert body[:8] == b"\x89PNG\r\n\x1a\n"
