"""A fast, single-process probe of a fine-tuning recipe (issue 10, item 13), before paying for the full benchmark.

The full benchmark (``bench/quality_finetune.py``) runs the product's jobs on the test splits and takes
over an hour on a 2-core CPU. This probe runs the same pieces in one process on a small scale, in
~15 minutes: extractive pairs (title + finding queries, ``synth.extractive``) from a SciFact document
subsample used as an unlabelled corpus; candidates = the pairs' passages; negatives picked by the
dense or the hybrid teacher (``mining.lexical``, ``mining.selection``); the product's ``train_step``
(InfoNCE + ``distill_weight`` x KL); then nDCG@10 of the tuned and interpolated models on SciFact's
**train** split queries (never its test split; no query or qrel is trained on) over the subsample.

    HF_HUB_OFFLINE=1 python bench/recipe_probe.py --steps 40 --distill-weight 2
"""

from __future__ import annotations

import argparse
import logging
import os
import time

import numpy as np
import torch
from probe_data import scifact_train_subsample
from results_file import append_section, header_lines

from medembed.config import ModelConfig
from medembed.embedding.card import resolve_card
from medembed.evaluation.retrieval import exact_scores
from medembed.mining.lexical import BM25, hybrid_scores
from medembed.mining.selection import SelectParams, select_negatives
from medembed.synth.extractive import extract_pairs
from medembed.training.batching import epoch_batches
from medembed.training.config import TrainConfig
from medembed.training.loss import DualEncoder, build_loss
from medembed.training.schedule import build_optimizer
from medembed.training.step import train_step

log = logging.getLogger("bench.recipe_probe")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=1500)
    ap.add_argument("--queries-per-note", type=int, default=3, help="title + (n - 1) finding queries")
    ap.add_argument("--teacher", choices=["dense", "hybrid"], default="hybrid")
    ap.add_argument("--lexical-weight", type=float, default=0.43)
    ap.add_argument("--negatives", type=int, default=3)
    ap.add_argument("--max-rank", type=int, default=30)
    ap.add_argument("--abs-margin", type=float, default=None)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--temperature", type=float, default=0.05)
    ap.add_argument("--distill-weight", type=float, default=2.0)
    ap.add_argument("--teacher-temperature", type=float, default=0.5)
    ap.add_argument("--passage-len", type=int, default=192)
    ap.add_argument("--alphas", default="0.5", help="interpolation weights also scored")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count() or 1)
    from sentence_transformers import SentenceTransformer

    t0 = time.perf_counter()
    ds, doc_ids, by_id, docs, qtext, qids = scifact_train_subsample(args.docs)

    pairs = [(p["query"], p["passage"], d) for d in doc_ids
             for p in extract_pairs(*by_id[d], args.queries_per_note, findings=args.queries_per_note - 1)]
    cands = sorted({p[1] for p in pairs})
    row = {c: j for j, c in enumerate(cands)}
    cand_note = np.empty(len(cands), dtype=object)
    for _, passage, note in pairs:
        cand_note[row[passage]] = note
    path = resolve_card(ModelConfig()).path
    model = SentenceTransformer(path, device="cpu")
    model.max_seq_length = 128
    queries = [p[0] for p in pairs]
    dense = model.encode(queries, batch_size=64, normalize_embeddings=True) @ model.encode(
        cands, batch_size=32, normalize_embeddings=True).T
    scores = hybrid_scores(dense, BM25(cands).scores(queries), args.lexical_weight) if args.teacher == "hybrid" \
        else dense
    params = SelectParams(num_negatives=args.negatives, max_rank=args.max_rank, absolute_margin=args.abs_margin,
                          relative_margin=None if args.teacher == "hybrid" else 0.05)
    trip = []
    for i, (query, passage, note) in enumerate(pairs):
        top = np.argsort(-scores[i])[:args.max_rank + 32]
        pos = float(scores[i, row[passage]])
        sel = select_negatives(scores[i, top], np.asarray([cands[j] == passage for j in top]),
                               cand_note[top] == note, pos, params)
        if len(sel.indices) == args.negatives:
            trip.append((query, passage, [cands[top[j]] for j in sel.indices], [pos, *sel.scores], note))
    prep_s = time.perf_counter() - t0
    log.info("%d pairs, %d candidates, %d triplets (%.0f s)", len(pairs), len(cands), len(trip), prep_s)

    tc = TrainConfig(batch_size=args.batch_size, num_negatives=args.negatives, temperature=args.temperature,
                     learning_rate=args.lr, passage_max_length=args.passage_len, distill_weight=args.distill_weight,
                     teacher_temperature=args.teacher_temperature, max_steps=args.steps)
    st = SentenceTransformer(path, device="cpu")
    st.max_seq_length = args.passage_len
    opt, sched = build_optimizer(st, args.lr, tc.weight_decay, args.steps, tc.warmup_ratio, tc.min_lr_ratio)
    plan = epoch_batches([t[1] for t in trip], [t[4] for t in trip], args.batch_size, tc.seed, 0)
    enc, loss_fn = DualEncoder(st), build_loss(st, args.temperature, False)
    enc.train()
    t1 = time.perf_counter()
    for step, rows in enumerate(plan[:args.steps]):
        loss = train_step(enc, st, loss_fn, opt, sched, [trip[i][0] for i in rows], [trip[i][1] for i in rows],
                          [trip[i][2] for i in rows], {"query": "", "document": ""}, tc, torch.device("cpu"),
                          [trip[i][3] for i in rows] if args.distill_weight else None)
        if step % 10 == 0:
            log.info("step %d loss %.4f", step, loss)
    train_s = time.perf_counter() - t1

    def ndcg(m: SentenceTransformer) -> float:
        m.max_seq_length = 256
        s = m.encode([qtext[q] for q in qids], batch_size=64, normalize_embeddings=True) @ m.encode(
            docs, batch_size=32, normalize_embeddings=True).T
        return 100 * exact_scores(s, qids, doc_ids, ds.qrels).mean["ndcg_at_10"]

    st.eval()
    base_sd = SentenceTransformer(path, device="cpu").state_dict()
    tuned = {k: v.clone() for k, v in st.state_dict().items()}
    results = [("base", ndcg(SentenceTransformer(path, device="cpu"))), ("tuned (a = 1)", ndcg(st))]
    for a in (float(x) for x in args.alphas.split(",")):
        st.load_state_dict({k: a * v + (1 - a) * base_sd[k] if v.is_floating_point() else v for k, v in tuned.items()})
        results.append((f"interpolated a = {a}", ndcg(st)))
    cmd = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None)
    lines = [*header_lines("recipe_probe", f"HF_HUB_OFFLINE=1 python bench/recipe_probe.py {cmd}"),
             f"- times: prep {prep_s:.0f} s, train {train_s:.0f} s",
             f"- data: {len(doc_ids)} SciFact documents as a user corpus -> {len(pairs)} pairs, {len(cands)} candidates, "
             f"{len(trip)} triplets; {args.steps} steps of {args.batch_size}; scored on {len(qids)} SciFact train-split "
             "queries over the same documents", "",
             "| model | nDCG@10 | vs base |", "|---|---|---|"]
    lines += [f"| {n} | {v:.2f} | {v - results[0][1]:+.2f} |" for n, v in results]
    append_section(lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
