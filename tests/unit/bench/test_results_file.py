"""bench/results_file.py: the one way benchmarks write bench/RESULTS.md (header, append, index newest first).

``test_results_md_index_matches_its_sections`` fails after a section was added by hand: run
``python bench/results_file.py --reindex``.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
BENCH = ROOT / "bench"
_spec = importlib.util.spec_from_file_location("results_file", BENCH / "results_file.py")
results_file = sys.modules.setdefault("results_file", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(results_file)

OLD = """# Benchmark results

## alpha

- date: Sun Nov 29 10:00:00 UTC 2026
- text with ## inside

```
## not a heading (code)
```

### alpha: notes

## beta (2026-11-30)

body
"""


def test_results_md_index_matches_its_sections():
    text = (BENCH / "RESULTS.md").read_text(encoding="utf-8")
    assert results_file.index_is_current(text), "bench/RESULTS.md: run python bench/results_file.py --reindex"
    # every ## heading outside the index appears in the index once, newest (last) first
    listed = re.findall(r"^- [^\[]*\[(.+)\]\(#[^)]+\)$", text.split(results_file.INDEX_END)[0], flags=re.M)
    headings = [s["title"] for s in results_file.sections(text)]
    assert listed == headings[::-1] and len(headings) > 70


def test_index_lists_sections_newest_first_with_dates_and_unique_anchors():
    text = results_file.with_index(OLD)
    index = text.split(results_file.INDEX_END)[0]
    assert index.index("[beta (2026-11-30)](#beta-2026-11-30)") < index.index("[alpha](#alpha)")
    assert "- 2026-11-29: [alpha](#alpha)" in index and "  - [alpha: notes](#alpha-notes)" in index
    assert "not a heading" not in index
    again = results_file.with_index(text + "\n## alpha\n\nsecond run\n")
    assert "(#alpha-1)" in again.split(results_file.INDEX_END)[0]


def test_everything_but_the_index_is_kept_byte_for_byte():
    text = results_file.with_index(OLD)
    assert text.endswith(OLD.split("\n", 2)[2]) and results_file.index_is_current(text)
    assert results_file.with_index(text) == text  # idempotent


def test_append_section_appends_and_regenerates_the_index(tmp_path):
    f = tmp_path / "RESULTS.md"
    f.write_text(results_file.with_index(OLD), encoding="utf-8")
    before = f.read_text(encoding="utf-8")
    results_file.append_section(results_file.header_lines("gamma", "python bench/gamma.py --n 1") + ["", "| a |"],
                                path=f, echo=False)
    after = f.read_text(encoding="utf-8")
    assert results_file.index_is_current(after)
    body_before = before.split(results_file.INDEX_END)[1].rstrip("\n")
    body_after = after.split(results_file.INDEX_END)[1]
    assert body_after.startswith(body_before + "\n\n## gamma\n\n- date: ")  # old content untouched, new at the end
    first = re.search(r"^- .*\[(.+?)\]", after, flags=re.M).group(1)
    assert first == "gamma"
    # a section appended by hand makes the index stale until --reindex
    with open(f, "a", encoding="utf-8") as h:
        h.write("\n## by hand\n")
    assert not results_file.index_is_current(f.read_text(encoding="utf-8"))
    assert results_file.main(["--check", "--file", str(f)]) == 1
    assert results_file.main(["--reindex", "--file", str(f)]) == 0
    assert results_file.index_is_current(f.read_text(encoding="utf-8"))


def test_header_names_date_machine_software_commit_command():
    lines = results_file.header_lines("x", "python bench/x.py")
    assert lines[:3] == ["", "## x", ""]
    keys = [ln.split(":", 1)[0] for ln in lines[3:]]
    assert keys == ["- date", "- machine", "- software", "- commit", "- command"]
    text = "\n".join(lines)
    for fact in ("logical CPUs", "GiB", "load average at the end", "Python ", "`python bench/x.py`"):
        assert fact in text
    assert "GPU" in lines[4]


def test_every_bench_script_writes_results_through_the_module_and_is_in_the_readme():
    readme = (BENCH / "README.md").read_text(encoding="utf-8")
    for script in sorted(BENCH.glob("*.py")):
        assert f"bench/{script.name}" in readme, f"bench/README.md does not mention {script.name}"
        if script.name == "results_file.py":
            continue
        src = script.read_text(encoding="utf-8")
        assert "getloadavg" not in src, f"{script.name}: take the header from results_file.header_lines"
        assert not re.search(r"RESULTS\.md\"?\)?[^\n]*\.open\(|open\([^\n]*RESULTS", src), script.name
