"""Batch plans: no shared positive or note in a batch, every row once per epoch, deterministic, shards."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from medembed.training.batching import epoch_batches, plan_batches, shard


def rows(n=200, seed=3):
    rng = random.Random(seed)
    notes = [f"n{rng.randrange(40)}" for _ in range(n)]  # ~5 rows per note
    positives = [f"p{rng.randrange(150)}" for _ in range(n)]  # some shared positives
    return positives, notes


def test_batches_never_share_a_positive_or_a_note_and_hold_every_row_once():
    positives, notes = rows()
    batches = epoch_batches(positives, notes, 16, seed=1, epoch=0)
    assert sorted(i for b in batches for i in b) == list(range(200))
    for b in batches:
        assert len({notes[i] for i in b}) == len(b)
        assert len({positives[i] for i in b}) == len(b)
        assert len(b) <= 16
    sizes = [len(b) for b in batches]
    first_short = next((i for i, s in enumerate(sizes) if s < 16), len(sizes))
    assert first_short >= len(sizes) - 4  # short batches only at the tail
    assert sum(sizes[:first_short]) >= 150


def test_plan_is_deterministic_by_seed_and_reshuffles_per_epoch():
    positives, notes = rows()
    a = plan_batches(positives, notes, 8, 2, seed=7, epochs=2)
    b = plan_batches(positives, notes, 8, 2, seed=7, epochs=2)
    c = plan_batches(positives, notes, 8, 2, seed=8, epochs=2)
    assert a.batches == b.batches and a.fingerprint() == b.fingerprint()
    assert a.batches != c.batches and a.fingerprint() != c.fingerprint()
    e0 = a.batches[:a.steps_per_epoch[0]]
    e1 = a.batches[a.steps_per_epoch[0]:]
    assert e0 != e1


@pytest.mark.parametrize("world", [1, 2, 3])
def test_shards_cover_each_row_once_per_epoch_with_equal_sizes(world):
    positives, notes = rows()
    plan = plan_batches(positives, notes, 8, world, seed=0, epochs=1)
    seen = Counter()
    for b in plan.batches:
        parts = [shard(b, r, world) for r in range(world)]
        assert len({len(p) for p in parts}) == 1  # every rank the same number of rows (all-gather)
        assert len(parts[0]) <= 8
        for p in parts:
            seen.update(p)
    assert max(seen.values()) == 1
    assert len(seen) + plan.left_out == 200
    assert plan.left_out < world * 4  # only tail remainders are left out


def test_max_steps_cuts_the_plan():
    positives, notes = rows()
    plan = plan_batches(positives, notes, 4, 2, seed=0, epochs=3, max_steps=5)
    assert len(plan.batches) == 5
    assert sum(plan.steps_per_epoch) > 5
