"""CPU training steps/s with and without ``train.cpu_keep_memory`` (glibc keeps freed memory), same process shape.

``--task encode`` measures the embedder instead (``embed.cpu_keep_memory``, the CPU model actors of the
embed, mining and evaluation jobs): the product's encoder on ``--docs`` passages of ``--max-length`` tokens,
``env`` against ``off``.

Each mode runs in its own child process (allocator settings last for the process), the modes in turn,
``--rounds`` times so load drift hits all alike:

* ``env``: the child starts with ``KEEP_MEMORY_ENV`` (how Ray Train's CPU workers start) and calls
  ``prepare_cpu_worker`` (``train.cpu_keep_memory=true``);
* ``mallopt``: the child only calls ``prepare_cpu_worker`` with ``train.cpu_keep_memory=true``;
* ``off``: ``train.cpu_keep_memory=false``, glibc's defaults.

With ``--in-thread`` the steps run in a second thread, as Ray Train runs its loop: there ``mallopt``
alone does not keep blocks over 64 MiB (the thread allocates from a secondary arena). The step is the product's ``train_step`` on the
bundled MiniLM: ``--batch-size`` queries x (positive + ``--negatives`` hard negatives), passages of
``--max-length`` tokens, bfloat16 autocast on CPU when ``--cpu-bf16``. Reports s/step, user and kernel
CPU seconds per step, and the peak resident memory of each child.

    HF_HUB_OFFLINE=1 python bench/cpu_keep_memory.py --max-length 256 --batch-size 32 --cpu-bf16 --in-thread
    HF_HUB_OFFLINE=1 python bench/cpu_keep_memory.py --task encode --modes env,off --max-length 512
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys

from results_file import append_section, header_lines

CHILD = r"""
import json, os, resource, sys, threading, time
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
losses, clock = [], {}
def loop():
    for s in range(tc.max_steps):
        if s == 1:
            clock["t0"], clock["c0"] = time.perf_counter(), os.times()
        losses.append(train_step(enc, st, loss_fn, opt, sched, Q, P, N, {"query": "", "document": ""}, tc,
                                 torch.device("cpu")))
if a["in_thread"]:
    th = threading.Thread(target=loop)
    th.start()
    th.join()
else:
    loop()
t0, c0 = clock["t0"], clock["c0"]
t1, c1 = time.perf_counter(), os.times()
k = tc.max_steps - 1
print(json.dumps({"kept": kept, "s_per_step": (t1 - t0) / k, "user_s": (c1.user - c0.user) / k,
                  "sys_s": (c1.system - c0.system) / k, "max_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                  "mean_loss": sum(losses[1:]) / k}))
"""

ENCODE_CHILD = r"""
import json, resource, sys, time
from medembed.config import EmbedConfig, ModelConfig
from medembed.embedding.encoders import build_encoder
from medembed.runtime.memory import keep_freed_memory, kept_from_start
from medembed.runtime.storage import DEFAULT_STORAGE
a = json.loads(sys.argv[1])
kept = keep_freed_memory() if a["mode"] == "mallopt" else kept_from_start()
enc = build_encoder(ModelConfig(), EmbedConfig(torch_threads=a["threads"]), DEFAULT_STORAGE)
enc.st.max_seq_length = a["max_length"]
notes = [json.loads(line)["text"] for line in open(a["sample"], encoding="utf-8") if line.startswith("{")]
# eight consecutive sample notes from a different start each (at least 791 tokens): every passage fills max_length
texts = [" ".join(notes[(i + j) % len(notes)] for j in range(8)) for i in range(a["docs"])]
enc.encode_documents(texts[:32])  # warm-up, untimed
r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
enc.encode_documents(texts)
t1, r1 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"kept": kept, "s": t1 - t0, "docs_per_s": a["docs"] / (t1 - t0), "user_s": r1.ru_utime - r0.ru_utime,
                  "sys_s": r1.ru_stime - r0.ru_stime, "page_faults": r1.ru_minflt - r0.ru_minflt,
                  "max_rss_gib": r1.ru_maxrss / 2**20}))
