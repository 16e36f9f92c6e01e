"""The cost curve of the model-free data path (issue 20 item 3), one command:

    MEDEMBED_ALLOW_INSTRUMENT=1 HF_HUB_OFFLINE=1 python bench/scale.py --sizes 100k,1m --table-side 10m

Encoder: the benchmark instrument (``model.name: instrument:hash``, hash vectors, MiniLM tokenizer), so everything
around the model is measured. Corpus: ``bench/corpus_gen.py`` (real PMC-Patients sentences), sized to the number
of chunks at ``--max-tokens`` (128) tokens per chunk. Per run, in this order:

1. **tokenizer alone** (the ratio's baseline): the bundled MiniLM fast tokenizer, one thread
   (``RAYON_NUM_THREADS=1``), batches of 256 documents, on the corpus's first ``--sample-docs`` documents, with
   and without offsets; tokens/s, repeated ``--repeats`` times.
2. **stage costs, one core**: the job's own functions in this process on the same sample: read + normalize
   (``ReadPlan.blocks``: reader, id registry, quarantine), chunk (``index.changes.chunk_selected_documents``: tokenizer with
   offsets, windows, hashes), embed (``ChunkEmbedder`` with the instrument), write (``FragmentWriter``, blocks of
   ``embed.block_mib``), commit (``commit_fragments``, groups of ``store.commit_every``): CPU seconds per million
   chunks and tokens/s per core for each.
3. **the real job** per size: ``python -m medembed.app.cli embed`` as a fresh process (its own local Ray on
   ``--cpus`` CPUs), indexes off, into a fresh table. Sampled every 0.5 s: the driver's RSS, the job's process
   tree's RSS and CPU seconds, the Ray object store (``ray memory --stats-only`` against the job's GCS). From its
   manifest: the pipeline time (read -> normalize -> chunk -> embed -> write -> commit, streaming, concurrent),
   compaction time (the job's index stage with FTS and ANN off), chunks, tokens, fragments, commits.
4. **indexes** on the job's table, this process: ``finalize_table`` with the FTS index on (time = FTS build),
   then with ``ann_min_rows=0`` (time = vector index build, the table's default type and parameters).
   Then table size on disk, fragments, versions.
5. ``--table-side N``: the table-side stages at N rows without the tokenizer: chunk rows generated directly from
   the corpus's real sentences (about --max-tokens tokens each, n_tokens estimated from characters), instrument
   vectors, the job's ``FragmentWriter`` (blocks of ``embed.block_mib``) and ``commit_fragments``, then compact,
   FTS and vector index through ``finalize_table``, timed the same way.

Cost per million chunks per stage = stage seconds / (chunks / 1e6); the linearity target compares it between
sizes. Appends a section to bench/RESULTS.md (``--no-append``: print only). Data under bench/_work/scale,
deleted at the end (``--keep``).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / "_work" / "scale"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import corpus_gen  # noqa: E402

MiB = 1 << 20


def parse_size(s: str) -> int:
    s = s.strip().lower()
    mult = {"k": 1_000, "m": 1_000_000}.get(s[-1], 1)
    return int(float(s[:-1] if s[-1] in "km" else s) * mult)


def label(n: int) -> str:
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else f"{n // 1000}k" if n % 1000 == 0 else str(n)


def job_overrides(corpus: Path, db: Path, runs: Path, max_tokens: int, overlap: int, extra: list[str]) -> list[str]:
    return [f"input.uri={corpus}", "input.id_field=id", "input.text_fields=[text]", "input.title_field=title",
            "input.metadata_fields=[]", "model.name=instrument:hash", f"chunking.max_tokens={max_tokens}",
            f"chunking.overlap_tokens={overlap}", f"store.uri={db}", "store.corpus_name=scale", "store.fts=false",
            "store.ann_min_rows=1000000000000", f"output.run_dir={runs}", *extra]


def load_cfg(overrides: list[str]):
    from medembed.config import EmbedJobConfig, load_config

    return load_config(EmbedJobConfig, None, overrides)


def table_schema(card):
    from medembed import schema as S

    kw = {"doc_hash": True} if "doc_hash" in inspect.signature(S.table_schema).parameters else {}
    return S.table_schema(card.dim, card.model_id, card.revision, card.backend, card.precision, **kw)


# --- 1. tokenizer alone -----------------------------------------------------------------------

def tokenizer_alone(texts: list[str], tok_path: str, repeats: int) -> dict:
    from medembed.embedding.chunking import load_tokenizer

    tok = load_tokenizer(tok_path)
    out = {}
    for offsets in (True, False):
        rates = []
        for _ in range(repeats):
            n = 0
            t0 = time.process_time()
            w0 = time.perf_counter()
            for i in range(0, len(texts), 256):
                enc = tok(texts[i:i + 256], add_special_tokens=False, return_offsets_mapping=offsets,
                          return_attention_mask=False, return_token_type_ids=False, verbose=False)
                n += sum(len(x) for x in enc["input_ids"])
            cpu, wall = time.process_time() - t0, time.perf_counter() - w0
            rates.append({"tokens": n, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "tokens_per_s": round(n / wall)})
        out["with_offsets" if offsets else "no_offsets"] = rates
    return out


# --- 2. stage costs in this process -----------------------------------------------------------

def stage_costs(sample: Path, extra: list[str], max_tokens: int, overlap: int) -> dict:
    import pyarrow as pa

    from medembed.embedding.card import resolve_card
    from medembed.embedding.chunking import chunk_params
    from medembed.embedding.embedder import ChunkEmbedder
    from medembed.embedding.encoders import encoder_actor_kwargs
    from medembed.index.changes import chunk_selected_documents
    from medembed.index.writer import FragmentWriter, commit_fragments
    from medembed.ingest import plan_read
    from medembed.runtime.storage import DEFAULT_STORAGE

    work = WORK / "stages"
    shutil.rmtree(work, ignore_errors=True)
    cfg = load_cfg(job_overrides(sample, work / "db", work / "runs", max_tokens, overlap, extra))
    card = resolve_card(cfg.model)
    params = chunk_params(cfg, card)
    schema = table_schema(card)
    times: dict[str, float] = {}

    def timed(name, fn, *a):
        t0 = time.process_time()
        r = fn(*a)
        times[name] = times.get(name, 0.0) + time.process_time() - t0
        return r

    plan = plan_read(cfg.input, str(work / "quarantine"))
    plan.start_registry()
    docs = timed("read_normalize", lambda: list(plan.blocks()))
    chunks = [timed("chunk", chunk_selected_documents, b, params, None, None) for b in docs]
    chunks = pa.concat_tables([c for c in chunks if c.num_rows])
    kw = encoder_actor_kwargs(cfg.model, cfg.embed, DEFAULT_STORAGE, card)
    embedder = timed("embed_init", lambda: ChunkEmbedder(**kw))
    embedded = timed("embed", lambda: pa.concat_tables([embedder(chunks.slice(i, cfg.embed.batch_size))
                                                        for i in range(0, chunks.num_rows, cfg.embed.batch_size)]))
    row_bytes = max(1, embedded.nbytes // max(1, embedded.num_rows))
    per_block = max(1, int(cfg.embed.block_mib * MiB // row_bytes))
    uri = str(work / "db" / "stages.lance")
    writer = FragmentWriter(uri, schema, None)
    frags = timed("write", lambda: pa.concat_tables([writer(embedded.slice(i, per_block))
                                                     for i in range(0, embedded.num_rows, per_block)]))
    result = timed("commit", lambda: commit_fragments(frags, uri, schema, commit_every=cfg.store.commit_every))
    n, tokens = chunks.num_rows, int(pa.compute.sum(chunks.column("n_tokens")).as_py())
    out = {"docs": sum(b.num_rows for b in docs), "chunks": n, "tokens": tokens, "rows_per_fragment": per_block,
           "fragments": result.stats.fragments, "commits": result.stats.commits, "stages": {}}
    for k, v in times.items():
        out["stages"][k] = {"cpu_s": round(v, 3), "s_per_million_chunks": round(v / n * 1e6, 1),
                            "tokens_per_s_per_core": round(tokens / v) if v else None}
    path_s = sum(times[k] for k in ("read_normalize", "chunk", "embed", "write", "commit"))
    out["model_free_path"] = {"cpu_s": round(path_s, 3), "tokens_per_s_per_core": round(tokens / path_s),
                              "s_per_million_chunks": round(path_s / n * 1e6, 1)}
    shutil.rmtree(work, ignore_errors=True)
    return out


# --- 3. the job, sampled ------------------------------------------------------------------------

class Sampler(threading.Thread):
    """Every 0.5 s: driver RSS, process-tree RSS and CPU seconds; every 15 s: Ray object store bytes."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        import psutil

        self.psutil = psutil
        self.root = psutil.Process(pid)
        self.stop = threading.Event()
        self.driver_rss = self.tree_rss = self.store = 0
        self.tree_peak_top: list[tuple[str, int]] = []  # the largest processes at the tree's peak: (title, RSS bytes)
        self.tree_peak_at = 0.0  # seconds from the sampler's start
        self.t0 = time.time()
        self.cpu: dict[int, float] = {}
        self.gcs: str | None = None
        self.store_error: str | None = None
        self._last_store = 0.0

    def _object_store(self) -> None:
        # `ray memory` is a Python process (~1.8 CPU s on this machine): every 15 s, not to weigh on what is measured
        if self.gcs is None or time.time() - self._last_store < 15.0:
            return
        self._last_store = time.time()
        try:
            out = subprocess.run([sys.executable, "-m", "ray.scripts.scripts", "memory", "--stats-only",
                                  "--address", self.gcs], capture_output=True, text=True, timeout=60,
                                 env={**os.environ, "RAY_AUTH_MODE": "token"}).stdout  # the job's instance: token auth
            m = re.search(r"Plasma memory usage (\d+) MiB", out)
            if m:
                self.store = max(self.store, int(m.group(1)) * MiB)
            elif not self.store_error:
                self.store_error = out[-300:] or "no output"
        except Exception as e:  # a sampling failure must not end the run
            self.store_error = str(e)

    def run(self) -> None:
        ps = self.psutil
        while not self.stop.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
                rss, each = 0, []
                for p in procs:
                    try:
                        with p.oneshot():
                            rss += p.memory_info().rss
                            each.append((" ".join(p.cmdline())[:70] or p.name(), p.memory_info().rss))
                            t = p.cpu_times()
                            self.cpu[p.pid] = t.user + t.system
                            if self.gcs is None and "raylet" in p.name():
                                m = re.search(r"--gcs-address=(\S+)", " ".join(p.cmdline()))
                                self.gcs = m.group(1) if m else None
                    except (ps.NoSuchProcess, ps.AccessDenied):
                        pass
                self.driver_rss = max(self.driver_rss, self.root.memory_info().rss)
                if rss > self.tree_rss:
                    self.tree_rss, self.tree_peak_at = rss, round(time.time() - self.t0, 1)
                    self.tree_peak_top = sorted(each, key=lambda e: -e[1])[:6]
            except ps.NoSuchProcess:
                break
            self._object_store()
            self.stop.wait(0.5)


