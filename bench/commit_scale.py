"""Commit cost against the number of fragments (issue 20 item 3), one command:

    python bench/commit_scale.py --rows 1m,10m --rows-per-fragment 452,6700 --policies fixed-64,fixed-512,growth-64

Each Lance commit writes a manifest that lists every fragment of the table, so what a run's commits cost depends
on how many fragments it commits and in which groups, not on the rows' width. Per (rows, rows per fragment):
``rows / rows_per_fragment`` fragments of 4 small rows each (the chunk schema with 8-dim vectors) are written once
(``lance.fragment.write_fragments``), then committed by the job's own ``Committer`` (``medembed.index.writer``) under
each policy, into a fresh table each time (the versions are removed, the data files kept):

- ``fixed-N``: a commit every N fragments (``growth=0``: before this change, at any size);
- ``growth-N``: ``store.commit_every`` N with the geometric growth past ``COMMIT_GROWTH_FROM`` fragments (now).

452 rows per fragment is what ``embed.block_mib`` 1 (the local default) makes of 384-dim chunk rows (``scale``
table side), 6,700 what ``embed.block_mib`` 16 (the ``*_cluster`` presets) makes. Per run: commits, total commit
seconds (wall and CPU), and the per-commit cost fitted as ``a + b * listed fragments``. Appends a
``## commit_scale`` section to bench/RESULTS.md (``--no-append``: print only). Data under bench/_work/commit_scale.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / "_work" / "commit_scale"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

ROWS_PER_DATA_FILE = 4
DOCS_PER_FRAGMENT = 45  # ~452 chunk rows of ~10 chunks per document


def parse_size(s: str) -> int:
    s = s.strip().lower()
    return int(float(s.rstrip("km")) * {"k": 10**3, "m": 10**6}.get(s[-1], 1))


def label(n: int) -> str:
    return f"{n / 10**6:g}M" if n >= 10**6 else f"{n / 10**3:g}k"


def write_fragments(uri: str, n_frags: int) -> list[dict]:
    import pyarrow as pa
    from lance.fragment import write_fragments as wf

    from medembed import schema as S

    schema = S.table_schema(8, "m", "r")
    n = n_frags * ROWS_PER_DATA_FILE
    ids = [f"d{i // 10:09d}#{i % 10}" for i in range(n)]
    table = pa.table({S.CHUNK_ID: ids, S.DOC_ID: [i.split("#")[0] for i in ids],
                      S.CHUNK_INDEX: pa.array([i % 10 for i in range(n)], pa.int32()), S.TITLE: [""] * n,
                      S.TEXT: ids, S.METADATA: ["{}"] * n, S.CONTENT_HASH: ids,
                      S.N_TOKENS: pa.array([3] * n, pa.int32()),
                      S.VECTOR: pa.FixedSizeListArray.from_arrays(pa.array([0.5] * (8 * n), pa.float32()), 8)})
    for f in schema.names:
        if f not in table.column_names:
            table = table.append_column(schema.field(f), pa.nulls(n, schema.field(f).type))
    frags = wf(table.select(schema.names).cast(schema), uri, schema=schema, max_rows_per_file=ROWS_PER_DATA_FILE)
    assert len(frags) == n_frags, (len(frags), n_frags)
    return [{"fragment": json.dumps(f.to_json()), "rows": 452, "tokens": 452 * 125,
             "doc_ids": [f"x{k}-{j}" for j in range(DOCS_PER_FRAGMENT)]} for k, f in enumerate(frags)], schema


def commit_all(uri: str, schema, frags: list[dict], policy: str) -> dict:
    from medembed.index import writer as W
    from medembed.runtime.storage import DEFAULT_STORAGE

    kind, every = policy.rsplit("-", 1)
    for d in ("_versions", "_transactions", "_deletions", "_indices"):
        shutil.rmtree(Path(uri) / d, ignore_errors=True)
    c = W.Committer(uri, schema, DEFAULT_STORAGE, {}, int(every), growth=W.COMMIT_GROWTH if kind == "growth" else 0)
    per_commit: list[tuple[int, float]] = []
    inner = c._commit

    def timed():
        listed = c.stats.fragments + len(c.pending)
        t = time.perf_counter()
        inner()
        per_commit.append((listed, time.perf_counter() - t))

    c._commit = timed
    t0, p0 = time.perf_counter(), time.process_time()
    for f in frags:
        c.add(f["fragment"], f["rows"], f["doc_ids"], f["tokens"])
    c.flush()
    wall, cpu = time.perf_counter() - t0, time.process_time() - p0
    import lance

    assert len(lance.dataset(uri).get_fragments()) == len(frags)
    return {"policy": policy, "commits": c.stats.commits, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
            "commit_s": round(sum(s for _, s in per_commit), 3), "per_commit": per_commit,
            "listed": sum(n for n, _ in per_commit)}


def fit(points: list[tuple[int, float]]) -> tuple[float, float]:
    import numpy as np

    x = np.array([p[0] for p in points], float)
    y = np.array([p[1] for p in points], float)
    b, a = np.polyfit(x, y, 1)
    return a, b


def rng(xs, fmt="{:.2f}") -> str:
    lo, hi = min(xs), max(xs)
    return fmt.format(lo) if fmt.format(lo) == fmt.format(hi) else f"{fmt.format(lo)}-{fmt.format(hi)}"


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", default="1m,10m")
    ap.add_argument("--rows-per-fragment", default="452,6700")
    ap.add_argument("--policies", default="fixed-64,fixed-512,growth-64")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--no-append", action="store_true")
    a = ap.parse_args(argv)
    runs = []
    for rpf in [int(x) for x in a.rows_per_fragment.split(",")]:
        for rows in [parse_size(x) for x in a.rows.split(",")]:
            n_frags = -(-rows // rpf)
            shutil.rmtree(WORK, ignore_errors=True)
            uri = str(WORK / "t.lance")
            t0 = time.perf_counter()
            frags, schema = write_fragments(uri, n_frags)
            print(f"{label(rows)} rows / {rpf} per fragment: {n_frags} fragments written in "
                  f"{time.perf_counter() - t0:.1f} s", flush=True)
            for r in range(a.repeats):
                pols = a.policies.split(",")
                for p in (pols if r % 2 == 0 else pols[::-1]):
                    out = commit_all(uri, schema, frags, p)
                    out.update(rows=rows, rows_per_fragment=rpf, fragments=n_frags)
                    print(json.dumps({k: v for k, v in out.items() if k != "per_commit"}), flush=True)
                    runs.append(out)
    shutil.rmtree(WORK, ignore_errors=True)
    lines = report(runs, "python bench/commit_scale.py " + " ".join(argv))
    if a.no_append:
        print("\n".join(lines))
    else:
        from results_file import append_section

        append_section(lines)


def report(runs: list[dict], cmd: str) -> list[str]:
    from results_file import section_header

    pts = [p for r in runs for p in r["per_commit"]]
    a, b = fit(pts)
    lines = [section_header("## commit_scale", cmd), "",
             f"- per commit (all {len(pts)} commits below, least squares): **{a * 1e3:.1f} ms + {b * 1e6:.2f} us per "
             f"listed fragment** (the manifest lists every fragment of the table); the job's `Committer`, fragments "
             "of 4 rows written once (chunk schema, 8-dim vectors), committed into a fresh table per run", "",
             "| rows | rows/fragment | fragments | policy | commits | fragments listed | commit s | commit s per M rows |",
             "|---:|---:|---:|---|---:|---:|---|---|"]
    keys = sorted({(r["rows_per_fragment"], r["rows"], r["policy"]) for r in runs},
                  key=lambda k: (k[0], k[2], k[1]))
    for rpf, rows, pol in keys:
        rs = [r for r in runs if (r["rows_per_fragment"], r["rows"], r["policy"]) == (rpf, rows, pol)]
        lines.append(f"| {rows:,} | {rpf:,} | {rs[0]['fragments']:,} | {pol} | {rs[0]['commits']} | "
                     f"{rs[0]['listed']:,} | {rng([r['commit_s'] for r in rs])} | "
                     f"{rng([r['commit_s'] * 1e6 / rows for r in rs], '{:.3f}')} |")
    sizes = sorted({r["rows"] for r in runs})
    if len(sizes) >= 2:
        lo, hi = sizes[0], sizes[-1]
        for rpf, pol in sorted({(r["rows_per_fragment"], r["policy"]) for r in runs}):
            x = [r["commit_s"] / r["rows"] for r in runs if (r["rows_per_fragment"], r["policy"], r["rows"]) == (rpf, pol, hi)]
            y = [r["commit_s"] / r["rows"] for r in runs if (r["rows_per_fragment"], r["policy"], r["rows"]) == (rpf, pol, lo)]
            lx = [r["listed"] / r["rows"] for r in runs if (r["rows_per_fragment"], r["policy"], r["rows"]) == (rpf, pol, hi)]
            ly = [r["listed"] / r["rows"] for r in runs if (r["rows_per_fragment"], r["policy"], r["rows"]) == (rpf, pol, lo)]
            if x and y:
                lines.append(f"- {pol}, {rpf:,} rows/fragment: commit cost per million rows {label(hi)}/{label(lo)} "
                             f"= {min(x) / max(y):.2f}-{max(x) / min(y):.2f} (fragments listed per row: "
                             f"{lx[0] / ly[0]:.2f}x)")
    return lines


if __name__ == "__main__":
    main()
