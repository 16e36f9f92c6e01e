"""Recall of the table's ANN index against exact search, on real embeddings; and at scale.

    HF_HUB_OFFLINE=1 python bench/index_recall.py embed          # once: real vectors -> bench/_work/index_recall/
    python bench/index_recall.py real                            # IVF_PQ vs IVF_HNSW_SQ vs IVF_RQ on the real vectors
    python bench/index_recall.py scale --rows 1000000            # perturbed real vectors: build, recall, latency,
                                                                 # 30 simulated nightly runs, retrain policy

Vectors (``embed``): the bundled all-MiniLM-L6-v2 (the product's encoder, ``build_encoder``) over real text:
PMC-Patients notes chunked with the product's chunker (embed_pmc_patients's chunk parameters), and the corpora
of the BEIR sets in ../shared/data (scifact, med, pubmedqa, pmc_patients/ppr; documents as ``document_input``
(title, text)). Queries: the queries of those sets (the model's query prompt). Cached as .npy.

Recall@10 of a query = |ANN top-10 ∩ exact top-10| / 10, where exact is the brute-force inner product over
all rows (vectors are unit norm: cosine), mean over queries. ANN runs through the product's
``Retriever.search_vectors(mode="ann")`` at the index's default search settings
(``medembed.index.config.IndexSettings``), on a table whose index is built by ``finalize_table``.
Latency: one query at a time, p50/p99 over the queries (warm: one untimed pass first). Build: wall time of
the index build and the peak RSS of the process that builds it (a fresh subprocess, its VmHWM).

``scale``: ``--rows`` vectors made from the real document vectors: row i = normalize(x_j + e), x_j a real
vector (round-robin), e Gaussian with norm ``--noise`` (0.5: cos(row, x_j) ~ 0.89). Queries: the real query
vectors. Written straight into a Lance table with the product's schema (no text: the index is what is
measured). Then: index build, recall and latency; then ``--nights`` simulated nightly runs, each deleting
``--change`` of the rows and adding as many new perturbed rows in one commit, followed by the product's index
maintenance (``maintain_indexes``: delta indexes), recall after each; and recall after the retrain the
policy triggers (or a forced one at the end).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = (ROOT / ".." / "shared" / "data").resolve()
WORK = ROOT / "bench" / "_work" / "index_recall"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

BEIR_SETS = ("scifact", "med", "pubmedqa", "pmc_patients/ppr")


# --- embed (once) ------------------------------------------------------------------------------

def embed(args: argparse.Namespace) -> None:
    from medembed.config import EmbedJobConfig, ModelConfig, load_config
    from medembed.embedding.card import resolve_card
    from medembed.embedding.chunking import chunk_batch, chunk_params, document_input
    from medembed.embedding.encoders import build_encoder
    from medembed.evaluation.datasets import load_beir
    from medembed.runtime.storage import DEFAULT_STORAGE

    WORK.mkdir(parents=True, exist_ok=True)
    model = ModelConfig(name="bundled:all-MiniLM-L6-v2")
    card = resolve_card(model)
    enc = build_encoder(model, None, DEFAULT_STORAGE, card)
    docs: list[str] = []
    queries: list[str] = []
    sources: list[str] = []
    for name in BEIR_SETS:
        ds = load_beir(str(DATA / name), "test", name=name)
        docs += [document_input(t, x) for t, x in zip(ds.corpus.titles, ds.corpus.texts)]
        sources += [name] * len(ds.corpus)
        queries += list(ds.queries.texts)
    cfg = load_config(EmbedJobConfig, "embed_pmc_patients")
    params = chunk_params(cfg, card)
    notes = [json.loads(line) for line in (DATA / "pmc_patients" / "notes.jsonl").open(encoding="utf-8") if line.strip()]
    t = chunk_batch({"doc_id": [n["patient_uid"] for n in notes], "title": [n.get("title") or "" for n in notes],
                     "text": [n["patient"] for n in notes], "metadata": ["{}"] * len(notes)}, params)
    docs += [document_input(ti, tx) for ti, tx in zip(t.column("title").to_pylist(), t.column("text").to_pylist())]
    sources += ["pmc_patients/notes"] * t.num_rows
    t0 = time.perf_counter()
    qv = enc.encode_queries(queries).astype(np.float32)
    t1 = time.perf_counter()
    dv = np.concatenate([enc.encode_documents(docs[i:i + 512]) for i in range(0, len(docs), 512)]).astype(np.float32)
    t2 = time.perf_counter()
    np.save(WORK / "docs.npy", dv)
    np.save(WORK / "queries.npy", qv)
    (WORK / "sources.json").write_text(json.dumps({"model": card.model_id, "docs": len(docs), "queries": len(queries),
                                                   "by_source": {s: sources.count(s) for s in dict.fromkeys(sources)},
                                                   "query_s": t1 - t0, "doc_s": t2 - t1}))
    print(f"embedded {len(docs)} documents ({t2 - t1:.0f} s) and {len(queries)} queries ({t1 - t0:.0f} s)")


# --- tables and measurements --------------------------------------------------------------------

def _rows_table(vectors: np.ndarray, start: int = 0, ids: list[str] | None = None):
    """Rows of the product's schema holding ``vectors`` (doc ids ``r<i>`` from ``start``, or ``ids``; no text:
    the index is what is measured)."""
    import pyarrow as pa

    from medembed import schema as S

    n = len(vectors)
    ids = ids or [f"r{i}" for i in range(start, start + n)]
    return pa.table({
        S.CHUNK_ID: pa.array([S.chunk_id(d, 0) for d in ids]), S.DOC_ID: pa.array(ids),
        S.CHUNK_INDEX: pa.array(np.zeros(n, np.int32)), S.TITLE: pa.nulls(n, pa.string()),
        S.TEXT: pa.nulls(n, pa.string()), S.METADATA: pa.nulls(n, pa.string()), S.VECTOR: S.vectors_to_arrow(vectors),
        S.MODEL_ID: pa.array(["bundled:all-MiniLM-L6-v2"] * n), S.CONTENT_HASH: pa.array(ids),
        S.N_TOKENS: pa.array(np.zeros(n, np.int32)),
        S.EMBEDDED_AT: pa.array(np.zeros(n, "datetime64[us]"), pa.timestamp("us", tz="UTC"))},
        schema=S.table_schema(vectors.shape[1], "bundled:all-MiniLM-L6-v2", "bench"))


def write_table(uri: str, vectors: np.ndarray, batch: int = 200_000) -> None:
    """Write ``vectors`` as a new Lance table at ``uri`` in fragments of ``batch`` rows (streamed)."""
    import lance

    for i in range(0, len(vectors), batch):
        lance.write_dataset(_rows_table(vectors[i:i + batch], i), uri, mode="create" if i == 0 else "append",
                            max_rows_per_file=batch)


def build_in_subprocess(db: str, index_type: str, extra: list[str] | None = None) -> dict:
    """``finalize_table`` in a fresh process: its result, wall time and peak RSS (VmHWM)."""
    cmd = [sys.executable, __file__, "_build", "--db", db, "--type", index_type, *(extra or [])]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _vm(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _build(args: argparse.Namespace) -> None:
    from medembed.config import StoreConfig
    from medembed.index.indexes import finalize_table
    from medembed.index.tables import table_uri
    from medembed.runtime.storage import DEFAULT_STORAGE

    DEFAULT_STORAGE.lance_dataset(table_uri(args.db, "t")).count_rows()
    rss0 = _vm("VmRSS")
    cfg = StoreConfig(uri=args.db, ann_min_rows=256, fts=False, compact=False, ann_index=args.type)
    t0 = time.perf_counter()
    info = finalize_table(args.db, "t", cfg, DEFAULT_STORAGE, retrain=True)
    print(json.dumps({"build_s": time.perf_counter() - t0, "peak_rss_mib": _vm("VmHWM"), "rss_before_mib": rss0,
                      "info": info}, default=str))


def exact_top(vectors: np.ndarray, queries: np.ndarray, k: int = 10, chunk: int = 200_000) -> np.ndarray:
    """Row positions of the exact top-k (inner product) per query, over ``vectors`` in chunks."""
    best_i = np.zeros((len(queries), 0), np.int64)
    best_s = np.zeros((len(queries), 0), np.float32)
    for s in range(0, len(vectors), chunk):
        sims = queries @ vectors[s:s + chunk].T
        part = np.argpartition(-sims, min(k, sims.shape[1] - 1), axis=1)[:, :k]
        best_i = np.concatenate([best_i, part + s], axis=1)
        best_s = np.concatenate([best_s, np.take_along_axis(sims, part, 1)], axis=1)
        order = np.argsort(-best_s, axis=1, kind="stable")[:, :k]
        best_i, best_s = np.take_along_axis(best_i, order, 1), np.take_along_axis(best_s, order, 1)
    return best_i


def measure(db: str, queries: np.ndarray, truth: list[set[str]], k: int = 10, **search: object) -> dict:
    """Recall@k of the table's ANN search (the product's Retriever) against ``truth``; latency per query."""
    from medembed import schema as S
    from medembed.index.search import Retriever

    r = Retriever.open(db, "t", **search)
    ids = r.rows()[S.CHUNK_ID]
    r.search_vectors(queries[:20], k, "ann")  # warm: index files in cache
    lat, rec = [], []
    for q, want in zip(queries, truth):
        t0 = time.perf_counter()
        idx, _ = r.search_vectors(q[None, :], k, "ann")
        lat.append(time.perf_counter() - t0)
        rec.append(len({ids[i] for i in idx[0]} & want) / k)
    lat_ms = np.asarray(lat) * 1000
    return {"recall": float(np.mean(rec)), "recall_min": float(np.min(rec)), "p50_ms": float(np.percentile(lat_ms, 50)),
            "p99_ms": float(np.percentile(lat_ms, 99)), "queries": len(queries)}


def _truth(vectors: np.ndarray, queries: np.ndarray, ids: list[str] | np.ndarray, k: int = 10) -> list[set[str]]:
    return [{ids[i] for i in row} for row in exact_top(vectors, queries, k)]


def _header(name: str, command: str, work: str) -> list[str]:
    from results_file import header_lines

    return [*header_lines(f"index_recall ({name})", command), f"- lancedb/pylance: {_versions()}", f"- work: {work}", ""]


def _versions() -> str:
    import lance
    import lancedb

    return f"{lancedb.__version__}/{lance.__version__}"


SWEEP = {  # (label, Retriever search settings); the first is the default
    "IVF_PQ": [("default", {}), ("nprobes 10", {"nprobes": 10}), ("nprobes 40", {"nprobes": 40}),
               ("no refine", {"refine_factor": None})],
    "IVF_HNSW_SQ": [("default", {}), ("nprobes 10", {"nprobes": 10}), ("no refine", {"refine_factor": None})],
    "IVF_RQ": [("default", {}), ("nprobes 10", {"nprobes": 10}), ("no refine", {"refine_factor": None})],
}


SCALE_SWEEP = [("nprobes 40", {"nprobes": 40}), ("refine 20", {"refine_factor": 20}),
               ("nprobes 40, refine 20", {"nprobes": 40, "refine_factor": 20})]


def real(args: argparse.Namespace) -> None:
    import shutil

    from medembed.index.indexes import DEFAULT_NPROBES, DEFAULT_REFINE_FACTOR

    docs, queries = np.load(WORK / "docs.npy"), np.load(WORK / "queries.npy")
    meta = json.loads((WORK / "sources.json").read_text())
    ids = [f"r{i}#0" for i in range(len(docs))]
    truth = _truth(docs, queries, ids)
    rows = []
    for itype in args.types.split(","):
        db = str(WORK / f"real_{itype}")
        shutil.rmtree(db, ignore_errors=True)
        write_table(db + "/t.lance", docs)
        b = build_in_subprocess(db, itype)
        for label, search in SWEEP[itype]:
            m = measure(db, queries, truth, **search)
            rows.append((itype, b, label, m))
            print(itype, label, json.dumps(m), flush=True)
        shutil.rmtree(db, ignore_errors=True)
    by_src = ", ".join(f"{k} {v}" for k, v in meta["by_source"].items())
    lines = _header("real embeddings", "python bench/index_recall.py real",
                    f"{len(docs)} real document vectors (bundled all-MiniLM-L6-v2, 384-dim: {by_src}) and "
                    f"{len(queries)} real query vectors (the BEIR sets' test queries); recall@10 of the table's ANN "
                    "search (Retriever mode ann) vs exact inner product over all rows; index built by finalize_table "
                    f"(ann_min_rows forced); default search settings nprobes {DEFAULT_NPROBES}, refine_factor "
                    f"{DEFAULT_REFINE_FACTOR}; latency = one query per call, after a warm-up")
    lines += ["| index | params | build s | peak RSS MiB (before) | search | recall@10 | min | p50 ms | p99 ms |",
              "|---|---|---:|---:|---|---:|---:|---:|---:|"]
    for itype, b, label, m in rows:
        params = {k: v for k, v in b["info"]["ann_index"].items() if k not in ("type", "metric", "action", "reason",
                                                                                "seconds")}
        lines.append(f"| {itype} | {params} | {b['build_s']:.2f} | {b['peak_rss_mib']:.0f} ({b['rss_before_mib']:.0f}) "
                     f"| {label} | {m['recall']:.4f} | {m['recall_min']:.1f} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} |")
    if args.append:
        from results_file import append_section

        append_section(lines)
    else:
        print("\n".join(lines))


# --- scale: perturbed real vectors -------------------------------------------------------------------

class Perturbed:
    """Row i = normalize(docs[i % len(docs)] + e_i), e_i Gaussian of norm ``noise``; deterministic per chunk."""

    def __init__(self, docs: np.ndarray, noise: float, seed: int, chunk: int = 250_000):
        self.docs, self.noise, self.seed, self.chunk = docs, noise, seed, chunk

    def make(self, base: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        e = rng.standard_normal(base.shape, dtype=np.float32)
        e *= self.noise / np.linalg.norm(e, axis=1, keepdims=True)
        v = base + e
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    def chunk_rows(self, c: int, n: int) -> np.ndarray:
        start, stop = c * self.chunk, min(n, (c + 1) * self.chunk)
        rng = np.random.default_rng([self.seed, c])
        return self.make(self.docs[np.arange(start, stop) % len(self.docs)], rng)


def _dir_mib(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def _index_mib(uri: str) -> float:
    """Size of the vector index the table's current version uses (replaced indexes stay on disk until cleanup)."""
    import lance

    uuids = [i["uuid"] for i in lance.dataset(uri).list_indices() if "vector" in i["fields"]]
    return sum(_dir_mib(Path(uri) / "_indices" / u) for u in uuids)


