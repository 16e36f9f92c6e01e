"""Appending a benchmark's section to bench/RESULTS.md (shared by the quality benchmarks).

Run as ``python bench/<name>.py``, a benchmark has bench/ on ``sys.path``: ``from results_file import append_section``.
"""

from __future__ import annotations

from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def append_section(lines: list[str]) -> None:
    """Append ``lines`` (a ``## name`` section) to bench/RESULTS.md and print them."""
    with open(RESULTS, "a", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
