"""Encoder backends without a model: precision per backend, atomic exports, the quality gate, table metadata."""

from __future__ import annotations

import threading
import time

import pytest

from medembed import schema as S
from medembed.config import ModelConfig
from medembed.embedding.card import ModelCard, backend_precision
from medembed.embedding.onnx_export import DONE_FILE, _atomic_build, export_folder
from medembed.embedding.quality import (
    BackendNotValidated,
    judge,
    quality_record_path,
    require_quality_passed,
    write_quality_record,
)

CARD = ModelCard(source="x", path="/nowhere", model_id="org/tiny-model", revision="r1", dim=8, max_seq_length=32)


def test_backend_precision_and_config_validation():
    assert backend_precision("torch", "bfloat16") == "bfloat16"
    assert backend_precision("onnx") == "float32"
    assert backend_precision("onnx-int8") == "int8"
    with pytest.raises(ValueError, match="unknown encoder backend 'tensorrt'"):
        backend_precision("tensorrt")
    with pytest.raises(ValueError, match="backend"):
        ModelConfig(backend="tensorrt")
    assert ModelConfig().backend == "torch"


def test_old_cards_and_tables_read_as_torch_fp32():
    old = {k: v for k, v in CARD.to_dict().items() if k not in ("backend", "precision")}
    old.update(source="x", path="/nowhere")
    for k in ("query_prompt", "document_prompt"):
        old.pop(k)
    card = ModelCard.from_dict(old)
    assert (card.backend, card.precision) == ("torch", "float32")
    md = S.table_schema(8, "org/tiny-model", "r1", "onnx-int8", "int8").metadata
    assert md[S.META_BACKEND.encode()] == b"onnx-int8" and md[S.META_PRECISION.encode()] == b"int8"
    assert S.table_schema(8).metadata[S.META_BACKEND.encode()] == b"torch"


def test_export_is_atomic_under_concurrent_builders(tmp_path):
    target = export_folder(CARD, str(tmp_path), "onnx")
    calls = []

    def build(tmp):
        calls.append(tmp)
        (tmp / "model.onnx").write_bytes(b"x" * 1000)
        time.sleep(0.3)  # both builders are inside build() at the same time
        (tmp / DONE_FILE).write_text("{}")

    threads = [threading.Thread(target=_atomic_build, args=(target, build)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 2  # both raced, one rename won
    assert (target / "model.onnx").read_bytes() == b"x" * 1000 and (target / DONE_FILE).exists()
    assert sorted(p.name for p in target.parent.iterdir()) == ["onnx"]  # no temp folder left behind
    _atomic_build(target, lambda tmp: calls.append("again"))
    assert len(calls) == 2  # a finished export is reused, not rebuilt


def test_judge_thresholds():
    assert judge({"scifact": (0.640, 0.644)}, 0.995) == (True, [])
    ok, reasons = judge({"scifact": (0.630, 0.644), "med": (0.5, 0.5)}, 0.98)
    assert not ok and len(reasons) == 2 and "scifact" in reasons[0] and "0.9800" in reasons[1]
    assert judge({}, 1.0)[0] is False


def test_quality_gate(tmp_path):
    cache = str(tmp_path)
    assert require_quality_passed(CARD, cache, "torch") is None  # the reference needs no check
    with pytest.raises(BackendNotValidated, match="has no quality check"):
        require_quality_passed(CARD, cache, "onnx-int8")
    rec = write_quality_record(CARD, cache, "onnx-int8", {"scifact": (0.60, 0.65)}, 0.995, n_chunks=2000)
    assert rec["passed"] is False and quality_record_path(CARD, cache, "onnx-int8").exists()
    with pytest.raises(BackendNotValidated, match="failed its quality check.*scifact"):
        require_quality_passed(CARD, cache, "onnx-int8")
    write_quality_record(CARD, cache, "onnx-int8", {"scifact": (0.648, 0.65), "med": (0.70, 0.70)}, 0.993, 2000)
    assert require_quality_passed(CARD, cache, "onnx-int8")["mean_cosine"] == 0.993
    other_revision = ModelCard(**{**CARD.__dict__, "revision": "r2"})
    with pytest.raises(BackendNotValidated, match="has no quality check"):  # keyed by revision
        require_quality_passed(other_revision, cache, "onnx-int8")
    with pytest.raises(BackendNotValidated, match="has no quality check"):  # and by backend
        require_quality_passed(CARD, cache, "onnx")
