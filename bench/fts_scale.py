"""Full-text index build cost per million rows, 1M -> 10M (issue 20 item 3), one command:

    python bench/fts_scale.py --sizes 1m,10m --variants default --repeats 2

Table: text only (``chunk_id`` + ``text``), rows as ``bench/scale.py --table-side`` makes them: real PMC-Patients
sentences (``bench/corpus_gen.py``'s pool) joined to ~128 tokens (4.6 characters per MiniLM token), written
with ``lance.write_dataset`` in fragments of 1,048,576 rows (what compaction leaves), so the build reads what a
compacted chunk table holds (the vector column is never read by the FTS build). One table per size under
bench/_work/fts_scale, deleted when its builds are done (only one on disk at a time).

Builds: each in a fresh process (``--_build``), the variants alternating per repeat, the index dropped and its
files cleaned afterwards. Per build: wall seconds, CPU seconds (user + system of the process), peak RSS, index
partitions and size. Variants:

- ``default`` (also ``old``): ``lancedb.index.FTS()``, the defaults: what ``finalize_table`` builds;
- anything else: ``key=value`` pairs joined by ``+``: upper-case keys are environment variables, the others FTS
  parameters (e.g. ``num_workers=1+LANCE_FTS_PARTITION_SIZE=4096``, ``memory_limit=256``).

Appends a ``## fts_scale`` section to bench/RESULTS.md (``--no-append``: print only).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = Path(os.environ.get("FTS_SCALE_WORK", ROOT / "bench" / "_work" / "fts_scale"))
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

ROWS_PER_FILE = 1 << 20
BATCH = 65_536


def parse_size(s: str) -> int:
    s = s.strip().lower()
    mult = {"k": 10**3, "m": 10**6}.get(s[-1], 1)
    return int(float(s.rstrip("km")) * mult)


def label(n: int) -> str:
    return f"{n // 10**6}m" if n % 10**6 == 0 else f"{n // 10**3}k"


def generate(n: int, uri: str, seed: int, max_tokens: int = 128) -> dict:
    """A text-only table of ``n`` chunk-like rows (streamed: one batch in memory)."""
    import corpus_gen
    import lance
    import numpy as np
    import pyarrow as pa

    from medembed import schema as S

    pool = corpus_gen.load_pool()
    target_chars = int((max_tokens - 2) * 4.6)
    sent = np.array(pool.sentences, dtype=object)
    schema = pa.schema([pa.field(S.CHUNK_ID, pa.string(), nullable=False), pa.field(S.TEXT, pa.string())])
    rng = np.random.default_rng(seed)

    def batches():
        done = 0
        while done < n:
            m = min(BATCH, n - done)
            sidx = rng.integers(0, len(sent), (m, 24))
            k = np.maximum(1, (np.cumsum(pool.sent_chars[sidx], axis=1) <= target_chars).sum(axis=1))
            texts = [" ".join(sent[sidx[j, :k[j]]]) for j in range(m)]
            ids = [f"t{i // 10:09d}#{i % 10}" for i in range(done, done + m)]
            yield pa.record_batch([pa.array(ids), pa.array(texts)], schema=schema)
            done += m

    t0 = time.perf_counter()
    lance.write_dataset(pa.RecordBatchReader.from_batches(schema, batches()), uri, mode="create",
                        max_rows_per_file=ROWS_PER_FILE, max_rows_per_group=BATCH)
    ds = lance.dataset(uri)
    size = sum(f.stat().st_size for f in Path(uri).rglob("*") if f.is_file())
    return {"rows": ds.count_rows(), "fragments": len(ds.get_fragments()), "bytes": size,
            "seconds": round(time.perf_counter() - t0, 1)}


def variant_spec(name: str) -> tuple[dict, dict]:
    """(FTS parameters, environment) of a variant."""
    if name in ("default", "old"):
        return {}, {}
    params, env = {}, {}
    for kv in name.split("+"):
        k, v = kv.split("=", 1)
        if k.isupper():
            env[k] = v
        else:
            params[k] = json.loads(v) if v[:1].isdigit() or v in ("true", "false") else v
    return params, env


def build_one(uri: str, variant: str) -> dict:
    """In a fresh process: build the FTS index with the variant, measure, drop it again."""
    import lance
    import lancedb
    from lancedb.index import FTS

    from medembed import schema as S
    from medembed.runtime.memory import peak_rss_mib

    params, env = variant_spec(variant)
    db, table = str(Path(uri).parent), Path(uri).name[:-len(".lance")]
    tbl = lancedb.connect(db).open_table(table)
    c0, t0 = os.times(), time.perf_counter()
    tbl.create_index(S.TEXT, config=FTS(**params), replace=True)
    wall, c1 = time.perf_counter() - t0, os.times()
    ds = lance.dataset(uri)
    name = next(i["name"] for i in ds.list_indices() if S.TEXT in i["fields"])
    files = [f for d in (Path(uri) / "_indices").iterdir() for f in d.iterdir()]
    parts = len({f.name.split("_")[1] for f in files if f.name.startswith("part_")})
    out = {"variant": variant, "params": params, "env": env, "wall_s": round(wall, 2),
           "cpu_s": round((c1.user - c0.user) + (c1.system - c0.system), 2),
           "peak_rss_mib": round(peak_rss_mib()),  # VmHWM: its own, not its parent's
           "partitions": parts, "index_mib": round(sum(f.stat().st_size for f in files) / 2**20, 1)}
    tbl.drop_index(name)
    lance.dataset(uri).cleanup_old_versions(older_than=__import__("datetime").timedelta(0), delete_unverified=True)
    shutil.rmtree(Path(uri) / "_indices", ignore_errors=True)
    return out


def run_build(uri: str, variant: str) -> dict:
    _, env = variant_spec(variant)
    p = subprocess.run([sys.executable, __file__, "--_build", uri, variant], env={**os.environ, **env},
                       capture_output=True, text=True)
    if p.returncode:
        raise RuntimeError(f"build {variant} failed:\n{p.stderr[-3000:]}")
    r = json.loads(p.stdout.strip().splitlines()[-1])
    print(json.dumps(r), flush=True)
    return r


def rng_str(xs: list[float], fmt: str = "{:.1f}") -> str:
    lo, hi = min(xs), max(xs)
    return fmt.format(lo) if lo == hi else f"{fmt.format(lo)}-{fmt.format(hi)}"


def report(res: dict, cmdline: str) -> list[str]:
    from results_file import section_header

    lines = [section_header("## fts_scale", cmdline), "",
             "- table: text only (chunk_id + text), real PMC-Patients sentences joined to ~128 tokens "
             "(bench/scale.py's table-side rows), fragments of 1,048,576 rows; each build in a fresh process", "",
             "| rows | variant | builds | wall s | wall s/M | CPU s/M | peak RSS MiB | partitions | index MiB |",
             "|---:|---|---:|---|---|---|---|---|---|"]
    for size in res["sizes"]:
        n = size["table"]["rows"]
        for v in res["variants"]:
            bs = [b for b in size["builds"] if b["variant"] == v]
            if not bs:
                continue
            lines.append(f"| {n:,} | {v} | {len(bs)} | {rng_str([b['wall_s'] for b in bs])} | "
                         f"{rng_str([b['wall_s'] * 1e6 / n for b in bs])} | {rng_str([b['cpu_s'] * 1e6 / n for b in bs])} | "
                         f"{rng_str([b['peak_rss_mib'] for b in bs], '{:.0f}')} | "
                         f"{rng_str([b['partitions'] for b in bs], '{:.0f}')} | {rng_str([b['index_mib'] for b in bs], '{:.0f}')} |")
    if len(res["sizes"]) >= 2:
        a, b = res["sizes"][0], res["sizes"][-1]
        na, nb = a["table"]["rows"], b["table"]["rows"]
        for v in res["variants"]:
            wa = [x["wall_s"] * 1e6 / na for x in a["builds"] if x["variant"] == v]
            wb = [x["wall_s"] * 1e6 / nb for x in b["builds"] if x["variant"] == v]
            ca = [x["cpu_s"] * 1e6 / na for x in a["builds"] if x["variant"] == v]
            cb = [x["cpu_s"] * 1e6 / nb for x in b["builds"] if x["variant"] == v]
            if wa and wb:
                lines.append(f"- {v}: cost per million rows {label(nb)}/{label(na)}: wall {min(wb) / max(wa):.2f}-"
                             f"{max(wb) / min(wa):.2f} (medians {sorted(wb)[len(wb) // 2] / sorted(wa)[len(wa) // 2]:.2f}), "
                             f"CPU {min(cb) / max(ca):.2f}-{max(cb) / min(ca):.2f}")
    for size in res["sizes"]:
        t = size["table"]
        lines.append(f"- table {t['rows']:,} rows: {t['fragments']} fragments, {t['bytes'] / 2**20:,.0f} MiB, "
                     f"written in {t['seconds']} s")
    for v in res["variants"]:
        p, e = variant_spec(v)
        lines.append(f"- variant {v}: FTS parameters {p or 'defaults'}, environment {e or 'none'}")
    return lines


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--_build"]:
        print(json.dumps(build_one(argv[1], argv[2])))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1m,10m")
    ap.add_argument("--variants", default="default")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-append", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the last table")
    ap.add_argument("--reuse", action="store_true", help="reuse a kept table of the same size")
    a = ap.parse_args(argv)
    variants = [v for v in a.variants.split(",") if v]
    res = {"variants": variants, "sizes": []}
    for n in [parse_size(s) for s in a.sizes.split(",") if s.strip()]:
        uri = str(WORK / f"fts_{label(n)}.lance")
        kept = WORK / f"fts_{label(n)}.json"
        if a.reuse and kept.is_file():
            table = json.loads(kept.read_text())
        else:
            shutil.rmtree(WORK, ignore_errors=True)
            WORK.mkdir(parents=True)
            table = generate(n, uri, a.seed)
            kept.write_text(json.dumps(table))
        print(json.dumps({"table": table}), flush=True)
        builds = []
        for r in range(a.repeats):
            order = variants if r % 2 == 0 else variants[::-1]
            for v in order:
                builds.append(run_build(uri, v))
        res["sizes"].append({"table": table, "builds": builds})
        if not a.keep:
            shutil.rmtree(WORK, ignore_errors=True)
    cmd = "python bench/fts_scale.py " + " ".join(argv)
    lines = report(res, cmd)
    if a.no_append:
        print("\n".join(lines))
    else:
        from results_file import append_section

        append_section(lines)


if __name__ == "__main__":
    main()