def run_job(corpus: Path, db: Path, runs: Path, max_tokens: int, overlap: int, extra: list[str], cpus: int,
            log_path: Path) -> dict:
    env = dict(os.environ, MEDEMBED_ALLOW_INSTRUMENT="1", HF_HUB_OFFLINE="1")
    for k in ("RAYON_NUM_THREADS", "TOKENIZERS_PARALLELISM", "RAY_ADDRESS"):
        env.pop(k, None)
    sets = [*job_overrides(corpus, db, runs, max_tokens, overlap, extra), f"ray.num_cpus={cpus}",
            "output.run_name=job"]
    cmd = [sys.executable, "-m", "medembed.app.cli", "embed", "--config", "embed"]
    for s in sets:
        cmd += ["--set", s]
    t0 = time.perf_counter()
    with open(log_path, "w") as logf:
        proc = subprocess.Popen(cmd, cwd=str(ROOT), env=env, stdout=logf, stderr=subprocess.STDOUT)
        sampler = Sampler(proc.pid)
        sampler.start()
        rc = proc.wait()
        sampler.stop.set()
        sampler.join(timeout=30)
    wall = time.perf_counter() - t0
    if rc:
        raise RuntimeError(f"the embed job failed (exit {rc}); see {log_path}:\n" + log_path.read_text()[-3000:])
    manifest = json.loads(next(runs.rglob("manifest.json")).read_text())
    return {"wall_s": round(wall, 2), "manifest": manifest, "driver_peak_rss": sampler.driver_rss,
            "tree_peak_rss": sampler.tree_rss, "tree_cpu_s": round(sum(sampler.cpu.values()), 1),
            "tree_peak_at_s": sampler.tree_peak_at,
            "tree_peak_top_mib": [[t, round(r / MiB)] for t, r in sampler.tree_peak_top],
            "object_store_peak": sampler.store if sampler.gcs else None, "object_store_error": sampler.store_error}


