"""Appending a benchmark's section to bench/RESULTS.md (shared by the quality benchmarks).

Run as ``python bench/<name>.py``, a benchmark has bench/ on ``sys.path``: ``from results_file import append_section``.
"""

from __future__ import annotations

import os
import platform
from datetime import datetime, timezone
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def append_section(lines: list[str]) -> None:
    """Append ``lines`` (a ``## name`` section) to bench/RESULTS.md and print them."""
    with open(RESULTS, "a", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def section_header(section: str, cmdline: str) -> str:
    """A section's first lines: its ``## name``, the date, the machine (CPU model, cores, memory, load) and command."""
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / (1 << 30)
    return "\n".join([f"\n{section}\n", f"- date: {datetime.now(timezone.utc).strftime('%a %b %d %H:%M:%S UTC %Y')}",
                      f"- machine: {os.cpu_count()}-core CPU ({cpu}), {mem:.0f} GiB, no GPU; load average at the end "
                      + "/".join(f"{x:.1f}" for x in os.getloadavg()),
                      f"- command: `{cmdline}`"])
