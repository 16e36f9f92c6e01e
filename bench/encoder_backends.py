"""Encoder backends on CPU: quality against torch fp32, and throughput (plain encode and the embed job).

    HF_HUB_OFFLINE=1 python bench/encoder_backends.py --quality                 # writes quality records
    HF_HUB_OFFLINE=1 python bench/encoder_backends.py --throughput --chunks 5000

Both use the bundled all-MiniLM-L6-v2 and one model cache (``--cache-dir``, default
bench/_work/model_cache, gitignored), so the ONNX exports are made once and the embed job finds
the quality records the ``--quality`` run wrote there.

--quality (per backend, default onnx and onnx-int8, against torch fp32 computed in the same run):
  * nDCG@10 on the BEIR test splits of SciFact and MED in ../shared/data (load_beir, exact top-k by
    dot product of normalized vectors, medembed.evaluation.metrics.evaluate); ``--max-docs`` keeps
    every judged document plus a seeded random sample of the others (the same for every backend);
  * mean cosine between the backend's and torch's vectors of ``--cos-chunks`` (2,000) real chunks
    of PMC-Patients notes (medembed's chunker, the embed job's ChunkParams);
  * pass = every nDCG@10 within 0.5 points of torch's and mean cosine >= 0.99; the verdict is
    written to ``<cache>/exports/<model>-<key>/quality/<backend>.json`` (what the embed job checks).

--throughput on the same >= --chunks chunks (PMC-Patients notes, repeated under new ids):
  * baseline: a fresh process runs ``SentenceTransformer.encode(texts, batch_size=32)`` (torch fp32);
  * plain encode per backend: a fresh process builds medembed's encoder and calls
    ``encode_documents`` on the same texts (length-bucketed batches);
  * the embed job per backend: ``jobs/embed.py --set model.backend=...`` into a fresh table;
    steady chunks/s from its manifest (first fragment excluded) and end-to-end wall time.
  Peak memory: max RSS of the plain-encode process (model + runtime + batch activations), and the
  max RSS of the job's embedder actor (the Ray worker process whose title names ChunkEmbedder).

Results are printed and appended to bench/RESULTS.md with the load average.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from results_file import append_section, section_header  # noqa: E402 - bench/ is on sys.path (python bench/<name>.py)

DATA = (ROOT / ".." / "shared" / "data").resolve()
NOTES = DATA / "pmc_patients" / "notes.jsonl"
WORK = ROOT / "bench" / "_work"
CONFIG = "embed_pmc_patients"
log = logging.getLogger("bench.encoder_backends")


# --- inputs ---------------------------------------------------------------------------------------

def chunk_params(cache_dir: str):
    from medembed.config import EmbedJobConfig, load_config
    from medembed.embedding.card import resolve_card
    from medembed.embedding.chunking import chunk_params as job_chunk_params

    cfg = load_config(EmbedJobConfig, CONFIG, [f"model.cache_dir={cache_dir}"])
    return job_chunk_params(cfg, resolve_card(cfg.model))


def pmc_chunks(n: int, cache_dir: str) -> tuple[list[str], list[int]]:
    """>= n chunk texts (document_input form) and their token counts, from PMC-Patients notes (repeated).

    Notes are chunked 50 at a time until n chunks exist, and cached in bench/_work for the workers.
    """
    from medembed.embedding.chunking import chunk_batch, document_input

    cached = WORK / f"pmc_chunks_{n}.json"
    if cached.exists():
        d = json.loads(cached.read_text(encoding="utf-8"))
        return d["texts"], d["lengths"]
    notes = [json.loads(line) for line in NOTES.open(encoding="utf-8") if line.strip()]
    params = chunk_params(cache_dir)
    texts: list[str] = []
    lengths: list[int] = []
    for i in range(0, len(notes), 50):
        part = notes[i:i + 50]
        t = chunk_batch({"doc_id": [x["patient_uid"] for x in part], "title": [x.get("title") or "" for x in part],
                         "text": [x["patient"] for x in part], "metadata": ["{}"] * len(part)}, params)
        texts += [document_input(a, b) for a, b in zip(t.column("title").to_pylist(), t.column("text").to_pylist())]
        lengths += t.column("n_tokens").to_pylist()
        if len(texts) >= n:
            break
    reps = -(-n // len(texts))
    texts, lengths = (texts * reps)[:n], (lengths * reps)[:n]
    WORK.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps({"texts": texts, "lengths": lengths}), encoding="utf-8")
    return texts, lengths


def notes_file(n_chunks: int, cache_dir: str) -> tuple[Path, int]:
    """A JSONL of whole notes (repeated under new ids) that chunks into >= n_chunks chunks."""
    from medembed.embedding.chunking import chunk_batch

    notes = [json.loads(line) for line in NOTES.open(encoding="utf-8") if line.strip()]
    t = chunk_batch({"doc_id": [x["patient_uid"] for x in notes], "title": [x.get("title") or "" for x in notes],
                     "text": [x["patient"] for x in notes], "metadata": ["{}"] * len(notes)}, chunk_params(cache_dir))
    per_doc: dict[str, int] = {}
    for d in t.column("doc_id").to_pylist():
        per_doc[d] = per_doc.get(d, 0) + 1
    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / f"backend_notes_{n_chunks}.jsonl"
    chunks, k = 0, 0
    with path.open("w", encoding="utf-8") as f:
        while chunks < n_chunks:
            for note in notes:
                if chunks >= n_chunks:
                    break
                row = dict(note, patient_uid=f"{note['patient_uid']}-r{k}" if k else note["patient_uid"])
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
                chunks += per_doc.get(note["patient_uid"], 0)
            k += 1
    return path, chunks


def shrink(ds, max_queries: int | None, max_docs: int | None, seed: int = 0) -> tuple[list[int], list[int]]:
    """(query rows, document rows): a seeded sample of queries, every document judged for them, plus a seeded
    sample of the other documents up to max_docs (None: everything). The same for every backend."""
    rng = np.random.default_rng(seed)
    q = ds.queries
    qrows = list(range(len(q))) if not max_queries or len(q) <= max_queries else sorted(
        rng.choice(len(q), size=max_queries, replace=False).tolist())
    c = ds.corpus
    if not max_docs or len(c) <= max_docs:
        return qrows, list(range(len(c)))
    judged = {d for i in qrows for d in ds.qrels.get(q.ids[i], {})}
    keep = [i for i, d in enumerate(c.ids) if d in judged]
    rest = [i for i, d in enumerate(c.ids) if d not in judged]
    n_extra = max(0, max_docs - len(keep))
    extra = rng.choice(len(rest), size=n_extra, replace=False).tolist() if n_extra else []
    return qrows, sorted(keep + [rest[j] for j in extra])


# --- quality --------------------------------------------------------------------------------------

# a backend name of the bench: a model.backend, or torch in another dtype (no export, no quality gate)
DTYPE_SPECS = {"torch-bf16": "bfloat16"}


def model_settings(backend: str) -> dict[str, str]:
    """The ModelConfig fields a bench backend name stands for."""
    if backend in DTYPE_SPECS:
        return {"backend": "torch", "dtype": DTYPE_SPECS[backend]}
    return {"backend": backend}


def encoder(backend: str, cache_dir: str, threads: int | None):
    from medembed.config import EmbedConfig, ModelConfig
    from medembed.embedding.encoders import build_encoder
    from medembed.runtime.storage import DEFAULT_STORAGE

    return build_encoder(ModelConfig(**model_settings(backend), cache_dir=cache_dir), EmbedConfig(torch_threads=threads), DEFAULT_STORAGE)


def ndcg10(enc, ds, qrows: list[int], rows: list[int]) -> float:
    from medembed.embedding.chunking import document_input
    from medembed.evaluation.retrieval import exact_scores

    c, q = ds.corpus, ds.queries
    docs = enc.encode_documents([document_input(c.titles[i], c.texts[i]) for i in rows])
    ids = [c.ids[i] for i in rows]
    qids = [q.ids[i] for i in qrows]
    scores = enc.encode_queries([q.texts[i] for i in qrows]) @ docs.T
    return exact_scores(scores, qids, ids, {qid: ds.qrels[qid] for qid in qids}, k=10, k_values=(10,)).mean["ndcg_at_10"]


def _datasets(args):
    from medembed.evaluation.datasets import load_beir

    sets = {name: load_beir(str(DATA / name), "test") for name in ("scifact", "med")}
    return sets, {name: shrink(ds, args.max_queries, args.max_docs) for name, ds in sets.items()}


def quality_worker(args) -> None:
    """One process, one backend: nDCG@10 per dataset and the vectors of the cosine chunks."""
    sets, picks = _datasets(args)
    texts, lengths = pmc_chunks(args.cos_chunks, args.cache_dir)
    t0 = time.perf_counter()
    enc = encoder(args.worker_quality, args.cache_dir, args.threads)
    nd = {name: ndcg10(enc, ds, *picks[name]) for name, ds in sets.items()}
    np.save(args.out + ".npy", enc.encode_documents(texts, lengths))
    Path(args.out).write_text(json.dumps({"nd": nd, "seconds": time.perf_counter() - t0}))


def quality(args) -> str:
    """torch and every backend in parallel processes (one thread each), then compare and record."""
    from medembed.config import ModelConfig
    from medembed.embedding.card import backend_precision, resolve_card
    from medembed.embedding.quality import write_quality_record

    sets, picks = _datasets(args)
    texts, _ = pmc_chunks(args.cos_chunks, args.cache_dir)  # cached for the workers
    for b in args.backends:  # export once, before the workers start
        encoder(b, args.cache_dir, 1)
    procs = {}
    for b in ["torch", *args.backends]:
        out = str(WORK / f"quality_{b}.json")
        cmd = [sys.executable, __file__, "--_quality_worker", b, "--out", out, "--cache-dir", args.cache_dir,
               "--cos-chunks", str(args.cos_chunks), "--threads", str(args.threads or 1)]
        cmd += (["--max-docs", str(args.max_docs)] if args.max_docs else []) + (
            ["--max-queries", str(args.max_queries)] if args.max_queries else [])
        procs[b] = (subprocess.Popen(cmd, env=_env(), cwd=ROOT), out)
    for b, (proc, _) in procs.items():
        if proc.wait():
            raise SystemExit(f"quality worker {b} failed (rc={proc.returncode})")
    res = {b: json.loads(Path(out).read_text()) | {"vecs": np.load(out + ".npy")} for b, (_, out) in procs.items()}
    ref = res["torch"]
    for b in args.backends:
        cos = (res[b]["vecs"] * ref["vecs"]).sum(1)
        card = resolve_card(ModelConfig(**model_settings(b), cache_dir=args.cache_dir))
        res[b]["record"] = write_quality_record(
            card, args.cache_dir, b, {k: (res[b]["nd"][k], ref["nd"][k]) for k in ref["nd"]}, float(cos.mean()),
            len(texts), min_cosine=float(cos.min()), corpus_docs={k: len(v[1]) for k, v in picks.items()},
            queries={k: len(v[0]) for k, v in picks.items()})
        log.info("%s: %s", b, res[b]["record"])
    lines = ["| backend | precision | SciFact nDCG@10 (Δ vs torch) | MED nDCG@10 (Δ) | mean cos vs torch (min) | "
             "passed | worker s (same work, run concurrently) |", "|---|---|---|---|---|---|---|"]
    for b, r in res.items():
        d = {k: (r["nd"][k], 100 * (r["nd"][k] - ref["nd"][k])) for k in r["nd"]}
        rec = r.get("record")
        cos = "1 (reference)" if rec is None else "{:.4f} ({:.4f})".format(rec["mean_cosine"], rec["min_cosine"])
        verdict = "reference" if rec is None else ("yes" if rec["passed"] else "NO: " + "; ".join(rec["reasons"]))
        lines.append(f"| {b} | {backend_precision(**model_settings(b))} | {d['scifact'][0]:.4f} ({d['scifact'][1]:+.2f} pt) | "
                     f"{d['med'][0]:.4f} ({d['med'][1]:+.2f} pt) | {cos} | {verdict} | {r['seconds']:.0f} |")
    docs = ", ".join(f"{k}: {len(v[1])} of {len(sets[k].corpus)} docs, {len(v[0])} of {len(sets[k].queries)} queries"
                     for k, v in picks.items())
    return (f"Quality vs torch fp32 (exact top-10; {docs}; cosine on {len(texts)} PMC-Patients chunks):\n\n"
            + "\n".join(lines) + "\n")


# --- throughput -----------------------------------------------------------------------------------

def plain_worker(args) -> None:
    """One process: load one backend, encode the chunks, report seconds and peak RSS."""
    texts, lengths = pmc_chunks(args.chunks, args.cache_dir)
    t0 = time.perf_counter()
    if args.worker == "baseline":
        from sentence_transformers import SentenceTransformer

        from medembed.config import ModelConfig
        from medembed.embedding.card import resolve_card

        if args.threads:  # the same intra-op threads as the backends get
            import torch

            torch.set_num_threads(args.threads)
        st = SentenceTransformer(resolve_card(ModelConfig()).path, device="cpu")
        loaded = time.perf_counter()
        vecs = st.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True,
                         show_progress_bar=False)
    else:
        enc = encoder(args.worker, args.cache_dir, args.threads)
        loaded = time.perf_counter()
        vecs = enc.encode_documents(texts, lengths)
    done = time.perf_counter()
    assert vecs.shape == (len(texts), 384) and np.isfinite(vecs).all()
    out = {"chunks": len(texts), "tokens": int(sum(lengths)), "load_s": loaded - t0, "encode_s": done - loaded,
           "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    Path(args.out).write_text(json.dumps(out))


def run_plain(worker: str, args) -> dict:
    out = WORK / f"plain_{worker}.json"
    cmd = [sys.executable, __file__, "--_worker", worker, "--chunks", str(args.chunks), "--cache-dir", args.cache_dir,
           "--out", str(out)] + (["--threads", str(args.threads)] if args.threads else [])
    subprocess.run(cmd, check=True, env=_env(), cwd=ROOT)
    return json.loads(out.read_text())


def _env() -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", RAY_worker_niceness="0")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


class ActorMemory(threading.Thread):
    """Max RSS of the descendants of ``pid`` whose process title names the embedder actor."""

    def __init__(self, pid: int, needle: str = "ChunkEmbedder"):
        super().__init__(daemon=True)
        self.pid, self.needle, self.peak = pid, needle, 0
        self._halt = threading.Event()

    def run(self) -> None:
        import psutil

        while not self._halt.is_set():
            try:
                for p in psutil.Process(self.pid).children(recursive=True):
                    try:
                        if self.needle in " ".join(p.cmdline()):
                            self.peak = max(self.peak, p.memory_info().rss)
                    except psutil.Error:
                        pass
            except psutil.Error:
                return
            self._halt.wait(0.5)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)


def run_job(backend: str, notes: Path, args) -> dict:
    name = f"bench-backend-{backend}-{int(time.time())}"
    store = WORK / f"lancedb_{name}"
    cmd = [sys.executable, str(ROOT / "jobs" / "embed.py"), "--config", CONFIG,
           "--set", f"input.uri={notes}", "--set", f"store.uri={store}", "--set", f"output.run_dir={WORK / 'runs'}",
           "--set", f"output.run_name={name}", *(a for k, v in model_settings(backend).items() for a in ("--set", f"model.{k}={v}")),
           "--set", f"model.cache_dir={args.cache_dir}", "--set", "store.fts=false"]
    if args.threads:
        cmd += ["--set", f"embed.torch_threads={args.threads}"]
    t0 = time.perf_counter()
    with (WORK / f"{name}.log").open("w") as logf:
        proc = subprocess.Popen(cmd, env=_env(), cwd=ROOT, stdout=logf, stderr=subprocess.STDOUT)
        mem = ActorMemory(proc.pid)
        mem.start()
        rc = proc.wait()
    mem.stop()
    if rc:
        raise SystemExit(f"embed job ({backend}) failed with rc={rc}; see {WORK / (name + '.log')}")
    m = json.loads((WORK / "runs" / name / "manifest.json").read_text())
    thr = m.get("throughput") or {}
    return {"wall_s": time.perf_counter() - t0, "steady_cps": thr.get("steady_chunks_per_s"),
            "rows": (m.get("counts") or {}).get("chunks_written") or thr.get("rows"), "actor_rss": mem.peak}


def throughput(args) -> str:
    notes, n_job = (None, 0) if args.no_job else notes_file(args.chunks, args.cache_dir)
    rows = {}
    base = run_plain("baseline", args)
    base_cps = base["chunks"] / base["encode_s"]
    rows["torch (SentenceTransformer.encode, batch 32)"] = (base, None)
    log.info("baseline: %.1f chunks/s", base_cps)
    plain = {}
    for b in args.backends_all:
        plain[b] = run_plain(b, args)
        log.info("plain %s: %.1f chunks/s", b, plain[b]["chunks"] / plain[b]["encode_s"])
    jobs = {}
    if not args.no_job:
        for b in args.backends_all:
            jobs[b] = run_job(b, notes, args)
            log.info("job %s: %s", b, jobs[b])
    lines = [f"Throughput on {base['chunks']} PMC-Patients chunks ({base['tokens']} tokens; the job: "
             f"{n_job} chunks from the same notes), bundled MiniLM, one run; chunks/s of encode() only "
             "(model load excluded); job: steady state from the manifest, wall = whole process:", "",
             "| run | chunks/s | x torch baseline | x same backend's plain encode | peak RSS (process / actor) |",
             "|---|---|---|---|---|",
             f"| torch baseline: SentenceTransformer.encode | {base_cps:.1f} | 1.00 | - | {_gib(base['peak_rss'])} |"]
    for b, r in plain.items():
        cps = r["chunks"] / r["encode_s"]
        lines.append(f"| plain encode, backend {b} | {cps:.1f} | {cps / base_cps:.2f} | 1.00 | {_gib(r['peak_rss'])} |")
    for b, j in jobs.items():
        cps = j["steady_cps"] or 0.0
        pcps = plain[b]["chunks"] / plain[b]["encode_s"]
        lines.append(f"| embed job, backend {b} (wall {j['wall_s']:.0f}s) | {cps:.1f} | {cps / base_cps:.2f} | "
                     f"{cps / pcps:.2f} | actor {_gib(j['actor_rss'])} |")
    return "\n".join(lines) + "\n"


def _gib(b: int) -> str:
    return f"{b / 2**30:.2f} GiB" if b else "n/a"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quality", action="store_true")
    p.add_argument("--throughput", action="store_true")
    p.add_argument("--backends", nargs="+", default=["onnx", "onnx-int8"],
                   help="model.backend values, or torch-bf16 (torch with model.dtype=bfloat16)")
    p.add_argument("--chunks", type=int, default=5000)
    p.add_argument("--cos-chunks", type=int, default=2000)
    p.add_argument("--max-docs", type=int, default=None, help="subsample each BEIR corpus (judged docs kept)")
    p.add_argument("--max-queries", type=int, default=None, help="subsample each BEIR split's queries (seeded)")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default: all cores)")
    p.add_argument("--no-job", action="store_true", help="skip the embed-job runs")
    p.add_argument("--no-torch-backend", action="store_true", help="throughput: skip medembed's torch backend (plain "
                   "encode and job); the SentenceTransformer.encode baseline always runs")
    p.add_argument("--cache-dir", default=str(WORK / "model_cache"))
    p.add_argument("--no-append", action="store_true")
    p.add_argument("--_worker", dest="worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--_quality_worker", dest="worker_quality", default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.worker:
        plain_worker(args)
        return 0
    if args.worker_quality:
        quality_worker(args)
        return 0
    args.backends_all = [*([] if args.no_torch_backend else ["torch"]), *args.backends]
    WORK.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    parts = []
    if args.quality:
        parts.append(quality(args))
    if args.throughput:
        parts.append(throughput(args))
    if not parts:
        p.error("say --quality and/or --throughput")
    cmd = f"python bench/encoder_backends.py {' '.join(argv if argv is not None else sys.argv[1:])}"
    text = (section_header("encoder_backends", cmd).lstrip("\n") + f"\n- wall time: {time.perf_counter() - t0:.0f} s\n\n"
            + "\n".join(parts))
    print(text)
    (WORK / f"encoder_backends_{int(time.time())}.md").write_text(text)
    if not args.no_append:
        append_section(text, echo=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
