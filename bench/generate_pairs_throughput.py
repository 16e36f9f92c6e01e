"""Throughput of synthetic pair generation against a loopback OpenAI-compatible server.

    python bench/generate_pairs_throughput.py [--notes 1000 --big 4000 --latency 0.2 --actors 1 \
        --inflight 256 --batch-size 64 --batches-per-actor 8 --repeat 3]

The server (tests/support/openai_server.py, a ThreadingHTTPServer running in this driver process)
answers every request after ``--latency`` seconds. Compared:

- medembed's job: ``generate_pairs_from_docs(ray.data.from_items(docs), cfg, run_id=...)`` on a local Ray
  instance started (and warmed with one 40-note job) beforehand. Timed region: from just before
  ``ray.data.from_items`` to its return, i.e. the ledger read (skip done notes), Ray Data planning,
  the generator actors' start-up (new actors every job), all requests, validation, the driver's
  Parquet writes of pairs and ledger, and the ``_SUCCESS.json`` marker. Nothing the job does is
  left out. The ``durations_s`` of the run's summary split it: ``first_result`` (job start to the
  first result block: mostly actor start-up), ``write`` (driver time writing Parquet).
- a sequential client loop (the original script's shape): the same backend's ``complete``, one
  request at a time, on ``--seq-notes`` notes, scaled x(notes/seq-notes).

``--fixed-notes`` also times a tiny job (the fixed cost). ``--repeat`` runs each job size that many
times and reports the median (all runs are listed). Appends a ``## generate_pairs_throughput`` section
to bench/RESULTS.md (bench/results_file.py; ``--no-record`` to skip).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import ray  # noqa: E402
from results_file import append_section, header_lines  # noqa: E402 - bench/ is on sys.path

from medembed.runtime.artifacts import new_run_id  # noqa: E402
from medembed.synth.backends import Request, create_backend  # noqa: E402
from medembed.synth.config import SynthConfig  # noqa: E402
from medembed.synth.generate import generate_pairs_from_docs  # noqa: E402
from tests.support.openai_server import FakeOpenAIServer  # noqa: E402

log = logging.getLogger("medembed.synth.bench")

FINDINGS = ["dyspnea and bilateral infiltrates", "acute kidney injury", "new-onset atrial fibrillation",
            "right lower quadrant pain", "a 4 cm hepatic lesion", "status epilepticus", "diabetic ketoacidosis"]
TREATMENTS = ["intravenous ceftriaxone", "emergency appendectomy", "amiodarone", "insulin infusion",
              "levetiracetam", "percutaneous drainage", "hemodialysis"]


def synthetic_notes(n: int) -> list[dict]:
    docs = []
    for i in range(n):
        f, t = FINDINGS[i % len(FINDINGS)], TREATMENTS[(i * 3) % len(TREATMENTS)]
        text = (f"A {20 + i % 70}-year-old patient (case {i}) presented with {f}. Laboratory tests showed a "
                f"CRP of {i % 200} mg/L. The patient was treated with {t}. Imaging on day {i % 9 + 1} showed "
                f"improvement. At follow-up after {i % 11 + 1} weeks the patient was well.")
        docs.append({"doc_id": f"bench-{i:05d}", "title": f"Case {i}: {f}", "text": text, "metadata": "{}",
                     "source": "bench"})
    return docs


def run_job(url: str, docs: list[dict], args: argparse.Namespace, out: str) -> tuple[float, dict]:
    cfg = SynthConfig(backend="openai", output_dir=out, concurrency=args.actors, batch_size=args.batch_size,
                      batches_per_actor=args.batches_per_actor, actor_num_cpus=0.25,
                      openai={"base_url": url, "model": "fake-llm", "timeout_s": 30,
                              "max_concurrency": args.inflight, "max_retries": 2})
    t = time.perf_counter()  # timed: from submission (the Dataset is built inside) to the last pair written
    summary = generate_pairs_from_docs(ray.data.from_items(docs), cfg, run_id=new_run_id("generate_pairs"))
    took = time.perf_counter() - t
    assert summary["notes_ok"] == len(docs), summary
    log.info("%d notes: %.2f s %s", len(docs), took, summary["durations_s"])
    return took, summary


def timed_runs(url: str, n: int, args: argparse.Namespace, work: str) -> tuple[float, list[float], dict]:
    runs = [run_job(url, synthetic_notes(n), args, os.path.join(work, f"n{n}-{i}")) for i in range(args.repeat)]
    times = [t for t, _ in runs]
    med = statistics.median(times)
    summary = min(runs, key=lambda r: abs(r[0] - med))[1]
    return med, times, summary


def _fmt(times: list[float]) -> str:
    return ", ".join(f"{t:.1f}" for t in times)


def run_sequential(url: str, docs: list[dict]) -> float:
    cfg = SynthConfig(backend="openai", openai={"base_url": url, "model": "fake-llm", "timeout_s": 30,
                                                "max_concurrency": 1})
    backend = create_backend(cfg)
    t = time.perf_counter()
    for d in docs:
        backend.complete(Request(d["doc_id"], 0, 1, d["title"], d["text"]))
    took = time.perf_counter() - t
    backend.close()
    return took


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--notes", type=int, default=1000)
    ap.add_argument("--big", type=int, default=4000)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--actors", type=int, default=1)
    ap.add_argument("--inflight", type=int, default=256, help="synth.openai.max_concurrency (per actor)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--batches-per-actor", type=int, default=8)
    ap.add_argument("--seq-notes", type=int, default=100)
    ap.add_argument("--fixed-notes", type=int, default=10, help="also time a job this small (0: skip)")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    os.environ.pop("OPENAI_API_KEY", None)
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
    ray.data.DataContext.get_current().enable_progress_bars = False
    work = tempfile.mkdtemp(prefix="synth-bench-")
    try:
        with FakeOpenAIServer(latency_s=args.latency) as srv:
            run_job(srv.url, synthetic_notes(40), args, os.path.join(work, "warmup"))  # the instance's workers warm
            seq = run_sequential(srv.url, synthetic_notes(args.seq_notes))
            seq_scaled = seq * args.notes / args.seq_notes
            fixed = timed_runs(srv.url, args.fixed_notes, args, work) if args.fixed_notes else None
            job, job_all, s1 = timed_runs(srv.url, args.notes, args, work)
            big, big_all, s2 = timed_runs(srv.url, args.big, args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        ray.shutdown()
    ratio = seq_scaled / job
    cmd = (f"python bench/generate_pairs_throughput.py --notes {args.notes} --big {args.big} --latency {args.latency} "
           f"--actors {args.actors} --inflight {args.inflight} --batch-size {args.batch_size} "
           f"--batches-per-actor {args.batches_per_actor} --seq-notes {args.seq_notes} "
           f"--fixed-notes {args.fixed_notes} --repeat {args.repeat}")
    d1, d2 = s1["durations_s"], s2["durations_s"]
    lines = [
        *header_lines("generate_pairs_throughput", cmd),
        f"- settings: synth.backend=openai, synth.concurrency={args.actors} actor(s) x "
        f"synth.openai.max_concurrency={args.inflight} requests in flight, synth.batch_size={args.batch_size}, "
        f"synth.batches_per_actor={args.batches_per_actor}, actor_num_cpus=0.25; server latency {args.latency} s",
        f"- sequential client: {seq:.1f} s for {args.seq_notes} notes -> {seq_scaled:.1f} s scaled to {args.notes}",
        f"- medembed job: {job:.1f} s for {args.notes} notes (median of [{_fmt(job_all)}] s; "
        f"{args.notes / job:.0f} notes/s, {s1['pairs_out']} pairs) -> **{ratio:.1f}x** the sequential loop",
        f"- scaling: {args.big} notes in {big:.1f} s (median of [{_fmt(big_all)}] s; {args.big / big:.0f} notes/s); "
        f"{args.big / args.notes:.0f}x the notes took {big / job:.2f}x the time; marginal "
        f"{(args.big - args.notes) / max(big - job, 1e-9):.0f} notes/s",
        f"- breakdown ({args.notes} / {args.big} notes): job start -> first result block (actor start-up, "
        f"planning, first wave) {d1['first_result']:.1f} / {d2['first_result']:.1f} s; driver Parquet writes "
        f"{d1['write']:.2f} / {d2['write']:.2f} s (overlapping generation)"
        + (f"; a {args.fixed_notes}-note job (fixed cost) {fixed[0]:.1f} s (median of [{_fmt(fixed[1])}] s)"
           if fixed else ""),
    ]
    log.info("\n".join(lines))
    if not args.no_record:
        append_section(lines, echo=False)


if __name__ == "__main__":
    main()