# --- 4. indexes, on-disk figures ----------------------------------------------------------------

def rss_peak_during(fn):
    import psutil

    me = psutil.Process()
    peak = [me.memory_info().rss]
    stop = threading.Event()

    def watch():
        while not stop.wait(0.5):
            peak[0] = max(peak[0], me.memory_info().rss)

    th = threading.Thread(target=watch, daemon=True)
    th.start()
    t0 = time.perf_counter()
    try:
        r = fn()
    finally:
        stop.set()
        th.join()
    return r, round(time.perf_counter() - t0, 2), peak[0]


def build_indexes(db: Path, table: str, extra: list[str], ann: bool = True) -> dict:
    from medembed.index.indexes import finalize_table
    from medembed.runtime.storage import DEFAULT_STORAGE

    store = load_cfg([f"store.uri={db}", *[e for e in extra if e.startswith("store.")]]).store
    out = {}
    fts_cfg = store.model_copy(update={"fts": True, "ann_min_rows": 10**12, "compact": False})
    info, s, peak = rss_peak_during(lambda: finalize_table(str(db), table, fts_cfg, DEFAULT_STORAGE))
    out["fts"] = {"seconds": s, "peak_rss": peak, "result": info.get("fts_index")}
    if not ann:
        out["ann"] = {"seconds": None, "peak_rss": None, "result": "not built (--table-side-ann)"}
        return out
    ann_cfg = store.model_copy(update={"fts": True, "ann_min_rows": 0, "compact": False})
    info, s, peak = rss_peak_during(lambda: finalize_table(str(db), table, ann_cfg, DEFAULT_STORAGE))
    out["ann"] = {"seconds": s, "peak_rss": peak, "result": info.get("ann_index")}
    return out


