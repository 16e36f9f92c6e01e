"""Quality records: may a backend's vectors go into tables? One JSON file per model revision and backend.

``bench/encoder_backends.py --quality`` compares a backend with torch fp32 (nDCG@10 on BEIR test
splits, mean cosine on real chunks) and writes ``<model cache>/exports/<model>-<key>/quality/
<backend>.json``. The embed job refuses to write a non-torch backend's vectors unless that record
exists for the same model id and revision and says ``passed``.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from medembed.embedding.card import ModelCard
from medembed.embedding.onnx_export import model_cache_folder

MAX_NDCG_DROP = 0.005  # 0.5 nDCG@10 points
MIN_MEAN_COSINE = 0.99


class BackendNotValidated(RuntimeError):
    """A backend's vectors were about to be written without a passed quality check."""


def quality_record_path(card: ModelCard, cache_dir: str, backend: str) -> Path:
    return model_cache_folder(card, cache_dir) / "quality" / f"{backend}.json"


def judge(ndcg: dict[str, tuple[float, float]], mean_cosine: float) -> tuple[bool, list[str]]:
    """(passed, reasons it failed) from ``{dataset: (backend nDCG@10, torch nDCG@10)}`` and the mean cosine."""
    reasons = [f"{name}: nDCG@10 {got:.4f} is more than {MAX_NDCG_DROP:.3f} below torch fp32's {ref:.4f}"
               for name, (got, ref) in sorted(ndcg.items()) if got < ref - MAX_NDCG_DROP]
    if mean_cosine < MIN_MEAN_COSINE:
        reasons.append(f"mean cosine to torch fp32 vectors {mean_cosine:.4f} < {MIN_MEAN_COSINE}")
    if not ndcg:
        reasons.append("no retrieval dataset was evaluated")
    return not reasons, reasons


def write_quality_record(card: ModelCard, cache_dir: str, backend: str, ndcg: dict[str, tuple[float, float]],
                         mean_cosine: float, n_chunks: int, **extra: Any) -> dict[str, Any]:
    """Judge and record one backend's comparison with torch fp32 (atomic write); returns the record."""
    passed, reasons = judge(ndcg, mean_cosine)
    record = {"model_id": card.model_id, "revision": card.revision, "backend": backend, "passed": passed,
              "reasons": reasons, "ndcg_at_10": {k: {"backend": v[0], "torch_fp32": v[1]} for k, v in ndcg.items()},
              "mean_cosine": mean_cosine, "n_chunks": n_chunks, "max_ndcg_drop": MAX_NDCG_DROP,
              "min_mean_cosine": MIN_MEAN_COSINE, "checked_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              **extra}
    path = quality_record_path(card, cache_dir, backend)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".quality", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=2, sort_keys=True)
    os.replace(tmp, path)
    return record


def read_quality_record(card: ModelCard, cache_dir: str, backend: str) -> dict[str, Any] | None:
    path = quality_record_path(card, cache_dir, backend)
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def require_quality_passed(card: ModelCard, cache_dir: str, backend: str | None = None) -> dict[str, Any] | None:
    """Raise unless ``backend`` (default: the card's) may write vectors; torch always may."""
    backend = backend or card.backend
    if backend in ("torch", "instrument"):  # instrument: hash vectors for benchmarks, nothing to validate
        return None
    path = quality_record_path(card, cache_dir, backend)
    record = read_quality_record(card, cache_dir, backend)
    hint = (f"run `python bench/encoder_backends.py --quality --backends {backend}` with the same model.name and "
            "model.cache_dir first")
    if record is None:
        raise BackendNotValidated(f"backend {backend!r} of model {card.model_id} ({card.revision}) has no quality "
                                  f"check in {path}: {hint}")
    if record.get("model_id") != card.model_id or record.get("revision") != card.revision:
        raise BackendNotValidated(f"quality record {path} is for {record.get('model_id')} ({record.get('revision')}), "
                                  f"not {card.model_id} ({card.revision}): {hint}")
    if not record.get("passed"):
        raise BackendNotValidated(f"backend {backend!r} failed its quality check ({path}): "
                                  f"{'; '.join(record.get('reasons') or ['no reason recorded'])}")
    return record
