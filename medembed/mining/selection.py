"""Choosing a query's negatives from its retrieved candidates: pure numpy, no Ray, no model.

Semantics follow sentence-transformers' ``mine_hard_negatives`` (``sampling_strategy="top"``):

1. the positive (and any candidate with the positive's text) is removed;
2. with ``exclude_same_note``, passages from the query's note are removed;
3. the false-negative filter removes candidates too close to the positive score ``p``:
   ``absolute_margin``: ``score + absolute_margin > p``; then ``relative_margin``:
   ``score > p - |p| * relative_margin`` (ST's sign-safe form of ``p * (1 - margin)``);
4. of the survivors, sorted by score, positions ``[min_rank, max_rank)`` form the window (0-based,
   ST's ``range_min``/``range_max``), and the first ``num_negatives`` of it are the negatives.

A query left with fewer than ``num_negatives`` gets a shortfall reason: the first step after which
fewer than ``min_rank + num_negatives`` candidates remained.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from medembed.mining import columns as C


@dataclass(frozen=True)
class SelectParams:
    num_negatives: int
    min_rank: int = 0
    max_rank: int = 100
    relative_margin: float | None = 0.05
    absolute_margin: float | None = None
    exclude_same_note: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.min_rank < self.max_rank or not 0 < self.num_negatives <= self.max_rank - self.min_rank:
            raise ValueError(f"{self.num_negatives} negatives do not fit the rank window "
                             f"[{self.min_rank}, {self.max_rank})")


@dataclass
class Selection:
    indices: list[int] = field(default_factory=list)  # positions in the candidate arrays, hardest first
    scores: list[float] = field(default_factory=list)
    reason: str | None = None
    retrieved: int = 0
    removed_same_note: int = 0
    considered: int = 0  # candidates entering the false-negative filter
    removed_absolute: int = 0
    removed_relative: int = 0

    @property
    def removed_by_margin(self) -> int:
        return self.removed_absolute + self.removed_relative


def select_negatives(scores: np.ndarray, is_positive: np.ndarray, same_note: np.ndarray, positive_score: float,
                     p: SelectParams) -> Selection:
    """Negatives of one query. ``scores``/``is_positive``/``same_note`` are aligned per candidate."""
    scores = np.asarray(scores, dtype=np.float32)
    order = np.argsort(-scores, kind="stable")
    keep = ~np.asarray(is_positive, dtype=bool)[order]
    sel = Selection(retrieved=len(scores))
    need = p.min_rank + p.num_negatives
    counts = [int(keep.sum())]
    if p.exclude_same_note:
        drop = keep & np.asarray(same_note, dtype=bool)[order]
        sel.removed_same_note = int(drop.sum())
        keep &= ~drop
    counts.append(int(keep.sum()))
    sel.considered = counts[-1]
    s = scores[order]
    pos = np.float32(positive_score)
    if p.absolute_margin is not None:
        drop = keep & (s + np.float32(p.absolute_margin) > pos)
        sel.removed_absolute = int(drop.sum())
        keep &= ~drop
    if p.relative_margin is not None:
        drop = keep & (s > pos - abs(pos) * np.float32(p.relative_margin))
        sel.removed_relative = int(drop.sum())
        keep &= ~drop
    counts.append(int(keep.sum()))
    window = order[keep][p.min_rank:p.max_rank][:p.num_negatives]
    sel.indices = [int(i) for i in window]
    sel.scores = [float(scores[i]) for i in window]
    if len(window) < p.num_negatives:
        reasons = (C.R_TOO_FEW_CANDIDATES, C.R_SAME_NOTE, C.R_FALSE_NEGATIVE_FILTER)
        sel.reason = next(r for c, r in zip(counts, reasons) if c < need)
    return sel
