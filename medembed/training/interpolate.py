"""Weight interpolation with the base model, the weight picked on the dev split.

``merged = a * tuned + (1 - a) * base`` for every floating-point tensor (integer buffers such as
position ids are taken from the tuned model). ``a`` is the grid value with the best dev nDCG@10
(ties go to the larger ``a``); retrieval on the small dev split is an exact in-process top-k.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from medembed.evaluation.datasets import RetrievalDataset
from medembed.evaluation.retrieval import cosine_scores, exact_scores

log = logging.getLogger(__name__)

SELECT_METRIC = "ndcg_at_10"


def interpolate_state(base: Mapping[str, Any], tuned: Mapping[str, Any], alpha: float) -> dict[str, Any]:
    """``alpha * tuned + (1 - alpha) * base`` per floating tensor; both state dicts must have the same keys."""
    if set(base) != set(tuned):
        raise ValueError(f"state dicts differ in keys: {sorted(set(base) ^ set(tuned))[:5]}")
    out = {}
    for k, t in tuned.items():
        b = base[k]
        if t.shape != b.shape:
            raise ValueError(f"{k}: shape {tuple(t.shape)} (tuned) != {tuple(b.shape)} (base)")
        out[k] = (alpha * t.float() + (1.0 - alpha) * b.float()).to(t.dtype) if t.is_floating_point() else t.clone()
    return out


def dev_scores(st_model: Any, dev: RetrievalDataset, prompts: Mapping[str, str], query_max_length: int,
               passage_max_length: int, batch_size: int = 64) -> dict[str, float]:
    """Mean retrieval metrics of ``st_model`` on ``dev`` (queries and passages with their prompts and lengths)."""
    st_model.max_seq_length = query_max_length
    q = st_model.encode([prompts["query"] + t for t in dev.queries.texts], batch_size=batch_size,
                        convert_to_numpy=True, show_progress_bar=False)
    st_model.max_seq_length = passage_max_length
    d = st_model.encode([prompts["document"] + t for t in dev.corpus.texts], batch_size=batch_size,
                        convert_to_numpy=True, show_progress_bar=False)
    return exact_scores(cosine_scores(q, d), dev.queries.ids, dev.corpus.ids, dev.qrels).mean


def choose_alpha(st_model: Any, base: Mapping[str, Any], tuned: Mapping[str, Any], grid: Iterable[float],
                 score: Any) -> tuple[float, dict[float, dict[str, float]]]:
    """(best alpha, dev metrics per alpha incl. 0.0 = the base model); ``score(st_model) -> metrics``.

    Leaves ``st_model`` holding the merged weights of the best alpha.
    """
    results: dict[float, dict[str, float]] = {}
    for a in sorted({0.0, *grid}):
        st_model.load_state_dict(interpolate_state(base, tuned, a))
        results[a] = score(st_model)
        log.info("interpolation alpha=%.2f: dev %s=%.4f", a, SELECT_METRIC, results[a][SELECT_METRIC])
    candidates = sorted(set(grid))
    best = max(candidates, key=lambda a: (results[a][SELECT_METRIC], a))
    st_model.load_state_dict(interpolate_state(base, tuned, best))
    return best, results
