"""Which embed jobs run in one actor: input files up to ``embed.one_actor_max_mib``, summed lazily."""

from __future__ import annotations

from medembed.config import InputConfig
from medembed.ingest import ReadPlan, ReadTask
from medembed.stages.one_actor import is_small


def plan_of(tmp_path, sizes: list[int]) -> ReadPlan:
    tasks = []
    for i, n in enumerate(sizes):
        f = tmp_path / f"part{i}.jsonl"
        f.write_bytes(b"x" * n)
        tasks.append(ReadTask("jsonl", str(f)))
    return ReadPlan(tasks, InputConfig(uri=str(tmp_path)), str(tmp_path / "q"))


def test_small_inputs_by_the_size_of_all_their_files(tmp_path):
    plan = plan_of(tmp_path, [400_000, 400_000, 300_000])
    assert plan.input_bytes() == 1_100_000
    assert not is_small(plan, 1.0)  # 1.05 MiB in all
    assert is_small(plan, 1.1)
    assert not is_small(plan, 0)  # 0: always stream


def test_the_sum_stops_once_past_the_limit(tmp_path):
    plan = plan_of(tmp_path, [600_000, 600_000, 600_000])
    assert plan.input_bytes(stop_above=1_000_000) == 1_200_000  # the third file is never asked for
    assert plan.registry is None  # no actor was started to decide


def test_dataset_slices_never_count_as_small(tmp_path):
    plan = ReadPlan([ReadTask("hf", str(tmp_path), 0, 10)], InputConfig(uri=str(tmp_path)), str(tmp_path / "q"))
    assert plan.input_bytes() is None and not is_small(plan, 1000)
