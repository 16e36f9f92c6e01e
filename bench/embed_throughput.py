"""Embedding throughput: medembed's Ray job vs. a plain single-process SentenceTransformer.encode.

    pip install -e ".[bench]"   # psutil: memory sampling
    HF_HUB_OFFLINE=1 python bench/embed_throughput.py --chunks 5000                 # (a) + (b), ratios
    HF_HUB_OFFLINE=1 python bench/embed_throughput.py --memory-only --chunks 20000  # peak memory of the job
    HF_HUB_OFFLINE=1 python bench/embed_throughput.py --memory-only --chunks 100000

Corpus: PMC-Patients notes (../shared/data/pmc_patients/notes.jsonl, never copied into the repo),
chunked with medembed's own chunker and ChunkParams; notes are repeated under new ids
(``<id>-r<k>``) until there are >= --chunks chunks, written to bench/_work/ (gitignored).
Both sides embed exactly the same strings (``document_input(title, chunk_text)``) with the bundled
all-MiniLM-L6-v2 on the same machine.

(a) baseline: a fresh Python process loads the model, reads and chunks the notes and calls
    ``SentenceTransformer.encode(texts, batch_size=B, normalize_embeddings=True)``. B is picked by
    a sweep (--batch-sizes) on the first --sweep-chunks chunks in a separate process; the best is
    the baseline. steady state = chunks / encode() time; end to end = the whole process wall time
    less (a+)'s extra steps. (a+): the same process then also writes the rows and vectors as one Lance
    table and builds LanceDB's FTS index on it, the job's other outputs: the like-for-like single process.
(b) the job: ``python jobs/embed.py`` as a fresh process (starts its own local Ray), into a
    fresh LanceDB folder. end to end = the whole process wall time (Ray start, model load, indexes
    included). steady state = from the manifest: rows written after the first fragment reached the
    driver / time from that moment to the last commit (``throughput.steady_*``; no Ray start, no
    model load, no first-block latency, no index build).
Peak memory = max over samples every 0.5 s of the summed RSS (and PSS, which counts pages shared
with the object store once) of the job process and all its descendants (Ray GCS, raylet, workers).

The baseline runs at the shell's niceness (normally 0); Ray starts its workers at nice 15, which only
matters when other processes load the machine, so the job is started with RAY_worker_niceness=0 to
put both on the same footing (``--ray-worker-niceness -1`` keeps Ray's default).

Appends a section to bench/RESULTS.md (``--no-append`` to skip). Extra ``--set KEY=VALUE`` go to the job.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / "_work"
NOTES = (ROOT / ".." / "shared" / "data" / "pmc_patients" / "notes.jsonl").resolve()
CONFIG = "embed_pmc_patients"  # a shipped config (medembed/configs), by name
SECTION = "## embed_throughput"
sys.path.insert(0, str(ROOT))
from results_file import append_section, section_header  # noqa: E402 - bench/ is on sys.path (python bench/<name>.py)

# --- corpus ----------------------------------------------------------------------------------

def _params(config: Path, overrides: list[str]):
    from medembed.config import EmbedJobConfig, load_config
    from medembed.embedding.card import resolve_card
    from medembed.embedding.chunking import chunk_params

    cfg = load_config(EmbedJobConfig, config, overrides)
    return chunk_params(cfg, resolve_card(cfg.model))


def _chunk(notes: list[dict], params):
    from medembed.embedding.chunking import chunk_batch

    return chunk_batch({"doc_id": [n["patient_uid"] for n in notes], "title": [n.get("title") or "" for n in notes],
                        "text": [n["patient"] for n in notes], "metadata": ["{}"] * len(notes)}, params)


def prepare_corpus(n_chunks: int, config: Path, overrides: list[str]) -> dict:
    """Write >= n_chunks chunks worth of notes (whole notes, repeated under new ids) to bench/_work/."""
    notes = [json.loads(line) for line in NOTES.open(encoding="utf-8") if line.strip()]
    params = _params(config, overrides)
    t = _chunk(notes, params)
    per_doc: dict[str, list[int]] = {}
    for d, nt in zip(t.column("doc_id").to_pylist(), t.column("n_tokens").to_pylist()):
        per_doc.setdefault(d, []).append(nt)
    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / f"notes_{n_chunks}.jsonl"
    chunks = tokens = docs = 0
    with path.open("w", encoding="utf-8") as f:
        k = 0
        while chunks < n_chunks:
            for note in notes:
                if chunks >= n_chunks:
                    break
                row = dict(note)
                if k:
                    row["patient_uid"] = f"{note['patient_uid']}-r{k}"
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
                lens = per_doc.get(note["patient_uid"], [])
                chunks += len(lens)
                tokens += sum(lens)
                docs += 1
            k += 1
    return {"path": str(path), "docs": docs, "chunks": chunks, "tokens": tokens, "max_tokens": params.max_tokens}


# --- (a) baseline worker (runs in its own process) ----------------------------------------------

def baseline_worker(args: argparse.Namespace) -> None:
    t_start = time.perf_counter()
    import torch
    from sentence_transformers import SentenceTransformer

    from medembed.config import ModelConfig
    from medembed.embedding.card import resolve_card
    from medembed.embedding.chunking import document_input

    model = resolve_card(ModelConfig(name="bundled:all-MiniLM-L6-v2"))
    st = SentenceTransformer(model.path, device="cpu")
    t_loaded = time.perf_counter()
    notes = [json.loads(line) for line in open(args.data, encoding="utf-8") if line.strip()]
    table = _chunk(notes, _params(Path(args.config), args.overrides))
    texts = [document_input(ti, tx) for ti, tx in zip(table.column("title").to_pylist(), table.column("text").to_pylist())]
    tokens = table.column("n_tokens").to_pylist()
    t_chunked = time.perf_counter()
    out = {"torch_threads": torch.get_num_threads(), "load_s": t_loaded - t_start, "chunk_s": t_chunked - t_loaded,
           "runs": []}
    limit = args.limit or len(texts)
    for bs in [int(b) for b in args.batch_sizes.split(",")]:
        t = time.perf_counter()
        vecs = st.encode(texts[:limit], batch_size=bs, normalize_embeddings=True, convert_to_numpy=True,
                         show_progress_bar=False)
        dt = time.perf_counter() - t
        assert vecs.shape[0] == min(limit, len(texts))
        out["runs"].append({"batch_size": bs, "chunks": vecs.shape[0], "tokens": sum(tokens[:limit]), "encode_s": dt})
    if args.write_table:  # the job's other outputs, the plain way: one Lance table, then LanceDB's FTS index
        import lance
        import pyarrow as pa

        t = time.perf_counter()
        rows = table.append_column("vector", pa.FixedSizeListArray.from_arrays(pa.array(vecs.ravel()), vecs.shape[1]))
        lance.write_dataset(rows, args.write_table, mode="overwrite")
        out["write_s"] = time.perf_counter() - t
        t = time.perf_counter()
        import lancedb

        db_dir, name = os.path.split(args.write_table.rstrip("/"))
        lancedb.connect(db_dir).open_table(name[:-len(".lance")]).create_fts_index("text", replace=True)
        out["index_s"] = time.perf_counter() - t
    out["process_s"] = time.perf_counter() - t_start
    Path(args.out).write_text(json.dumps(out))


# --- process-tree memory sampling ---------------------------------------------------------------

class TreeSampler(threading.Thread):
    def __init__(self, pid: int, interval: float = 0.5):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak_rss = self.peak_pss = 0
        self.samples: list[tuple[float, int, int, int]] = []  # (t, rss, pss, n procs)
        self._halt = threading.Event()

    def run(self) -> None:
        import psutil

        t0 = time.perf_counter()
        try:
            root = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self._halt.is_set():
            try:
                procs = [root] + root.children(recursive=True)
            except psutil.Error:
                break
            rss = pss = 0
            for p in procs:
                try:
                    mi = p.memory_full_info()
                    rss += mi.rss
                    pss += getattr(mi, "pss", mi.rss)
                except psutil.Error:
                    pass
            self.samples.append((round(time.perf_counter() - t0, 2), rss, pss, len(procs)))
            self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)


def _env(worker_niceness: int | None = None) -> dict:
    env = dict(os.environ)
    if worker_niceness is not None:  # Ray runs its workers at nice 15 unless told otherwise
        env["RAY_worker_niceness"] = str(worker_niceness)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_baseline(corpus: dict, batch_sizes: str, limit: int | None, config: Path, overrides: list[str], tag: str,
                 write_table: bool = False) -> dict:
    out = WORK / f"baseline_{tag}.json"
    cmd = [sys.executable, __file__, "--_baseline", "--data", corpus["path"], "--batch-sizes", batch_sizes,
           "--out", str(out), "--config", str(config)] + [a for o in overrides for a in ("--set", o)]
    if limit:
        cmd += ["--limit", str(limit)]
    if write_table:
        cmd += ["--write-table", str(WORK / f"baseline_{tag}_db" / "chunks.lance")]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, env=_env(), cwd=ROOT)
    res = json.loads(out.read_text())
    res["wall_s"] = time.perf_counter() - t
    return res


def _descendants(pid: int) -> list:
    import psutil

    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _rows_on_disk(store: Path) -> int:
    """Rows in the Lance data files written so far (committed or not)."""
    import lance.file

    return sum(lance.file.LanceFileReader(str(f)).metadata().num_rows for f in store.glob("*.lance/data/*.lance"))


def run_job(corpus: dict, config: Path, overrides: list[str], tag: str, worker_niceness: int | None = 0,
            max_seconds: float | None = None) -> dict:
    run_name = f"bench-{tag}-{int(time.time())}"
    store = WORK / f"lancedb_{run_name}"
    cmd = [sys.executable, str(ROOT / "jobs" / "embed.py"), "--config", str(config),
           "--set", f"input.uri={corpus['path']}", "--set", f"store.uri={store}",
           "--set", f"output.run_dir={WORK / 'runs'}", "--set", f"output.run_name={run_name}"]
    cmd += [a for o in overrides for a in ("--set", o)]
    log_path = WORK / f"{run_name}.log"
    t = time.perf_counter()
    stopped = False
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, env=_env(worker_niceness), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        sampler = TreeSampler(proc.pid)
        sampler.start()
        try:
            rc = proc.wait(timeout=max_seconds)
        except subprocess.TimeoutExpired:  # stop the job: SIGINT (the driver shuts Ray down), then kill
            stopped = True
            descendants = _descendants(proc.pid)
            proc.send_signal(signal.SIGINT)
            try:
                rc = proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                rc = proc.wait()
            for p in descendants:
                try:
                    p.kill()
                except Exception:
                    pass
    wall = time.perf_counter() - t
    sampler.stop()
    (WORK / f"{run_name}.mem.tsv").write_text("t_s\trss\tpss\tprocs\n" + "".join(
        f"{a}\t{b}\t{c}\t{d}\n" for a, b, c, d in sampler.samples))
    if stopped:
        return {"wall_s": wall, "manifest": None, "peak_rss": sampler.peak_rss, "peak_pss": sampler.peak_pss,
                "cmd": " ".join(cmd), "log": str(log_path), "store": str(store), "stopped_after_s": max_seconds,
                "rows_written": _rows_on_disk(store)}
    if rc != 0:
        raise SystemExit(f"job failed (rc={rc}); see {log_path}")
    manifest = json.loads((WORK / "runs" / run_name / "manifest.json").read_text())
    return {"wall_s": wall, "manifest": manifest, "peak_rss": sampler.peak_rss, "peak_pss": sampler.peak_pss,
            "cmd": " ".join(cmd), "log": str(log_path), "store": str(store)}


# --- report --------------------------------------------------------------------------------------

def _gib(b: int) -> str:
    return f"{b / 2**30:.2f} GiB"


def append_results(text: str) -> None:
    WORK.mkdir(parents=True, exist_ok=True)  # a copy, in case RESULTS.md is edited concurrently
    (WORK / f"embed_throughput_section_{int(time.time())}.md").write_text(text)
    append_section(text, echo=False)


def header(cmdline: str) -> str:
    return section_header(SECTION, cmdline).lstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--chunks", type=int, default=5000, help="chunks to embed (whole notes, >= this many)")
    p.add_argument("--batch-sizes", default="32,64,128", help="baseline sweep (first = ST's default)")
    p.add_argument("--sweep-chunks", type=int, default=1000, help="chunks per sweep run (0: all)")
    p.add_argument("--baseline-batch-size", type=int, default=None, help="skip the sweep, use this batch size")
    p.add_argument("--memory-only", action="store_true", help="only run the job and report its peak memory")
    p.add_argument("--max-seconds", type=float, default=None,
                   help="--memory-only: stop the job after this long and report the peak so far (partial run)")
    p.add_argument("--config", default=CONFIG, help="job config (input/store/output are overridden)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="job config override, e.g. --set embed.batch_size=256 (repeatable)")
    p.add_argument("--ray-worker-niceness", type=int, default=0,
                   help="RAY_worker_niceness for the job (Ray's default is 15; 0 puts the job's workers on the "
                        "baseline's footing when other processes load the machine; -1: leave Ray's default)")
    p.add_argument("--label", default="", help="free text added to the results section")
    p.add_argument("--no-append", action="store_true", help="do not append to bench/RESULTS.md")
    # internal: the baseline worker process
    p.add_argument("--_baseline", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--write-table", default=None, help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--limit", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._baseline:
        baseline_worker(args)
        return 0
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cmdline = "HF_HUB_OFFLINE=1 python bench/embed_throughput.py " + " ".join(argv if argv is not None else sys.argv[1:])
    config = Path(args.config)
    nice = None if args.ray_worker_niceness < 0 else args.ray_worker_niceness
    chunk_overrides = [o for o in args.overrides if o.startswith(("chunking.", "model."))]
    corpus = prepare_corpus(args.chunks, config, chunk_overrides)
    print(f"corpus: {corpus}", flush=True)
    tag = f"{corpus['chunks']}"
    N, T = corpus["chunks"], corpus["tokens"]

    if args.memory_only:
        job = run_job(corpus, config, args.overrides, f"mem{tag}", nice, args.max_seconds)
        m = job["manifest"]
        if m is None:  # stopped early: a partial run
            done, steady, what = job["rows_written"], None, f"stopped after {args.max_seconds:.0f}s (partial)"
        else:
            assert m["counts"]["chunks_written"] == N, (m["counts"], N)
            done, steady, what = N, m["throughput"].get("steady_chunks_per_s"), "complete"
        res = {"chunks": N, "tokens": T, "chunks_written": done, "run": what, "wall_s": job["wall_s"],
               "peak_rss": job["peak_rss"], "peak_pss": job["peak_pss"], "log": job["log"]}
        print(json.dumps(res, indent=2))
        if not args.no_append:
            append_results(header(cmdline) + (f"- note: {args.label}\n" if args.label else "") + (
                f"\n| job (b), memory run | corpus chunks | chunks written | run | wall s | steady chunks/s | "
                f"peak RSS (sum) | peak PSS (sum) |\n|---|---|---|---|---|---|---|---|\n"
                f"| embed.py | {N} | {done} | {what} | {job['wall_s']:.1f} | {steady} | "
                f"{_gib(job['peak_rss'])} | {_gib(job['peak_pss'])} |\n"))
        return 0

    # (a) baseline: sweep, then the best batch size end to end in a fresh process
    sweep = []
    if args.baseline_batch_size:
        best = args.baseline_batch_size
    else:
        s = run_baseline(corpus, args.batch_sizes, args.sweep_chunks or None, config, chunk_overrides, f"sweep{tag}")
        sweep = s["runs"]
        for r in sweep:
            print(f"sweep: batch_size={r['batch_size']}: {r['chunks'] / r['encode_s']:.1f} chunks/s", flush=True)
        best = max(sweep, key=lambda r: r["chunks"] / r["encode_s"])["batch_size"]
    base = run_baseline(corpus, str(best), None, config, chunk_overrides, f"full{tag}", write_table=True)
    br = base["runs"][0]
    assert br["chunks"] == N, (br["chunks"], N)
    # (a) stops after encode; (a+) also writes the table and builds the FTS index, as the job does (same process)
    a_plus = base["wall_s"]
    a_ss, a_e2e = br["encode_s"], a_plus - base["write_s"] - base["index_s"]
    print(f"(a) batch_size={best}: encode {a_ss:.1f}s, process {a_e2e:.1f}s", flush=True)

    # (b) the job
    job = run_job(corpus, config, args.overrides, f"tp{tag}", nice)
    m = job["manifest"]
    thr = m["throughput"]
    assert m["counts"]["chunks_written"] == N, (m["counts"], N)
    b_ss_cps, b_ss_tps = thr["steady_chunks_per_s"] or 0, thr["steady_tokens_per_s"] or 0
    b_e2e = job["wall_s"]
    a_ss_cps, a_ss_tps = N / a_ss, T / a_ss
    a_e_cps, a_e_tps = N / a_e2e, T / a_e2e
    b_e_cps, b_e_tps = N / b_e2e, T / b_e2e
    res = {"corpus": corpus, "sweep": sweep, "baseline": base, "job": {k: v for k, v in job.items() if k != "manifest"},
           "job_throughput": thr, "job_durations": m["durations_s"],
           "ratio_steady": (b_ss_cps or 0) / a_ss_cps, "ratio_e2e": b_e_cps / a_e_cps, "ratio_e2e_plus": a_plus / b_e2e}
    (WORK / f"result_{tag}_{int(time.time())}.json").write_text(json.dumps(res, indent=2, default=str))
    print(json.dumps({k: res[k] for k in ("ratio_steady", "ratio_e2e", "job_throughput", "job_durations")}, indent=2))

    d = m["durations_s"]
    lines = [header(cmdline)]
    if args.label:
        lines.append(f"- note: {args.label}\n")
    lines.append(f"- corpus: {corpus['docs']} notes ({N} chunks, {T} tokens by medembed's chunker, "
                 f"<= {corpus['max_tokens']} tokens/chunk); job overrides: {args.overrides or 'none'}; "
                 f"RAY_worker_niceness={nice if nice is not None else 'Ray default (15)'}\n")
    if sweep:
        lines.append("- baseline sweep (first {} chunks, one process): ".format(sweep[0]["chunks"]) + ", ".join(
            f"batch_size={r['batch_size']}: {r['chunks'] / r['encode_s']:.1f} chunks/s" for r in sweep)
            + f" -> baseline batch_size={best}\n")
    lines.append("\n| run | chunks | tokens | seconds | chunks/s | tokens/s | ratio b/a |\n|---|---|---|---|---|---|---|\n")
    lines.append(f"| (a) ST.encode bs={best}, steady (encode call) | {N} | {T} | {a_ss:.1f} | {a_ss_cps:.1f} | {a_ss_tps:.0f} | |\n")
    if thr["first_write_rows"] < N:
        lines.append(f"| (b) Ray job, steady (after 1st fragment, {thr['first_write_rows']} rows excluded) | "
                     f"{N - thr['first_write_rows']} | | {thr['steady_s']:.1f} | {b_ss_cps:.1f} | {b_ss_tps:.0f} | "
                     f"**{b_ss_cps / a_ss_cps:.2f}** |\n")
    else:
        lines.append(f"| (b) Ray job, steady | - | | | | | n/a: one commit ({m.get('execution', 'one block')}) |\n")
    lines.append(f"| (a) end to end (process: import, load, read, chunk, encode) | {N} | {T} | {a_e2e:.1f} | {a_e_cps:.1f} | "
                 f"{a_e_tps:.0f} | |\n")
    lines.append(f"| (a+) end to end, also writing the Lance table and its FTS index | {N} | {T} | {a_plus:.1f} | "
                 f"{N / a_plus:.1f} | {T / a_plus:.0f} | |\n")
    lines.append(f"| (b) end to end (process: Ray start ... indexes) | {N} | {T} | {b_e2e:.1f} | {b_e_cps:.1f} | "
                 f"{b_e_tps:.0f} | **{b_e_cps / a_e_cps:.2f}** vs (a), **{a_plus / b_e2e:.2f}** vs (a+) |\n")
    lines.append(f"\n(a) process: load {base['load_s']:.1f}s, read+chunk {base['chunk_s']:.1f}s, encode {a_ss:.1f}s; "
                 f"(a+) also write {base['write_s']:.1f}s, FTS index {base['index_s']:.1f}s. "
                 f"(b) manifest: pipeline {thr['pipeline_s']:.1f}s (first fragment at {thr['first_write_s']:.1f}s), "
                 f"indexes {d.get('indexes', 0):.1f}s, job {d.get('job', 0):.1f}s; peak memory of the job "
                 f"{_gib(job['peak_rss'])} RSS / {_gib(job['peak_pss'])} PSS (sum over driver + Ray processes).\n")
    if not args.no_append:
        append_results("".join(lines))
    print("".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