def table_figures(uri: Path) -> dict:
    import lance

    ds = lance.dataset(str(uri))
    size = sum(f.stat().st_size for f in uri.rglob("*") if f.is_file())
    return {"rows": ds.count_rows(), "fragments": len(ds.get_fragments()), "versions": len(ds.versions()),
            "bytes_on_disk": size}


# --- 5. table side at N rows, no tokenizer -------------------------------------------------------

def table_side(n: int, max_tokens: int, extra: list[str], seed: int, ann: bool) -> dict:
    import numpy as np
    import pyarrow as pa

    from medembed import schema as S
    from medembed.embedding.card import resolve_card
    from medembed.embedding.instrument import hash_vectors, text_seeds
    from medembed.index.indexes import compact
    from medembed.index.writer import FragmentWriter, commit_fragments

    work = WORK / f"table_{label(n)}"
    shutil.rmtree(work, ignore_errors=True)
    db = work / "db"
    cfg = load_cfg(job_overrides(work, db, work / "runs", max_tokens, 32, extra))
    card = resolve_card(cfg.model)
    schema = table_schema(card)
    pool = corpus_gen.load_pool()
    chars_per_token = 4.6  # PMC-Patients text under the MiniLM tokenizer (measured: tokenizer-alone sample)
    target_chars = int((max_tokens - 2) * chars_per_token)
    uri = str(db / "scale__instrument_hash_384.lance")
    writer = FragmentWriter(uri, schema, None)
    row_bytes = card.dim * 4 + target_chars + 200
    per_block = max(1, int(cfg.embed.block_mib * MiB // row_bytes))
    rng = np.random.default_rng(seed)
    times = {"generate": 0.0, "embed": 0.0, "write": 0.0}
    frag_tables = []
    t_all = time.perf_counter()
    done = 0
    while done < n:
        t0 = time.process_time()
        m = min(per_block, n - done)
        sidx = rng.integers(0, len(pool.sentences), (m, 24))
        csum = np.cumsum(pool.sent_chars[sidx], axis=1)
        k = np.maximum(1, (csum <= target_chars).sum(axis=1))
        texts = [" ".join(pool.sentences[s] for s in sidx[j, :k[j]]) for j in range(m)]
        docs = [f"t{(done + j) // 10:09d}" for j in range(m)]
        cols = {S.CHUNK_ID: [f"{d}#{(done + j) % 10}" for j, d in enumerate(docs)], S.DOC_ID: docs,
                S.CHUNK_INDEX: pa.array([(done + j) % 10 for j in range(m)], pa.int32()), S.TITLE: [""] * m,
                S.TEXT: texts, S.METADATA: [None] * m, S.CONTENT_HASH: [S.content_hash("", t) for t in texts],
                S.N_TOKENS: pa.array(np.minimum(max_tokens, [len(t) // chars_per_token + 2 for t in texts]).astype(np.int32)),
                S.MODEL_ID: [card.model_id] * m,
                S.EMBEDDED_AT: pa.array([datetime.now(timezone.utc)] * m, pa.timestamp("us", tz="UTC"))}
        for f in schema.names:
            if f not in cols and f != S.VECTOR:
                cols[f] = pa.nulls(m, schema.field(f).type)
        t1 = time.process_time()
        vecs = hash_vectors(text_seeds(texts), card.dim)
        cols[S.VECTOR] = S.vectors_to_arrow(vecs)
        t2 = time.process_time()
        frag_tables.append(writer(pa.table(cols)))
        t3 = time.process_time()
        times["generate"] += t1 - t0
        times["embed"] += t2 - t1
        times["write"] += t3 - t2
        done += m
    write_wall = time.perf_counter() - t_all
    frags = pa.concat_tables(frag_tables)
    result, commit_s, _ = rss_peak_during(lambda: commit_fragments(frags, uri, schema,
                                                                   commit_every=cfg.store.commit_every))
    before = table_figures(Path(uri))
    compacted, compact_s, compact_rss = rss_peak_during(lambda: compact(str(db), uri.rsplit("/", 1)[1][:-6], None))
    idx = build_indexes(db, uri.rsplit("/", 1)[1][:-6], extra, ann)
    out = {"rows": n, "rows_per_fragment": per_block, "cpu_s": {k: round(v, 1) for k, v in times.items()},
           "write_wall_s": round(write_wall, 1), "commit_s": commit_s, "commits": result.stats.commits,
           "fragments_written": result.stats.fragments, "before_compact": before,
           "compact": {"seconds": compact_s, "peak_rss": compact_rss, "fragments_compacted": compacted},
           "indexes": idx, "after": table_figures(Path(uri))}
    return out


# --- report ---------------------------------------------------------------------------------------

def per_million(seconds: float | None, chunks: int) -> float | None:
    return round(seconds / chunks * 1e6, 1) if seconds is not None and chunks else None


def summarize_job(n_target: int, job: dict, idx: dict, fig: dict, cpus: int, gen_s: float) -> dict:
    m = job["manifest"]
    c, d, tp = m["counts"], m["durations_s"], m.get("throughput", {})
    chunks, tokens = c["chunks_written"], c["tokens_embedded"]
    pipe = d.get("embed_pipeline")
    return {"target": n_target, "chunks": chunks, "tokens": tokens, "docs": c.get("documents_accepted"),
            "corpus_gen_s": gen_s, "job_wall_s": job["wall_s"], "pipeline_s": pipe,
            "steady_tokens_per_s": tp.get("steady_tokens_per_s"),
            "compact_s": d.get("indexes"), "fts_s": idx["fts"]["seconds"], "ann_s": idx["ann"]["seconds"],
            "ann": idx["ann"]["result"], "fts_peak_rss": idx["fts"]["peak_rss"], "ann_peak_rss": idx["ann"]["peak_rss"],
            "per_million_s": {"pipeline": per_million(pipe, chunks), "compact": per_million(d.get("indexes"), chunks),
                              "fts": per_million(idx["fts"]["seconds"], chunks),
                              "ann": per_million(idx["ann"]["seconds"], chunks)},
            "rows_per_s": round(chunks / pipe) if pipe else None,
            "tokens_per_s": round(tokens / pipe) if pipe else None,
            "tokens_per_s_per_core": round(tokens / pipe / cpus) if pipe else None,
            "tokens_per_cpu_s": round(tokens / job["tree_cpu_s"]) if job["tree_cpu_s"] else None,
            "tree_cpu_s": job["tree_cpu_s"], "driver_peak_rss_mib": round(job["driver_peak_rss"] / MiB),
            "driver_vmhwm_mib": m.get("driver_peak_rss_mib"),
            "tree_peak_rss_mib": round(job["tree_peak_rss"] / MiB),
            "tree_peak_at_s": job["tree_peak_at_s"], "tree_peak_top_mib": job["tree_peak_top_mib"],
            "wave_runner_peak_rss_mib": m.get("wave_runner_peak_rss_mib"),
            "ray_data_executions": m.get("ray_data_executions"),
            "object_store_peak_mib": None if job["object_store_peak"] is None else round(job["object_store_peak"] / MiB),
            "fragments_committed": c.get("fragments"), "commits": c.get("commits"), **{f"table_{k}": v for k, v in fig.items()}}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="100k,1m", help="chunk counts for the full path (the real job)")
    ap.add_argument("--table-side", default="", help="chunk counts for the table-side stages only (e.g. 10m)")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--overlap", type=int, default=32)
    ap.add_argument("--cpus", type=int, default=os.cpu_count() or 2, help="CPUs of the job's local Ray")
    ap.add_argument("--sample-docs", type=int, default=3000, help="documents for the tokenizer and stage figures")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--format", default="jsonl", choices=["jsonl", "parquet"])
    ap.add_argument("--set", dest="extra", action="append", default=[], help="job config override (repeatable)")
    ap.add_argument("--skip-stages", action="store_true", help="no tokenizer-alone / stage-cost figures")
    ap.add_argument("--table-side-ann", action="store_true", help="also build the vector index in --table-side runs "
                    "(IVF training at 10M rows takes far longer than the rest on 2 cores)")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--no-append", action="store_true")
    a = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ["MEDEMBED_ALLOW_INSTRUMENT"] = "1"
    WORK.mkdir(parents=True, exist_ok=True)
    started = datetime.now(timezone.utc)
    res: dict = {"args": vars(a), "started": started.isoformat(timespec="seconds"), "machine": machine()}
    if not a.skip_stages:
        sample = WORK / "sample"
        corpus_gen.generate(sample, a.sample_docs, a.seed, a.format)
        from medembed.config import ModelConfig
        from medembed.embedding.card import locate_model

        texts = [json.loads(line)["text"] for f in sorted(sample.glob("part-*.jsonl")) for line in f.open()]
        os.environ["RAYON_NUM_THREADS"] = "1"
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
        res["tokenizer_alone"] = tokenizer_alone(texts, locate_model(ModelConfig())[1], a.repeats)
        print("tokenizer alone:", json.dumps(res["tokenizer_alone"]), flush=True)
        import ray

        from medembed.config import RayConfig
        from medembed.runtime.ray_setup import init_ray

        init_ray(RayConfig(num_cpus=1))
        try:
            res["stage_costs"] = [stage_costs(sample, a.extra, a.max_tokens, a.overlap) for _ in range(a.repeats)]
        finally:
            ray.shutdown()
        print("stage costs:", json.dumps(res["stage_costs"][-1]), flush=True)
        shutil.rmtree(sample, ignore_errors=True)
    res["jobs"] = []
    for size in [parse_size(s) for s in a.sizes.split(",") if s.strip()]:
        work = WORK / f"job_{label(size)}"
        shutil.rmtree(work, ignore_errors=True)
        t0 = time.perf_counter()
        info = corpus_gen.generate(work / "corpus", None, a.seed, a.format, chunks=size, max_tokens=a.max_tokens,
                                   overlap=a.overlap, shard_docs=max(2000, -(-size // 10 // 16)))
        gen_s = round(time.perf_counter() - t0, 1)
        job = run_job(work / "corpus", work / "db", work / "runs", a.max_tokens, a.overlap, a.extra, a.cpus,
                      work / "job.log")
        table = job["manifest"]["table"]["name"]
        idx = build_indexes(work / "db", table, a.extra)
        fig = table_figures(work / "db" / f"{table}.lance")
        s = summarize_job(size, job, idx, fig, a.cpus, gen_s)
        s["corpus"] = {k: info.get(k) for k in ("docs", "chars", "files")} | {"files": len(info["files"])}
        s["manifest_durations_s"] = job["manifest"]["durations_s"]
        s["object_store_error"] = job["object_store_error"]
        res["jobs"].append(s)
        print(f"job {label(size)}:", json.dumps(s), flush=True)
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    res["table_side"] = []
    for size in [parse_size(s) for s in a.table_side.split(",") if s.strip()]:
        r = table_side(size, a.max_tokens, a.extra, a.seed, a.table_side_ann)
        res["table_side"].append(r)
        print(f"table side {label(size)}:", json.dumps(r), flush=True)
        if not a.keep:
            shutil.rmtree(WORK / f"table_{label(size)}", ignore_errors=True)
    res["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    out = WORK.parent / f"scale_{started.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps(res, indent=2, default=str))
    print(f"results: {out}")
    if not a.no_append:
        from results_file import append_section

        append_section(report(res, argv if argv is not None else sys.argv[1:]))


def machine() -> str:
    return f"{platform.machine()} {os.cpu_count()}-core CPU, no GPU, Python {platform.python_version()}"


def mib(b: int | None) -> str:
    return "n/a" if b is None else f"{b / MiB:.0f} MiB"


def report(res: dict, argv: list[str]) -> list[str]:
    from results_file import header_lines

    lines = [*header_lines(f"scale ({res['started'][:10]})", "MEDEMBED_ALLOW_INSTRUMENT=1 HF_HUB_OFFLINE=1 python "
                           "bench/scale.py " + " ".join(argv)),
             f"- run: {res['started']} to {res['finished']} on {res['machine']} (shared with other sessions)",
             "- encoder: the benchmark instrument (`instrument:hash`, 384-dim hash vectors; MiniLM tokenizer); "
             f"{res['args']['max_tokens']}-token chunks, overlap {res['args']['overlap']}; corpus: bench/corpus_gen.py "
             "(real PMC-Patients sentences)", ""]
    tok = res.get("tokenizer_alone")
    if tok:
        for k, v in tok.items():
            rates = [r["tokens_per_s"] for r in v]
            lines.append(f"- tokenizer alone ({k.replace('_', ' ')}, one thread, batches of 256 docs, "
                         f"{v[0]['tokens']:,} tokens): {min(rates):,}-{max(rates):,} tokens/s")
    sc = res.get("stage_costs")
    if sc:
        lines.append(f"- stage costs, one core, the job's functions in one process ({sc[0]['docs']} docs, "
                     f"{sc[0]['chunks']:,} chunks, {sc[0]['tokens']:,} tokens; {sc[0]['rows_per_fragment']} rows/fragment; "
                     f"{len(sc)} repeats, range):")
        for k in sc[0]["stages"]:
            if k == "embed_init":
                continue
            per = [r["stages"][k]["s_per_million_chunks"] for r in sc]
            tps = [r["stages"][k]["tokens_per_s_per_core"] for r in sc]
            lines.append(f"  - {k}: {min(per)}-{max(per)} CPU s per million chunks ({min(tps):,}-{max(tps):,} tokens/s per core)")
        tps = [r["model_free_path"]["tokens_per_s_per_core"] for r in sc]
        lines.append(f"  - model-free path (read+normalize+chunk+embed+write+commit): {min(tps):,}-{max(tps):,} "
                     "tokens/s per core")
    if res["jobs"]:
        lines += ["", "| chunks | docs | pipeline s | tokens/s | tokens/s/core | tokens/CPU-s | compact s | FTS s | ANN s "
                  "| s/M chunks: pipeline, compact, FTS, ANN | driver peak RSS (sampled; VmHWM) | tree peak RSS | object store peak "
                  "| fragments, commits | table on disk (fragments, versions) |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for j in res["jobs"]:
            p = j["per_million_s"]
            lines.append(
                f"| {j['chunks']:,} | {j['docs']:,} | {j['pipeline_s']} | {j['tokens_per_s']:,} | {j['tokens_per_s_per_core']:,} "
                f"| {j['tokens_per_cpu_s']:,} | {j['compact_s']} | {j['fts_s']} | {j['ann_s']} "
                f"| {p['pipeline']}, {p['compact']}, {p['fts']}, {p['ann']} | {j['driver_peak_rss_mib']}; {j.get('driver_vmhwm_mib')} MiB "
                f"| {j['tree_peak_rss_mib']} MiB | {j['object_store_peak_mib']} MiB | {j['fragments_committed']}, {j['commits']} "
                f"| {j['table_bytes_on_disk'] / MiB:,.0f} MiB ({j['table_fragments']}, {j['table_versions']}) |")
    for t in res.get("table_side", []):
        idx = t["indexes"]
        lines.append(f"- table side, {t['rows']:,} rows generated directly into the job's FragmentWriter "
                     f"({t['rows_per_fragment']} rows/fragment; no tokenizer): CPU s generate {t['cpu_s']['generate']}, "
                     f"embed {t['cpu_s']['embed']}, write {t['cpu_s']['write']} (wall {t['write_wall_s']}); commit "
                     f"{t['commit_s']} s ({t['commits']} commits, {t['fragments_written']} fragments); compact "
                     f"{t['compact']['seconds']} s (peak RSS {mib(t['compact']['peak_rss'])}); FTS {idx['fts']['seconds']} s "
                     f"(peak RSS {mib(idx['fts']['peak_rss'])}); ANN {idx['ann']['seconds']} s (peak RSS "
                     f"{mib(idx['ann']['peak_rss'])}, {json.dumps(idx['ann']['result'], default=str)}); table "
                     f"{t['after']['bytes_on_disk'] / MiB:,.0f} MiB, {t['after']['fragments']} fragments")
    return lines


if __name__ == "__main__":
    main()
