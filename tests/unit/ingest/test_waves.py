"""A long run's input in waves (``embed.wave_mib``): consecutive parts of the read plan, by file size as listed."""

from __future__ import annotations

from medembed.config import InputConfig
from medembed.ingest.sources import ReadTask, resolve_tasks
from medembed.ingest.stage import ReadPlan

MIB = 1 << 20


def plan(sizes: list[int]) -> ReadPlan:
    tasks = [ReadTask("jsonl", f"/in/part-{i}.jsonl", size=s) for i, s in enumerate(sizes)]
    return ReadPlan(tasks, InputConfig(), "/q", registry="a registry")  # a registry already started: no Ray here


def test_waves_group_consecutive_files_up_to_the_limit():
    p = plan([100 * MIB, 100 * MIB, 300 * MIB, 50 * MIB, 60 * MIB])
    parts = p.waves(256)
    assert [[t.size // MIB for t in w.tasks] for w in parts] == [[100, 100], [300], [50, 60]]
    assert [t for w in parts for t in w.tasks] == p.tasks  # every file once, in order
    assert all(w.registry == "a registry" and w.cfg is p.cfg for w in parts)  # one id registry across the waves


def test_no_limit_one_file_or_unknown_sizes_is_one_wave():
    assert plan([100 * MIB] * 3).waves(0) == [plan([100 * MIB] * 3)]
    assert len(plan([900 * MIB]).waves(1)) == 1
    assert len(plan([0, 0, 0]).waves(1)) == 1  # dataset slices (size unknown) stay together
    again = plan([100 * MIB] * 3).restrict(["/in/part-0.jsonl:line 3", "/in/part-2.jsonl:line 9"])
    assert len(again.tasks) == 2 and again.waves(1) == [again]  # a second read of a few records: one execution


def test_listed_files_carry_their_size(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"id": "1", "text": "x"}\n')
    (tmp_path / "b.jsonl").write_text('{"id": "2", "text": "yy"}\n' * 3)
    (tmp_path / "_SUCCESS").write_text("")
    tasks, skipped = resolve_tasks(InputConfig(uri=str(tmp_path)))
    assert [(t.uri.rsplit("/", 1)[1], t.size) for t in tasks] == [("a.jsonl", 25), ("b.jsonl", 78)]
    assert skipped == []
    one, _ = resolve_tasks(InputConfig(uri=str(tmp_path / "b.jsonl")))
    glob, _ = resolve_tasks(InputConfig(uri=str(tmp_path / "*.jsonl")))
    assert [t.size for t in one] == [78] and [t.size for t in glob] == [25, 78]
    (tmp_path / "more.jsonl").mkdir()  # a folder a glob matches is named as skipped, not dropped unseen
    _, skipped = resolve_tasks(InputConfig(uri=str(tmp_path / "*.jsonl")))
    assert skipped == [str(tmp_path / "more.jsonl")]
