"""CPU training workers keep freed memory (glibc mallopt) unless ``train.cpu_keep_memory`` is off."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from medembed.runtime import memory
from medembed.training.config import TrainConfig
from medembed.training.step import prepare_cpu_worker

# A child process allocates and frees a 256 MiB block ten times; minor page faults count the pages the kernel
# had to map and zero again. With the blocks kept, only the first allocation faults.
CHILD = """
import resource, sys
from medembed.runtime.memory import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    b = bytearray(256 << 20)
    b[::4096] = b"x" * len(b[::4096])
    del b
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_kept_memory_is_not_faulted_in_again() -> None:
    pages = (256 << 20) // 4096
    default, kept = faults("default"), faults("keep")
    assert default > 9 * pages  # every allocation mapped and zero-filled again
    assert kept < 2 * pages  # the first one only


def test_prepare_cpu_worker_follows_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bool] = []
    monkeypatch.setattr(memory, "keep_freed_memory", lambda: calls.append(True) or True)
    threads = torch.get_num_threads()
    try:
        assert prepare_cpu_worker(TrainConfig(cpus_per_worker=1, cpu_keep_memory=True)) is True
        assert torch.get_num_threads() == 1
        assert prepare_cpu_worker(TrainConfig(cpus_per_worker=1, cpu_keep_memory=False)) is False
    finally:
        torch.set_num_threads(threads)
    assert calls == [True]
