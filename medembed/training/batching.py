"""Batches of triplet rows: no two rows of a batch share a positive or a source note; deterministic by seed.

Sharing either would put a false negative in the batch: another row's positive from the same note
(or the same passage) is probably relevant to the query. A plan is a list of global batches (row
indices), one per optimizer step over all epochs; worker ``rank`` of ``world`` trains on
``batch[rank::world]``, so every planned row is seen exactly once per epoch across the workers.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class BatchPlan:
    batches: list[list[int]]  # global batches, in step order
    steps_per_epoch: list[int]
    left_out: int  # rows left out (over all epochs) to make tail batches divisible by the world size

    def fingerprint(self) -> str:
        """Identifies the plan in checkpoints: a resumed run must replay the same batches."""
        return hashlib.sha256(json.dumps(self.batches).encode()).hexdigest()[:16]


def epoch_batches(positives: Sequence[str], notes: Sequence[str], batch_size: int, seed: int,
                  epoch: int) -> list[list[int]]:
    """One epoch's global batches of at most ``batch_size`` rows; every row exactly once.

    Rows are shuffled by ``(seed, epoch)``; a row that conflicts with the batch being filled waits for
    the next one (first in line), so only the tail can hold short batches.
    """
    if len(positives) != len(notes):
        raise ValueError("positives and notes must have the same length")
    order = list(range(len(positives)))
    random.Random(f"{seed}:{epoch}").shuffle(order)
    pending = deque(order)
    batches: list[list[int]] = []
    while pending:
        batch: list[int] = []
        used_notes: set[str] = set()
        used_pos: set[str] = set()
        waiting: list[int] = []
        while pending and len(batch) < batch_size:
            i = pending.popleft()
            if notes[i] in used_notes or positives[i] in used_pos:
                waiting.append(i)
                continue
            batch.append(i)
            used_notes.add(notes[i])
            used_pos.add(positives[i])
        pending.extendleft(reversed(waiting))
        batches.append(batch)
    return batches


def plan_batches(positives: Sequence[str], notes: Sequence[str], per_worker_batch: int, world: int, seed: int,
                 epochs: int, max_steps: int | None = None) -> BatchPlan:
    """Global batches of ``per_worker_batch * world`` rows for ``epochs`` epochs (cut at ``max_steps``).

    Short tail batches are trimmed to a multiple of ``world`` (every rank gets the same number of rows,
    which the cross-worker all-gather needs); batches with fewer than ``world`` rows are dropped.
    """
    if per_worker_batch < 1 or world < 1:
        raise ValueError("per_worker_batch and world must be positive")
    out: list[list[int]] = []
    per_epoch: list[int] = []
    left_out = 0
    for epoch in range(epochs):
        n = 0
        for b in epoch_batches(positives, notes, per_worker_batch * world, seed, epoch):
            keep = len(b) - len(b) % world
            left_out += len(b) - keep
            if keep >= world:
                out.append(b[:keep])
                n += 1
            else:
                left_out += keep
        per_epoch.append(n)
    if max_steps is not None:
        out = out[:max_steps]
    return BatchPlan(out, per_epoch, left_out)


def shard(batch: Sequence[int], rank: int, world: int) -> list[int]:
    """The rows of a global batch that worker ``rank`` trains on."""
    return list(batch[rank::world])
