"""runtime.memory.peak_rss_mib: a process's own peak memory, not its parent's (as ``ru_maxrss`` reports it)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from medembed.runtime.manifest import RunManifest
from medembed.runtime.memory import peak_rss_mib

CHILD = ("import json, resource; from medembed.runtime.memory import peak_rss_mib; "
         "print(json.dumps([peak_rss_mib(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024]))")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM and ru_maxrss inheritance are Linux's")
def test_a_child_of_a_large_process_reports_its_own_peak():
    held = bytearray(300 * 2**20)
    held[::4096] = b"\1" * len(held[::4096])  # touch every page: 300 MiB resident in this process
    assert peak_rss_mib() >= 300
    own, maxrss = json.loads(subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                                            check=True).stdout)
    assert maxrss >= 300, "ru_maxrss no longer carries the parent's peak: the docstring's reason is gone"
    assert 5 < own < 200, own  # the child's interpreter and imports, not the parent's 300 MiB


def test_the_manifest_records_the_driver_peak(tmp_path):
    m = RunManifest("embed", str(tmp_path), {})
    m.finish()
    data = json.loads((tmp_path / m.run_id / "manifest.json").read_text())
    assert 5 < data["driver_peak_rss_mib"] <= peak_rss_mib() + 1
