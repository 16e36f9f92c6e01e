"""CPU training steps/s with and without ``train.cpu_keep_memory`` (glibc keeps freed memory), same process shape.

Each mode runs in its own child process (mallopt settings last for the process), alternating
keep / default twice so load drift hits both alike. The step is the product's ``train_step`` on the
bundled MiniLM: ``--batch-size`` queries x (positive + ``--negatives`` hard negatives), passages of
``--max-length`` tokens, bfloat16 autocast on CPU when ``--cpu-bf16``. Reports s/step, user and kernel
CPU seconds per step, and the peak resident memory of each child.

    HF_HUB_OFFLINE=1 python bench/cpu_keep_memory.py --max-length 256 --batch-size 32 --cpu-bf16
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
from datetime import datetime, timezone

from results_file import append_section

CHILD = r"""
import json, os, resource, sys, time
import torch
from medembed.config import ModelConfig
from medembed.embedding.card import resolve_card
from medembed.training.config import TrainConfig
from medembed.training.loop import seed_everything
from medembed.training.loss import DualEncoder, build_loss
from medembed.training.schedule import build_optimizer
from medembed.training.step import prepare_cpu_worker, train_step
from sentence_transformers import SentenceTransformer
a = json.loads(sys.argv[1])
tc = TrainConfig(batch_size=a["batch_size"], num_negatives=a["negatives"], passage_max_length=a["max_length"],
                 max_steps=a["steps"] + 1, cpus_per_worker=a["threads"], cpu_bf16=a["cpu_bf16"],
                 cpu_keep_memory=a["keep"], distill_weight=0)
kept = prepare_cpu_worker(tc)
seed_everything(tc.seed)
st = SentenceTransformer(resolve_card(ModelConfig()).path, device="cpu")
st.max_seq_length = tc.passage_max_length
opt, sched = build_optimizer(st, 1e-5, tc.weight_decay, tc.max_steps, tc.warmup_ratio, tc.min_lr_ratio)
enc, loss_fn = DualEncoder(st), build_loss(st, tc.temperature, False)
enc.train()
# Sample notes as passages, repeated to the full length: every passage fills max_length tokens.
notes = [json.loads(line)["text"] for line in open(a["sample"], encoding="utf-8") if line.startswith("{")]
doc = lambda i: " ".join([notes[i % len(notes)]] * 8)
b, n = a["batch_size"], a["negatives"]
Q = [notes[i % len(notes)].split(".")[0] for i in range(b)]
P = [doc(i) for i in range(b)]
N = [[doc(i + 1 + j) for j in range(n)] for i in range(b)]
losses = []
for s in range(tc.max_steps):
    if s == 1:
        t0, c0 = time.perf_counter(), os.times()
    losses.append(train_step(enc, st, loss_fn, opt, sched, Q, P, N, {"query": "", "document": ""}, tc,
                             torch.device("cpu")))
t1, c1 = time.perf_counter(), os.times()
k = tc.max_steps - 1
print(json.dumps({"kept": kept, "s_per_step": (t1 - t0) / k, "user_s": (c1.user - c0.user) / k,
                  "sys_s": (c1.system - c0.system) / k, "max_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                  "mean_loss": sum(losses[1:]) / k}))
"""


def run(args: argparse.Namespace, keep: bool) -> dict:
    from pathlib import Path

    sample = Path(__file__).resolve().parents[1] / "medembed" / "data" / "sample_notes.jsonl"
    spec = {"batch_size": args.batch_size, "negatives": args.negatives, "max_length": args.max_length,
            "steps": args.steps, "threads": args.threads, "cpu_bf16": args.cpu_bf16, "keep": keep,
            "sample": str(sample)}
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(spec)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=5, help="timed steps per run (after one untimed)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--negatives", type=int, default=1)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cpu-bf16", action="store_true")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    rows = []
    for r in range(args.rounds):
        for keep in (True, False):
            res = run(args, keep)
            rows.append((r, keep, res))
            print(f"round {r} keep={keep}: {res}", flush=True)
    mean = {k: sum(x["s_per_step"] for _, kk, x in rows if kk == k) / args.rounds for k in (True, False)}
    load = os.getloadavg()
    lines = ["", "## cpu_keep_memory", "",
             f"- date: {datetime.now(timezone.utc).isoformat(timespec='seconds')}; {os.cpu_count()}-core CPU "
             f"({platform.processor() or platform.machine()}), no GPU; load average at the end "
             f"{load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}",
             f"- command: `HF_HUB_OFFLINE=1 python bench/cpu_keep_memory.py {shlex.join(sys.argv[1:])}`",
             f"- step: bundled MiniLM, {args.batch_size} queries x (positive + {args.negatives} negative(s)), passages "
             f"of {args.max_length} tokens, {args.threads} torch threads"
             + (", bfloat16 autocast" if args.cpu_bf16 else ", float32") + f"; {args.steps} timed steps per run",
             "", "| round | train.cpu_keep_memory | s/step | user s/step | kernel s/step | peak RSS GiB | mean loss |",
             "|---|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r} | {'on' if k else 'off'} | {x['s_per_step']:.2f} | {x['user_s']:.2f} | {x['sys_s']:.2f} | "
              f"{x['max_rss_gib']:.2f} | {x['mean_loss']:.4f} |" for r, k, x in rows]
    lines += ["", f"Mean s/step: on {mean[True]:.2f}, off {mean[False]:.2f}: **{mean[False] / mean[True]:.2f}x** the "
              "steps/s with freed memory kept.", ""]
    append_section(lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
