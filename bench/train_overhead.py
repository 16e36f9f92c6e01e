"""Ray Train overhead: steps/s of a 1-worker Ray Train run vs a plain single-process loop, same data/model/loss.

    HF_HUB_OFFLINE=1 python bench/train_overhead.py --steps 40 --batch-size 8 --threads 1

Data: inverse-cloze triplets (sentence -> next two sentences; hard negatives = positives of other
notes) from the bundled synthetic sample notes, batched by medembed's own batch plan (world size 1).
Model: the bundled all-MiniLM-L6-v2. Both sides run ``medembed.training.step.train_step`` (same
tokenization, DualEncoder, MultipleNegativesRankingLoss at temperature 0.02, AdamW + warmup/cosine,
clipping) with the same seed and the same torch thread count (--threads; the Ray worker reserves
that many CPUs).

(a) plain: this process, no Ray: model load, then the loop; steps/s = steps / loop time; run before and
    after (b) and averaged, so load drift on a shared machine hits both sides alike.
(b) Ray Train: ``medembed.training.trainer.fit`` on a local Ray instance (127.0.0.2), 1 worker, one
    checkpoint at the end; steps/s = the worker's own steps / loop time (``attempt_steps_per_s``,
    measured like (a)); end-to-end = ``fit()`` wall time (worker group start, model load, data from
    the object store, checkpoint).
overhead = 1 - (b) / (a), target <= 15%. Appends a section to bench/RESULTS.md (``--no-append`` to skip).
--cpu-bf16: (a) and (b) run under bfloat16 autocast (``train.cpu_bf16``), and (c) a plain float32 loop on the
same plan gives the bf16 speed-up and the loss difference.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pyarrow as pa  # noqa: E402
from results_file import append_section, header_lines  # noqa: E402 - bench/ is on sys.path (python bench/<name>.py)

from medembed.mining import columns as M  # noqa: E402
from tests.support.triplets import sample_triplets_table  # noqa: E402

log = logging.getLogger("bench.train_overhead")
SAMPLE = REPO / "medembed" / "data" / "sample_notes.jsonl"
WORK = REPO / "bench" / "_work" / "train_overhead"


def plain_loop(table: pa.Table, plan: list[list[int]], tc, card) -> dict:
    import torch
    from sentence_transformers import SentenceTransformer

    from medembed.training.loop import seed_everything
    from medembed.training.loss import DualEncoder, build_loss
    from medembed.training.schedule import build_optimizer
    from medembed.training.step import prepare_cpu_worker, train_step

    prepare_cpu_worker(tc)
    t_load = time.perf_counter()
    seed_everything(tc.seed)
    st = SentenceTransformer(card.path, device="cpu")
    st.max_seq_length = max(tc.query_max_length, tc.passage_max_length)
    model = DualEncoder(st)
    opt, sched = build_optimizer(st, tc.learning_rate, tc.weight_decay, len(plan), tc.warmup_ratio, tc.min_lr_ratio)
    loss_fn = build_loss(st, tc.temperature, False)
    model.train()
    q, p, n = (table[c].to_pylist() for c in (M.QUERY, M.POSITIVE, M.NEGATIVES))
    prompts = {"query": card.prompts.query, "document": card.prompts.document}
    device = torch.device("cpu")
    losses = []
    t0 = time.perf_counter()
    for rows in plan:
        losses.append(train_step(model, st, loss_fn, opt, sched, [q[i] for i in rows], [p[i] for i in rows],
                                 [n[i] for i in rows], prompts, tc, device))
    loop_s = time.perf_counter() - t0
    return {"steps": len(plan), "loop_s": loop_s, "steps_per_s": len(plan) / loop_s,
            "total_s": time.perf_counter() - t_load, "first_loss": losses[0], "mean_loss": sum(losses) / len(losses)}


def ray_loop(table: pa.Table, tc, card) -> dict:
    import shutil

    from medembed.config import RayConfig
    from medembed.runtime.ray_setup import init_ray
    from medembed.training.trainer import fit

    init_ray(RayConfig(num_cpus=max(2, int(tc.cpus_per_worker))), ray_train=True)
    out = WORK / "ray"
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    res = fit(table, tc, card, str(out), "bench")
    wall = time.perf_counter() - t0
    m = res.metrics
    return {"steps": m["step"], "steps_per_s": m["attempt_steps_per_s"], "fit_wall_s": wall,
            "first_loss": m["first_loss"], "mean_loss": m["loss"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--num-negatives", type=int, default=3)
    ap.add_argument("--max-length", type=int, default=64, help="query and passage max tokens")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (plain) = CPUs of the Ray worker")
    ap.add_argument("--cpu-bf16", action="store_true", help="train.cpu_bf16 on both sides, plus a float32 plain "
                    "loop for the speed-up")
    ap.add_argument("--no-append", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    from medembed.config import ModelConfig
    from medembed.embedding.card import resolve_card
    from medembed.training.config import TrainConfig
    from medembed.training.trainer import make_plan

    tc = TrainConfig(num_workers=1, cpus_per_worker=args.threads, batch_size=args.batch_size,
                     num_negatives=args.num_negatives, query_max_length=args.max_length,
                     passage_max_length=args.max_length, max_steps=args.steps, checkpoint_every=args.steps,
                     epochs=max(1, args.steps * args.batch_size // 380 + 1), max_failures=0, log_every=10,
                     cpu_bf16=args.cpu_bf16)
    card = resolve_card(ModelConfig())
    table = sample_triplets_table(None, per_note=2, num_negatives=args.num_negatives)
    plan = make_plan(table, tc)
    log.info("%d triplets, %d steps of %d rows", table.num_rows, len(plan.batches), args.batch_size)

    plain = plain_loop(table, plan.batches, tc, card)
    log.info("plain: %s", plain)
    ray_r = ray_loop(table, tc, card)
    log.info("ray train: %s", ray_r)
    again = plain_loop(table, plan.batches, tc, card)  # before and after: load drift on a shared machine
    log.info("plain again: %s", again)
    plain["runs_steps_per_s"] = [round(plain["steps_per_s"], 4), round(again["steps_per_s"], 4)]
    plain["steps_per_s"] = (plain["steps_per_s"] + again["steps_per_s"]) / 2
    overhead = 1 - ray_r["steps_per_s"] / plain["steps_per_s"]
    log.info("overhead %.1f%% (target <= 15%%)", 100 * overhead)
    fp32 = plain_loop(table, plan.batches, tc.model_copy(update={"cpu_bf16": False}), card) if args.cpu_bf16 else None
    if fp32:
        log.info("plain float32: %s; bf16 speed-up %.2fx", fp32, plain["steps_per_s"] / fp32["steps_per_s"])
    if not args.no_append:
        append(args, plain, ray_r, overhead, fp32)
    return 0


def append(args, plain: dict, ray_r: dict, overhead: float, fp32: dict | None) -> None:
    text = "\n".join([
        *header_lines("train_overhead", f"HF_HUB_OFFLINE=1 python bench/train_overhead.py {shlex.join(sys.argv[1:])}"),
        f"- setup: bundled all-MiniLM-L6-v2, {args.steps} steps of {args.batch_size} queries x "
        f"(1 positive + {args.num_negatives} hard negatives), {args.max_length} tokens, {args.threads} torch "
        "thread(s) each side, same batch plan, seed and train_step"
        + (", bfloat16 autocast on CPU (train.cpu_bf16) in the first two rows" if fp32 else ""),
        "",
        "| loop | steps | steps/s | first loss | mean loss | wall s |",
        "|---|---|---|---|---|---|",
        f"| plain single process (mean of runs before/after: {plain['runs_steps_per_s']}) | {plain['steps']} | "
        f"{plain['steps_per_s']:.3f} | {plain['first_loss']:.4f} | {plain['mean_loss']:.4f} | "
        f"{plain['total_s']:.1f} (load + loop) |",
        f"| Ray Train, 1 worker | {ray_r['steps']} | {ray_r['steps_per_s']:.3f} | {ray_r['first_loss']:.4f} | "
        f"{ray_r['mean_loss']:.4f} | {ray_r['fit_wall_s']:.1f} (fit(), worker start to checkpoint) |",
        *([f"| plain single process, float32 | {fp32['steps']} | {fp32['steps_per_s']:.3f} | "
           f"{fp32['first_loss']:.4f} | {fp32['mean_loss']:.4f} | {fp32['total_s']:.1f} (load + loop) |"] if fp32 else []),
        "",
        f"Ray Train overhead on steps/s: **{100 * overhead:.1f}%** (target <= 15%)."
        + (f" bfloat16 autocast: **{plain['steps_per_s'] / fp32['steps_per_s']:.2f}x** the float32 plain loop's "
           "steps/s." if fp32 else ""), ""])
    append_section(text)


if __name__ == "__main__":
    sys.exit(main())
