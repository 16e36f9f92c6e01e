"""Nightly re-embedding at scale: a run with nothing changed and a run with 0.1% of documents changed, added and
deleted, through the real `reembed` job with the benchmark instrument encoder.

    MEDEMBED_ALLOW_INSTRUMENT=1 HF_HUB_OFFLINE=1 python bench/nightly_scale.py --chunks 1000000

In ONE process and ONE local Ray instance (Ray start paid once, excluded from every timing; with ``--per-process``
the build and each night run as their own ``medembed reembed`` process connected to that instance):
  1. corpora (``bench/corpus_gen.py``, reused when ``corpus.json`` matches): the base corpus of about ``--chunks``
     chunks of ``--max-tokens`` tokens, and its nightly version (``--changed``/``--added``/``--deleted`` of the
     documents, fractions of the base corpus);
  2. baselines, same run: (a) read + normalize + hash every document (the floor of a nightly run: what an
     unchanged document must cost); (b) read + normalize + chunk every document (what the previous change
     detection paid on every night before its diff: every document re-tokenized), unless ``--no-old-baseline``;
  3. build: `reembed` into an empty database (``model.name=instrument:hash``), every document embedded;
  4. ``--repeats`` runs with nothing changed (base corpus again);
  5. ``--repeats`` x 2 runs with changes, alternating nightly version -> base version (each switch changes,
     adds and deletes the same fraction), each followed by an exactness check of the SERVED table version:
     the corpus's document hashes joined with the table's again (``index.diff.diff_hashes``: every document
     once, all its chunks present with one hash, nothing stale, no extra document), and rows == chunks.
Times are the job's own wall time (``run_job`` as `medembed reembed` runs it: lease, read+hash, diff, embed,
commit, indexes, verify, switch, cleanup), with the manifest's per-phase split; the driver's peak RSS is
sampled (``/proc/self/status`` VmRSS, every 0.1 s) during each run.

Appends a section to bench/RESULTS.md (``--no-append`` to skip); ``--keep`` keeps bench/_work/nightly.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / "_work" / "nightly"
SECTION = "## nightly_scale"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from results_file import append_section, section_header  # noqa: E402 - bench/ is on sys.path (run as python bench/<name>.py)

PHASES = ("lease", "read_hash", "diff", "embed_stage", "commit", "indexes", "verify", "switch", "cleanup")


class RssPeak:
    """Peak resident memory of this process while the block runs (sampled)."""

    def __init__(self, every_s: float = 0.1):
        self.every_s, self.peak_kib, self._stop = every_s, 0, threading.Event()

    @staticmethod
    def now_kib() -> int:
        with open("/proc/self/status") as f:
            return next(int(ln.split()[1]) for ln in f if ln.startswith("VmRSS:"))

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_kib = max(self.peak_kib, self.now_kib())
            self._stop.wait(self.every_s)

    def __enter__(self) -> RssPeak:
        self.peak_kib = self.now_kib()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._t.join()
        self.peak_kib = max(self.peak_kib, self.now_kib())

    @property
    def mib(self) -> float:
        return self.peak_kib / 1024


LOCK: str | None = None  # --lock: a shared CPU lock file taken around each measured step, not the whole run


@contextlib.contextmanager
def cpu_lock():
    if LOCK is None:
        yield
        return
    with open(LOCK, "a") as f:
        t0 = time.perf_counter()
        fcntl.flock(f, fcntl.LOCK_EX)
        print(f"lock taken after {time.perf_counter() - t0:.0f} s", flush=True)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def corpus(out: Path, want: dict[str, Any]) -> dict[str, Any]:
    """Generate (or reuse) a corpus with corpus_gen."""
    import corpus_gen

    info_file = out / "corpus.json"
    if info_file.exists():
        info = json.loads(info_file.read_text())
        if info.get("bench_args") == want:
            print(f"reusing {out} ({info['docs']} documents)", flush=True)
            return info
    t0 = time.perf_counter()
    args = {k: v for k, v in want.items() if k != "base_docs"}
    if "base_docs" in want:
        args["docs"] = want["base_docs"]
    info = corpus_gen.generate(out, **args)
    info["bench_args"] = want
    info_file.write_text(json.dumps(info, indent=2))
    print(f"generated {out}: {info['docs']} documents in {time.perf_counter() - t0:.0f} s", flush=True)
    return info


def overrides(args: argparse.Namespace, corpus_dir: Path, run: str) -> list[str]:
    return [f"input.uri={corpus_dir}/part-*", f"store.uri={WORK / 'db'}", "store.corpus_name=nightly",
            f"output.run_dir={WORK / 'runs'}", f"output.run_name={run}", f"model.name=instrument:hash-{args.dim}",
            f"chunking.max_tokens={args.max_tokens}", f"chunking.overlap_tokens={args.overlap}",
            "sync.lease_ttl_s=120", *args.set]


def run_reembed(args: argparse.Namespace, corpus_dir: Path, run: str) -> dict[str, Any]:
    if PER_PROCESS:
        return run_reembed_process(args, corpus_dir, run)
    from medembed.app.registry import by_name
    from medembed.app.runner import run_job

    ns = argparse.Namespace(config=None, overrides=overrides(args, corpus_dir, run), print_config=False, verbose=False)
    with cpu_lock(), RssPeak() as rss:
        t0 = time.perf_counter()
        code = run_job(by_name("reembed"), ns)
        wall = time.perf_counter() - t0
    m = json.loads((WORK / "runs" / run / "manifest.json").read_text())
    if code != 0:
        raise RuntimeError(f"reembed run {run} exited {code}: {m.get('error')}")
    print(f"{run}: {wall:.1f} s, counts {m['counts']}", flush=True)
    return {"run": run, "wall_s": wall, "rss_mib": rss.mib, "manifest": m}


PER_PROCESS: dict[str, Any] = {}  # --per-process: {"address": the bench's Ray instance, "memray": folder or None}


def run_reembed_process(args: argparse.Namespace, corpus_dir: Path, run: str) -> dict[str, Any]:
    """One run as `medembed reembed` runs from cron: its own driver process, connected to the bench's Ray instance.

    The driver's peak RSS is the process's own (VmHWM, which the job writes to its manifest), so it holds
    only what one night holds: no build, no earlier night, no baseline, no bench state. With ``--memray DIR`` the
    driver runs under memray and its capture is written to ``DIR/<run>.bin`` (``memray flamegraph``/``stats``)."""
    cli = [sys.executable, "-m", "medembed.app.cli", "reembed"]
    cli += [x for o in overrides(args, corpus_dir, run) for x in ("--set", o)]
    if PER_PROCESS.get("memray"):
        out = Path(PER_PROCESS["memray"]) / f"{run}.bin"
        out.unlink(missing_ok=True)
        cli = [sys.executable, "-m", "memray", "run", "--quiet", "--native", "-o", str(out), *cli[1:]]
    env = {**os.environ, "RAY_ADDRESS": PER_PROCESS["address"], "MEDEMBED_ALLOW_INSTRUMENT": "1"}
    with cpu_lock():
        t0 = time.perf_counter()
        proc = subprocess.Popen(cli, env=env, cwd=ROOT)
        _, status, _ = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    mf = WORK / "runs" / run / "manifest.json"
    m = json.loads(mf.read_text()) if mf.exists() else {}
    if code != 0:  # a process that died before its manifest still says how it ended
        raise RuntimeError(f"reembed run {run} exited {code}: {m.get('error', f'no manifest at {mf}')}")
    # the driver's own peak (VmHWM, in its manifest): not wait4's ru_maxrss, which carries this bench process's
    # high-water mark into the child it started (medembed.runtime.memory.peak_rss_mib)
    rss_mib = m["driver_peak_rss_mib"]
    print(f"{run}: {wall:.1f} s, own process, peak RSS {rss_mib:.0f} MiB, counts {m['counts']}", flush=True)
    return {"run": run, "wall_s": wall, "rss_mib": rss_mib, "manifest": m}


def corpus_hashes(args: argparse.Namespace, corpus_dir: Path) -> tuple[Any, float, float]:
    """(materialized (doc_id, doc_hash, source) dataset, seconds, driver peak RSS MiB): baseline (a)."""
    from medembed.config import load_config
    from medembed.embedding.card import resolve_card
    from medembed.embedding.chunking import chunk_params
    from medembed.index.config import ReembedJobConfig
    from medembed.index.diff import hash_documents
    from medembed.ingest import plan_read

    cfg = load_config(ReembedJobConfig, None, overrides(args, corpus_dir, "baseline"))
    params = chunk_params(cfg, resolve_card(cfg.model))
    with cpu_lock(), RssPeak() as rss:
        t0 = time.perf_counter()
        ds = plan_read(cfg.input, str(WORK / "runs" / "baseline-q" / corpus_dir.name)).dataset().map_batches(
            hash_documents, batch_format="pyarrow", batch_size=None, num_cpus=cfg.chunking.num_cpus,
            fn_kwargs={"params": params}).materialize()
        n = ds.count()
        secs = time.perf_counter() - t0
    print(f"read+hash {corpus_dir.name}: {n} documents in {secs:.1f} s", flush=True)
    return ds, secs, rss.mib


def old_path_baseline(args: argparse.Namespace, corpus_dir: Path) -> tuple[int, int, float]:
    """Baseline (b): read + normalize + chunk every document, as the previous nightly did. (docs, chunks, s)."""
    import pyarrow as pa

    from medembed.config import load_config
    from medembed.embedding.card import resolve_card
    from medembed.embedding.chunking import chunk_batch, chunk_params
    from medembed.index.config import ReembedJobConfig
    from medembed.ingest import plan_read

    cfg = load_config(ReembedJobConfig, None, overrides(args, corpus_dir, "baseline"))
    params = chunk_params(cfg, resolve_card(cfg.model))

    def counted(batch: pa.Table) -> pa.Table:
        c = chunk_batch(batch, params)
        return pa.table({"docs": [batch.num_rows], "chunks": [c.num_rows]})

    docs = chunks = 0
    with cpu_lock():
        t0 = time.perf_counter()
        for b in plan_read(cfg.input, str(WORK / "runs" / "baseline-q-old")).dataset().map_batches(
                counted, batch_format="pyarrow", batch_size=cfg.chunking.batch_size,
                num_cpus=cfg.chunking.num_cpus).iter_batches(batch_format="pyarrow", batch_size=None):
            docs += sum(b["docs"].to_pylist())
            chunks += sum(b["chunks"].to_pylist())
        secs = time.perf_counter() - t0
    print(f"old path read+chunk: {docs} documents, {chunks} chunks in {secs:.1f} s", flush=True)
    return docs, chunks, secs


def exactness(hashes: Any, expected_docs: int) -> dict[str, Any]:
    """The served table version against the corpus: every document once, complete, current, nothing else."""
    from medembed.index import serving
    from medembed.index.diff import diff_hashes
    from medembed.index.tables import table_uri

    ptr = serving.read_pointer(str(WORK / "db"), "nightly")
    uri = table_uri(str(WORK / "db"), ptr.current.table)
    with cpu_lock():
        t0 = time.perf_counter()
        d = diff_hashes(hashes.to_arrow_refs(), uri, ptr.current.version)
    exact = d.counts == {"new": 0, "changed": 0, "unchanged": expected_docs, "deleted": 0}
    out = {"served": f"{ptr.current.table}@v{ptr.current.version}", "counts": d.counts, "rows": ptr.current.rows,
           "chunks_of_corpus": d.chunks_unchanged, "exact": exact and ptr.current.rows == d.chunks_unchanged,
           "check_s": round(time.perf_counter() - t0, 1)}
    if not out["exact"]:
        raise RuntimeError(f"the served table is not exact: {out}")
    return out


def phases(m: dict[str, Any]) -> str:
    d = m["durations_s"]
    return ", ".join(f"{p} {d[p]:.1f}" for p in PHASES if p in d)


def header(cmdline: str) -> str:
    return section_header(SECTION, cmdline).lstrip("\n")


def rng(xs: list[float], fmt: str = "{:.1f}") -> str:
    return fmt.format(min(xs)) if len(xs) == 1 else f"{fmt.format(min(xs))}-{fmt.format(max(xs))}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--chunks", type=int, default=100_000, help="base corpus size, in chunks of --max-tokens")
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--overlap", type=int, default=32)
    p.add_argument("--dim", type=int, default=384, help="instrument vector dimension")
    p.add_argument("--changed", type=float, default=0.001)
    p.add_argument("--added", type=float, default=0.001)
    p.add_argument("--deleted", type=float, default=0.001)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--shard-docs", type=int, default=20_000)
    p.add_argument("--no-old-baseline", action="store_true", help="skip baseline (b), the old path's read+chunk")
    p.add_argument("--set", action="append", default=[], help="extra job config overrides")
    p.add_argument("--keep", action="store_true", help="keep bench/_work/nightly (corpora are reused anyway)")
    p.add_argument("--per-process", action="store_true",
                   help="run the build and every night as its own `medembed reembed` process (as cron runs it), "
                   "connected to the bench's Ray instance; driver peak RSS is then that process's own (VmHWM, from its "
                        "manifest)")
    p.add_argument("--memray", metavar="DIR", help="with --per-process: run each driver under memray (pip install "
                   "memray), captures in DIR/<run>.bin; its times are then not comparable")
    p.add_argument("--no-append", action="store_true")
    p.add_argument("--lock", help="take this flock file around each measured step (a shared machine), not "
                   "around the whole run; run the script itself without flock then")
    args = p.parse_args(argv)
    global LOCK
    LOCK = args.lock
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if os.environ.get("MEDEMBED_ALLOW_INSTRUMENT") != "1":
        p.error("set MEDEMBED_ALLOW_INSTRUMENT=1 (the benchmark instrument encoder)")
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cmdline = "MEDEMBED_ALLOW_INSTRUMENT=1 python bench/nightly_scale.py " + " ".join(
        argv if argv is not None else sys.argv[1:])

    cdir = WORK / f"corpus-{args.chunks}"
    base_want = {"chunks": args.chunks, "max_tokens": args.max_tokens, "overlap": args.overlap, "seed": 0,
                 "shard_docs": args.shard_docs}
    with cpu_lock():
        base = corpus(cdir / "base", base_want)
    with cpu_lock():
        night = corpus(cdir / "night", {"base_docs": base["base_docs"], "seed": 0, "shard_docs": args.shard_docs,
                                        "delta_seed": 1, "changed": args.changed, "added": args.added,
                                        "deleted": args.deleted})
    for d in ("db", "runs"):
        shutil.rmtree(WORK / d, ignore_errors=True)

    from medembed.config import RayConfig
    from medembed.runtime.ray_setup import init_ray

    init_ray(RayConfig())
    if args.per_process:
        import ray

        PER_PROCESS.update(address=ray.get_runtime_context().gcs_address, memray=args.memray)
        if args.memray:
            Path(args.memray).mkdir(parents=True, exist_ok=True)
    elif args.memray:
        p.error("--memray needs --per-process")
    hashes_base, hash_s, hash_rss = corpus_hashes(args, cdir / "base")
    hashes_night, hash_s2, _ = corpus_hashes(args, cdir / "night")
    old = None if args.no_old_baseline else old_path_baseline(args, cdir / "base")

    build = run_reembed(args, cdir / "base", "build")
    n_chunks = build["manifest"]["counts"]["chunks_in_corpus"]
    checks = [exactness(hashes_base, base["docs"])]
    unchanged = [run_reembed(args, cdir / "base", f"unchanged-{r}") for r in range(args.repeats)]
    changed, exact = [], []
    for r in range(args.repeats):
        for name, cd, hashes, docs in (("night", cdir / "night", hashes_night, night["docs"]),
                                       ("back", cdir / "base", hashes_base, base["docs"])):
            changed.append(run_reembed(args, cd, f"changed-{name}-{r}"))
            exact.append(exactness(hashes, docs))
    checks += exact

    def c(res: dict[str, Any], k: str) -> int:
        return res["manifest"]["counts"][k]

    lines = [
        f"- corpus: `bench/corpus_gen.py` (real PMC-Patients sentences), {base['docs']:,} documents, "
        f"{n_chunks:,} chunks of <= {args.max_tokens} tokens (overlap {args.overlap}), {len(base['files'])} JSONL "
        f"shards; nightly version: {args.changed:.2%} changed, {args.added:.2%} added, {args.deleted:.2%} deleted "
        f"({night['delta']['changed']} / {night['delta']['added']} / {night['delta']['deleted']} documents)",
        f"- encoder: `instrument:hash-{args.dim}` (no model; chunking with the bundled MiniLM tokenizer); job "
        f"defaults otherwise ({', '.join(args.set) or 'no --set'}); one local Ray instance, started once; "
        + ("the build and each night in its own `medembed reembed` process connected to it (driver peak RSS = that "
           "process's own VmHWM)" if PER_PROCESS else "every run in the bench's process (driver peak RSS = this "
           "process's, sampled)") + (f"; drivers under memray ({args.memray})" if args.memray else ""),
        f"- baseline (a), read + normalize + hash every document (the floor for an unchanged night): "
        f"**{hash_s:.1f} s** (base), {hash_s2:.1f} s (nightly version); driver peak RSS {hash_rss:.0f} MiB",
    ]
    if old:
        lines.append(f"- baseline (b), read + normalize + chunk every document (what the previous change detection "
                     f"paid every night before its diff): **{old[2]:.1f} s** ({old[0]:,} documents, {old[1]:,} chunks)")
    lines += [
        f"- build (every document embedded, indexes): {build['wall_s']:.1f} s ({phases(build['manifest'])}); "
        f"driver peak RSS {build['rss_mib']:.0f} MiB",
        "",
        "| run | wall s | documents new / changed / deleted / unchanged | tokenized | chunks embedded / removed "
        "| driver peak RSS MiB | phases (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for res in unchanged + changed:
        lines.append(f"| {res['run']} | {res['wall_s']:.1f} | {c(res, 'documents_new')} / {c(res, 'documents_changed')} / "
                     f"{c(res, 'documents_deleted')} / {c(res, 'documents_unchanged')} | {c(res, 'documents_tokenized')} "
                     f"| {c(res, 'chunks_embedded')} / {c(res, 'chunks_removed')} | {res['rss_mib']:.0f} | "
                     f"{phases(res['manifest'])} |")
    lines += [
        "",
        f"- nothing changed: **{rng([r['wall_s'] for r in unchanged])} s** over {len(unchanged)} runs "
        f"(baseline (a) read+hash {hash_s:.1f} s" + (f", baseline (b) old read+chunk {old[2]:.1f} s)" if old else ")"),
        f"- {args.changed:.1%} changed + {args.added:.1%} added + {args.deleted:.1%} deleted: "
        f"**{rng([r['wall_s'] for r in changed])} s** over {len(changed)} runs",
        f"- driver peak RSS: build {build['rss_mib']:.0f} MiB, nothing changed {rng([r['rss_mib'] for r in unchanged], '{:.0f}')}"
        f" MiB, changes {rng([r['rss_mib'] for r in changed], '{:.0f}')} MiB",
        f"- exactness of the served version after the build and after every run with changes ({len(checks)} checks, "
        f"corpus hashes joined with the table again): all exact (every document once, complete, current; no "
        f"deleted document; rows == chunks); check time {rng([x['check_s'] for x in checks])} s",
    ]
    text = header(cmdline) + "\n\n" + "\n".join(lines) + "\n"
    sys.stdout.write(text)
    (WORK / f"results-{int(time.time())}.md").write_text(text)
    if not args.no_append:
        append_section(text, echo=False)
    if not args.keep:
        for d in ("db", "runs"):
            shutil.rmtree(WORK / d, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
