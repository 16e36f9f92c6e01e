"""Length-bucketed forward passes under a padded-token budget. numpy only: importable on a bare GPU machine."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def plan_batches(lengths: Sequence[int], token_budget: int, max_rows: int = 1024) -> list[np.ndarray]:
    """Indices grouped into forward passes: sorted by length, padded tokens <= budget per pass."""
    order = np.argsort(np.asarray(lengths), kind="stable")[::-1]  # longest first: OOM shows up early
    batches, cur, cur_max = [], [], 0
    for idx in order:
        n = max(1, int(lengths[idx]))
        new_max = max(cur_max, n)
        if cur and (new_max * (len(cur) + 1) > token_budget or len(cur) >= max_rows):
            batches.append(np.asarray(cur))
            cur, new_max = [], n
        cur.append(idx)
        cur_max = new_max
    if cur:
        batches.append(np.asarray(cur))
    return batches
