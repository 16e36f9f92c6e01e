"""Throughput of synthetic pair generation against a loopback OpenAI-compatible server.

    python bench/generate_pairs_throughput.py [--notes 1000 --big 4000 --latency 0.2 --actors 4 --inflight 16]

The server (tests/fakes/openai_server.py) answers every request after ``--latency`` seconds.
Compared: medembed's Ray Data job (``generate_pairs_from_docs``, timed from submission to the last
pair written, on an already started local Ray instance) and a sequential client loop (the same
backend, one request at a time, on 100 notes, scaled x(notes/100)). Appends to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import ray  # noqa: E402

from medembed.synth.backends import Request, create_backend  # noqa: E402
from medembed.synth.config import SynthConfig  # noqa: E402
from medembed.synth.pipeline import generate_pairs_from_docs  # noqa: E402
from tests.fakes.openai_server import FakeOpenAIServer  # noqa: E402

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
                      actor_num_cpus=0.25, openai={"base_url": url, "model": "fake-llm", "timeout_s": 30,
                                                   "max_concurrency": args.inflight, "max_retries": 2})
    t = time.perf_counter()
    summary = generate_pairs_from_docs(ray.data.from_items(docs), cfg)
    return time.perf_counter() - t, summary


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
    ap.add_argument("--actors", type=int, default=4)
    ap.add_argument("--inflight", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seq-notes", type=int, default=100)
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
            run_job(srv.url, synthetic_notes(40), args, os.path.join(work, "warmup"))  # worker processes warm
            seq = run_sequential(srv.url, synthetic_notes(args.seq_notes))
            seq_scaled = seq * args.notes / args.seq_notes
            job, s1 = run_job(srv.url, synthetic_notes(args.notes), args, os.path.join(work, "small"))
            big, s2 = run_job(srv.url, synthetic_notes(args.big), args, os.path.join(work, "big"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
        ray.shutdown()
    assert s1["notes_ok"] == args.notes and s2["notes_ok"] == args.big, (s1, s2)
    ratio = seq_scaled / job
    lines = [
        f"- {date.today().isoformat()}, 2-core CPU, `python bench/generate_pairs_throughput.py --notes {args.notes} "
        f"--big {args.big} --latency {args.latency} --actors {args.actors} --inflight {args.inflight} "
        f"--batch-size {args.batch_size}`",
        f"  - sequential client: {seq:.1f} s for {args.seq_notes} notes -> {seq_scaled:.1f} s scaled to {args.notes}",
        f"  - medembed job ({args.actors} actors x {args.inflight} in flight): {job:.1f} s for {args.notes} notes "
        f"({args.notes / job:.0f} notes/s, {s1['pairs_out']} pairs) -> **{ratio:.1f}x** the sequential loop",
        f"  - scaling: {args.big} notes in {big:.1f} s ({args.big / big:.0f} notes/s); "
        f"{args.big / args.notes:.0f}x the notes took {big / job:.2f}x the time",
    ]
    log.info("\n".join(lines))
    if not args.no_record:
        res = ROOT / "bench" / "RESULTS.md"
        text = res.read_text(encoding="utf-8") if res.exists() else "# Benchmark results\n"
        if "## generate_pairs_throughput" not in text:
            text = text.rstrip("\n") + "\n\n## generate_pairs_throughput\n\n"
            res.write_text(text, encoding="utf-8")
        # append under our section (sections of other benchmarks are left alone)
        head, _, tail = text.partition("## generate_pairs_throughput\n")
        nxt = tail.find("\n## ")
        body, rest = (tail, "") if nxt < 0 else (tail[:nxt + 1], tail[nxt + 1:])
        body = body.rstrip("\n") + "\n" + "\n".join(lines) + "\n"
        res.write_text(head + "## generate_pairs_throughput\n" + body + ("\n" + rest if rest else ""), encoding="utf-8")


if __name__ == "__main__":
    main()