def _scale_truth(gen: Perturbed, n: int, alive: np.ndarray, added: list[tuple[str, np.ndarray]], queries: np.ndarray,
                 k: int = 10) -> list[set[str]]:
    """Exact top-k ids over the live rows: base rows (regenerated chunk by chunk, dead ones masked) + added rows."""
    best: list[list[tuple[float, str]]] = [[] for _ in queries]
    for c in range((n + gen.chunk - 1) // gen.chunk):
        v = gen.chunk_rows(c, n)
        start = c * gen.chunk
        sims = queries @ v.T
        sims[:, ~alive[start:start + len(v)]] = -np.inf
        top = np.argpartition(-sims, k, axis=1)[:, :k]
        for qi, row in enumerate(top):
            best[qi] += [(float(sims[qi, j]), f"r{start + j}#0") for j in row]
    if added:
        av = np.stack([v for _, v in added])
        aid = [i for i, _ in added]
        sims = queries @ av.T
        top = np.argpartition(-sims, min(k, len(aid) - 1), axis=1)[:, :k]
        for qi, row in enumerate(top):
            best[qi] += [(float(sims[qi, j]), aid[j]) for j in row]
    return [{i for _, i in sorted(b, reverse=True)[:k]} for b in best]


def _night(rng: np.random.Generator, alive: np.ndarray, gen: Perturbed, change: int, next_id: int):
    """One simulated night: ``change`` live rows replaced (their documents changed: old row out, new row in);
    marks them dead in ``alive``; returns (rows gone, new vectors, new doc ids). Deterministic given ``rng``."""
    gone = rng.choice(np.flatnonzero(alive), size=change, replace=False)
    alive[gone] = False
    new = gen.make(gen.docs[gone % len(gen.docs)], rng)
    return gone, new, [f"r{i}" for i in range(next_id, next_id + change)]


def scale(args: argparse.Namespace) -> None:
    import shutil

    import lance

    from medembed.config import StoreConfig
    from medembed.index.indexes import (
        DEFAULT_NPROBES,
        DEFAULT_REFINE_FACTOR,
        ann_metadata,
        ann_params,
        finalize_table,
        index_state,
        merge_reason,
        retrain_reason,
    )
    from medembed.index.tables import table_uri
    from medembed.runtime.storage import DEFAULT_STORAGE

    docs, queries = np.load(WORK / "docs.npy"), np.load(WORK / "queries.npy")
    queries = queries[np.random.default_rng(1).permutation(len(queries))[:args.queries]]
    n = args.rows
    gen = Perturbed(docs, args.noise, seed=0)
    db = str(WORK / f"scale_{n}")
    uri = table_uri(db, "t")
    shutil.rmtree(db, ignore_errors=True)
    t0 = time.perf_counter()
    for c in range((n + gen.chunk - 1) // gen.chunk):
        v = gen.chunk_rows(c, n)
        lance.write_dataset(_rows_table(v, c * gen.chunk), uri, mode="create" if c == 0 else "append",
                            max_rows_per_file=gen.chunk)
    write_s = time.perf_counter() - t0
    alive = np.ones(n, bool)
    added: list[tuple[str, np.ndarray]] = []
    t0 = time.perf_counter()
    truth = _scale_truth(gen, n, alive, added, queries)
    truth_s = time.perf_counter() - t0
    print(f"wrote {n} rows ({write_s:.0f} s, {_dir_mib(Path(uri)):.0f} MiB); exact truth {truth_s:.0f} s", flush=True)
    builds, sweeps = [], []
    for itype in args.types.split(","):
        b = build_in_subprocess(db, itype)
        m = measure(db, queries, truth)
        b["index_mib"] = _index_mib(uri)
        builds.append((itype, b, m))
        print(itype, json.dumps({k: b[k] for k in ("build_s", "peak_rss_mib", "index_mib")}), json.dumps(m), flush=True)
        for label, search in (SCALE_SWEEP if args.sweep else []):
            sweeps.append((itype, label, measure(db, queries, truth, **search)))
            print(itype, label, json.dumps(sweeps[-1][2]), flush=True)
    nights = []
    nightly = args.nightly_type
    if args.nights and nightly:
        if builds[-1][0] != nightly:
            build_in_subprocess(db, nightly)
        keep = StoreConfig(uri=db, ann_min_rows=256, fts=False, ann_index=nightly, ann_retrain_fraction=1e9,
                           ann_max_deltas=10**6)
        rng = np.random.default_rng(7)
        change = max(1, int(n * args.change))
        policy_fired = merge_fired = None
        next_id = n
        for night in range(1, args.nights + 1):
            gone, new, ids = _night(rng, alive, gen, change, next_id)
            next_id += change
            added += [(f"{d}#0", v) for d, v in zip(ids, new)]
            t0 = time.perf_counter()
            ds = lance.dataset(uri)
            ds.delete("doc_id IN (" + ", ".join(f"'r{i}'" for i in gone) + ")")
            lance.write_dataset(_rows_table(new, ids=ids), uri, mode="append")
            commit_s = time.perf_counter() - t0
            before = index_state(DEFAULT_STORAGE.lance_dataset(uri), "vector_idx")
            t0 = time.perf_counter()
            info = finalize_table(db, "t", keep, DEFAULT_STORAGE)
            maint_s = time.perf_counter() - t0
            ds = DEFAULT_STORAGE.lance_dataset(uri)
            st = index_state(ds, "vector_idx")
            if policy_fired is None:
                wanted = {"type": nightly, "metric": "cosine", "params": ann_params(nightly, ds.count_rows(), docs.shape[1])}
                why = retrain_reason(ann_metadata(ds), st, wanted, StoreConfig())
                if why:
                    policy_fired = (night, why)
            if merge_fired is None and merge_reason(before, StoreConfig()):
                merge_fired = night
            row = {"night": night, "commit_s": commit_s, "maintain_s": maint_s, "action": info["ann_index"]["action"],
                   "segments": st["segments"], "fragments": len(ds.get_fragments())}
            if night in args.measure_nights:
                row.update(measure(db, queries, _scale_truth(gen, n, alive, added, queries)))
            nights.append(row)
            print(json.dumps(row), flush=True)
        final_truth = _scale_truth(gen, n, alive, added, queries)
        t0 = time.perf_counter()
        merged_info = finalize_table(db, "t", keep.model_copy(update={"ann_max_deltas": 0}), DEFAULT_STORAGE)["ann_index"]
        merge_s = time.perf_counter() - t0
        merged = measure(db, queries, final_truth)
        print("merged", merge_s, json.dumps(merged_info), json.dumps(merged), flush=True)
        rb = build_in_subprocess(db, nightly)
        after = measure(db, queries, final_truth)
        print("retrained", json.dumps(rb), json.dumps(after), flush=True)
    disk = _dir_mib(Path(uri))
    if not args.keep:
        shutil.rmtree(db, ignore_errors=True)
    lines = _header(f"{n:,} rows", " ".join(["python bench/index_recall.py", *sys.argv[1:]]),
                    f"{n:,} vectors = the {len(docs)} real document vectors (bundled all-MiniLM-L6-v2, 384-dim) with "
                    f"small perturbations: row i = normalize(x_(i mod {len(docs)}) + e), e Gaussian of norm "
                    f"{args.noise} (cos to x ~ {1 / np.sqrt(1 + args.noise ** 2):.2f}); written straight into a Lance "
                    f"table ({write_s:.0f} s, {disk:.0f} MiB on disk); {len(queries)} real query vectors; recall@10 "
                    f"vs exact inner product over the live rows; default search settings nprobes {DEFAULT_NPROBES}, "
                    f"refine_factor {DEFAULT_REFINE_FACTOR}; build = finalize_table in a fresh process")
    lines += ["| index | params | build s | peak RSS MiB (before) | index MiB | recall@10 | min | p50 ms | p99 ms |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for itype, b, m in builds:
        params = {k: v for k, v in b["info"]["ann_index"].items() if k not in ("type", "metric", "action", "reason",
                                                                                "seconds")}
        lines.append(f"| {itype} | {params} | {b['build_s']:.1f} | {b['peak_rss_mib']:.0f} ({b['rss_before_mib']:.0f}) "
                     f"| {b['index_mib']:.0f} | {m['recall']:.4f} | {m['recall_min']:.1f} | {m['p50_ms']:.1f} "
                     f"| {m['p99_ms']:.1f} |")
    if sweeps:
        lines += ["", "Search settings (same indexes, same queries):", "",
                  "| index | search | recall@10 | min | p50 ms | p99 ms |", "|---|---|---:|---:|---:|---:|"]
        lines += [f"| {t} | {label} | {m['recall']:.4f} | {m['recall_min']:.1f} | {m['p50_ms']:.1f} | {m['p99_ms']:.1f} |"
                  for t, label, m in sweeps]
    if nights:
        lines += ["", f"Nightly runs ({nightly}): each replaces {args.change:.1%} of the rows ({change:,}: delete + "
                  "add, two commits), then finalize_table adds the new rows as a delta index (policy thresholds "
                  "lifted so no retrain happens):", "",
                  "| night | commit s | index maintenance s | action | index segments | fragments | recall@10 | "
                  "p50 ms | p99 ms |", "|---:|---:|---:|---|---:|---:|---:|---:|---:|"]
        for r in nights:
            rec = f"{r['recall']:.4f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f}" if "recall" in r else "- | - | -"
            lines.append(f"| {r['night']} | {r['commit_s']:.1f} | {r['maintain_s']:.2f} | {r['action']} | "
                         f"{r['segments']} | {r['fragments']} | {rec} |")
        d = StoreConfig()
        lines += ["", f"After night {args.nights}: deltas merged into the trained index (finalize_table with "
                  f"ann_max_deltas 0: same centroids, {merged_info['action']}) in {merge_s:.1f} s: recall@10 "
                  f"{merged['recall']:.4f}, p50 {merged['p50_ms']:.1f} ms, p99 {merged['p99_ms']:.1f} ms. Then retrained "
                  f"(finalize_table retrain=True, fresh process): build {rb['build_s']:.1f} s, peak RSS "
                  f"{rb['peak_rss_mib']:.0f} MiB; recall@10 {after['recall']:.4f}, p50 {after['p50_ms']:.1f} ms, "
                  f"p99 {after['p99_ms']:.1f} ms.",
                  f"Default policy (ann_max_deltas {d.ann_max_deltas}, ann_retrain_fraction {d.ann_retrain_fraction}): "
                  f"first merge at night {merge_fired}; retrain "
                  + (f"at night {policy_fired[0]} ({policy_fired[1]})" if policy_fired else "not within these nights")
                  + "."]
    if args.append:
        from results_file import append_section

        append_section(lines)
    else:
        print("\n".join(lines))


def settings(args: argparse.Namespace) -> None:
    """Search settings on a table ``scale --keep`` left (after ``--nights-done`` of its nights): recall and latency
    each, against the exact top-10 of the rows live at that point (the nights replayed from their seed)."""
    docs, queries = np.load(WORK / "docs.npy"), np.load(WORK / "queries.npy")
    queries = queries[np.random.default_rng(1).permutation(len(queries))[:args.queries]]
    n = args.rows
    gen = Perturbed(docs, args.noise, seed=0)
    alive, added, rng, change = np.ones(n, bool), [], np.random.default_rng(7), max(1, int(n * args.change))
    for night in range(args.nights_done):
        _, new, ids = _night(rng, alive, gen, change, n + night * change)
        added += [(f"{d}#0", v) for d, v in zip(ids, new)]
    cached = Path(args.db) / f"truth_{args.nights_done}_{args.queries}_{args.noise}.json"  # beside the table
    if cached.exists():
        truth = [set(t) for t in json.loads(cached.read_text())]
    else:
        t0 = time.perf_counter()
        truth = _scale_truth(gen, n, alive, added, queries)
        cached.write_text(json.dumps([sorted(t) for t in truth]))
        print(f"exact truth {time.perf_counter() - t0:.0f} s", flush=True)
    from medembed.index.indexes import ann_metadata, index_state
    from medembed.index.tables import table_uri
    from medembed.runtime.storage import DEFAULT_STORAGE

    ds = DEFAULT_STORAGE.lance_dataset(table_uri(args.db, "t"))
    built, st = ann_metadata(ds), index_state(ds, "vector_idx")
    rows = []
    for item in args.settings.split(";"):
        search = {k: (None if v == "none" else int(v)) for k, v in (kv.split("=") for kv in item.split(",") if kv)}
        m = measure(args.db, queries, truth, **search)
        rows.append((item or "default", m))
        print(item or "default", json.dumps(m), flush=True)
    lines = _header(f"{n:,} rows, search settings", " ".join(["python bench/index_recall.py", *sys.argv[1:]]),
                    f"the table `scale --rows {n} --keep` left after {args.nights_done} of its nightly runs "
                    f"({ds.count_rows():,} rows; index {built and built.get('type')} {built and built.get('params')}, "
                    f"{st['segments']} segment(s)); {len(queries)} real query vectors; recall@10 vs exact inner product "
                    "over the live rows (nights replayed from their seed); one query per call, after a warm-up")
    lines += ["| search settings | recall@10 | min | p50 ms | p99 ms |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {label} | {m['recall']:.4f} | {m['recall_min']:.1f} | {m['p50_ms']:.1f} | {m['p99_ms']:.1f} |"
              for label, m in rows]
    if args.append:
        from results_file import append_section

        append_section(lines)
    else:
        print("\n".join(lines))


# --- medembed eval: retrieval ann vs exact ---------------------------------------------------------

EVAL_SETS = {"scifact": "scifact", "med": "med", "pubmedqa": "pubmedqa", "ppr": "pmc_patients/ppr"}


def eval_compare(args: argparse.Namespace) -> None:
    """``medembed eval`` twice on the same corpus tables: ``retrieval: exact`` then ``retrieval: ann`` (index forced)."""
    from medembed.index.indexes import DEFAULT_NPROBES, DEFAULT_REFINE_FACTOR

    root = WORK / "eval"
    sets = "[" + ", ".join(f"{{name: {n}, uri: '{DATA / d}', split: test}}" for n, d in EVAL_SETS.items()) + "]"
    scores, seconds = {}, {}
    for mode in ("exact", "ann"):
        name = f"eval_{mode}_{int(time.time())}"
        cmd = ["medembed", "evaluate", "--config", "evaluate", "--set", f"datasets={sets}", "--set", f"retrieval={mode}",
               "--set", f"store.ann_min_rows={args.ann_min_rows}", "--set", f"store.uri={root / 'lancedb'}",
               "--set", f"output.dir={root / 'out'}", "--set", f"output.run_dir={root / 'runs'}",
               "--set", f"output.run_name={name}"]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        seconds[mode] = time.perf_counter() - t0
        manifest = json.loads((root / "runs" / name / "manifest.json").read_text())
        scores[mode] = {d: v["ndcg_at_10"] for d, v in manifest["scores"]["base"].items()}
        print(mode, json.dumps(scores[mode]), flush=True)
    lines = _header("eval ann vs exact", "HF_HUB_OFFLINE=1 python bench/index_recall.py eval",
                    f"`medembed eval` (config evaluate, bundled all-MiniLM-L6-v2) on the test splits of "
                    f"{', '.join(EVAL_SETS.values())}, with `retrieval: exact` then `retrieval: ann` on the same corpus "
                    f"tables, the vector index forced (store.ann_min_rows={args.ann_min_rows}; index type "
                    f"{_default_index_type()}, nprobes {DEFAULT_NPROBES}, refine_factor {DEFAULT_REFINE_FACTOR})")
    lines += ["| dataset | nDCG@10 exact | nDCG@10 ann | ann - exact (points) |", "|---|---:|---:|---:|"]
    for d in EVAL_SETS:
        e, a = scores["exact"][d], scores["ann"][d]
        lines.append(f"| {d} | {e * 100:.2f} | {a * 100:.2f} | {(a - e) * 100:+.2f} |")
    lines.append(f"\nWall time: exact run {seconds['exact']:.0f} s (builds the tables), ann run {seconds['ann']:.0f} s.")
    if args.append:
        from results_file import append_section

        append_section(lines)
    else:
        print("\n".join(lines))


def _default_index_type() -> str:
    from medembed.config import StoreConfig

    return StoreConfig().ann_index


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("embed")
    r = sub.add_parser("real")
    r.add_argument("--types", default="IVF_PQ,IVF_HNSW_SQ,IVF_RQ")
    r.add_argument("--no-append", dest="append", action="store_false")
    sc = sub.add_parser("scale")
    sc.add_argument("--rows", type=int, default=1_000_000)
    sc.add_argument("--noise", type=float, default=0.5)
    sc.add_argument("--queries", type=int, default=300)
    sc.add_argument("--types", default="IVF_PQ,IVF_HNSW_SQ,IVF_RQ")
    sc.add_argument("--nightly-type", default="IVF_PQ")
    sc.add_argument("--nights", type=int, default=30)
    sc.add_argument("--change", type=float, default=0.001)
    sc.add_argument("--measure-nights", type=lambda s: {int(x) for x in s.split(",")}, default={1, 10, 20, 30})
    sc.add_argument("--sweep", action="store_true", help="also measure other search settings (SCALE_SWEEP)")
    sc.add_argument("--keep", action="store_true", help="leave the table in bench/_work (for `settings`)")
    sc.add_argument("--no-append", dest="append", action="store_false")
    st = sub.add_parser("settings")
    st.add_argument("--db", required=True, help="the folder `scale --keep` left (bench/_work/index_recall/scale_<rows>)")
    st.add_argument("--rows", type=int, required=True)
    st.add_argument("--nights-done", type=int, default=0)
    st.add_argument("--noise", type=float, default=0.5)
    st.add_argument("--change", type=float, default=0.001)
    st.add_argument("--queries", type=int, default=300)
    st.add_argument("--settings", default=";nprobes=40;nprobes=80",
                    help="';'-separated Retriever settings, each 'k=v,...' (empty: the defaults; v 'none' = off)")
    st.add_argument("--no-append", dest="append", action="store_false")
    ev = sub.add_parser("eval")
    ev.add_argument("--ann-min-rows", type=int, default=256)
    ev.add_argument("--no-append", dest="append", action="store_false")
    b = sub.add_parser("_build")
    b.add_argument("--db", required=True)
    b.add_argument("--type", required=True)
    a = p.parse_args()
    {"embed": embed, "real": real, "scale": scale, "settings": settings, "eval": eval_compare,
     "_build": _build}[a.cmd](a)


if __name__ == "__main__":
    main()