"""


def run(args: argparse.Namespace, mode: str) -> dict:
    from pathlib import Path

    from medembed.runtime.memory import KEEP_MEMORY_ENV

    env = {k: v for k, v in os.environ.items() if k not in KEEP_MEMORY_ENV}
    if mode == "env":
        env.update(KEEP_MEMORY_ENV)
    sample = Path(__file__).resolve().parents[1] / "medembed" / "data" / "sample_notes.jsonl"
    spec = {"batch_size": args.batch_size, "negatives": args.negatives, "max_length": args.max_length,
            "steps": args.steps, "threads": args.threads, "cpu_bf16": args.cpu_bf16, "keep": mode != "off",
            "in_thread": args.in_thread, "sample": str(sample), "docs": args.docs, "mode": mode}
    child = ENCODE_CHILD if args.task == "encode" else CHILD
    out = subprocess.run([sys.executable, "-c", child, json.dumps(spec)], capture_output=True, text=True, check=True,
                         env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", choices=["train", "encode"], default="train",
                    help="train: training steps (train.cpu_keep_memory); encode: the embedder (embed.cpu_keep_memory)")
    ap.add_argument("--docs", type=int, default=600, help="--task encode: passages encoded per run")
    ap.add_argument("--steps", type=int, default=5, help="timed steps per run (after one untimed)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--negatives", type=int, default=1)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cpu-bf16", action="store_true")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--modes", default="env,mallopt,off", help="comma-separated: env, mallopt, off")
    ap.add_argument("--in-thread", action="store_true", help="run the steps in a second thread (as Ray Train does)")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    modes = args.modes.split(",")
    rows = []
    for r in range(args.rounds):
        for mode in modes:
            res = run(args, mode)
            rows.append((r, mode, res))
            print(f"round {r} {mode}: {res}", flush=True)
    if args.task == "encode":
        append_section(encode_section(args, modes, rows))
        return 0
    mean = {m: sum(x["s_per_step"] for _, mm, x in rows if mm == m) / args.rounds for m in modes}
    lines = _header(args, "cpu_keep_memory") + [
             f"- step: bundled MiniLM, {args.batch_size} queries x (positive + {args.negatives} negative(s)), passages "
             f"of {args.max_length} tokens, {args.threads} torch threads"
             + (", bfloat16 autocast" if args.cpu_bf16 else ", float32")
             + (", steps in a second thread" if args.in_thread else ", steps on the main thread")
             + f"; {args.steps} timed steps per run",
             "", "| round | mode | s/step | user s/step | kernel s/step | peak RSS GiB | mean loss |",
             "|---|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r} | {m} | {x['s_per_step']:.2f} | {x['user_s']:.2f} | {x['sys_s']:.2f} | "
              f"{x['max_rss_gib']:.2f} | {x['mean_loss']:.4f} |" for r, m, x in rows]
    append_section(lines + _means(mean, "s/step", "steps/s"))
    return 0


def _header(args: argparse.Namespace, title: str) -> list[str]:
    return header_lines(title, f"HF_HUB_OFFLINE=1 python bench/cpu_keep_memory.py {shlex.join(sys.argv[1:])}")


def _means(mean: dict[str, float], unit: str, rate: str) -> list[str]:
    """The closing line: each mode's mean, and its speed as a multiple of ``off`` (the baseline in the same run)."""
    base = mean.get("off")
    return ["", f"Mean {unit}: " + ", ".join(
        f"{m} {v:.2f}" + (f" (**{base / v:.2f}x** the {rate} of off)" if base and m != "off" else "")
        for m, v in mean.items()) + ".", ""]


def encode_section(args: argparse.Namespace, modes: list[str], rows: list) -> list[str]:
    mean = {m: sum(x["s"] for _, mm, x in rows if mm == m) / args.rounds for m in modes}
    lines = _header(args, "cpu_keep_memory (encode)") + [
        f"- work: the product's encoder (bundled MiniLM, {args.threads} torch threads, CPU token budget) on "
        f"{args.docs} passages of {args.max_length} tokens; env = how CPU model actors start with "
        "embed.cpu_keep_memory=true, off = glibc's defaults",
        "", "| round | mode | s | docs/s | user s | kernel s | page faults | peak RSS GiB |",
        "|---|---|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r} | {m} | {x['s']:.2f} | {x['docs_per_s']:.1f} | {x['user_s']:.2f} | {x['sys_s']:.2f} | "
              f"{x['page_faults']:,} | {x['max_rss_gib']:.2f} |" for r, m, x in rows]
    return lines + _means(mean, "s", "docs/s")


if __name__ == "__main__":
    raise SystemExit(main())
