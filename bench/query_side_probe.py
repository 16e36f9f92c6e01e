"""Query-side adaptation probe (issue 10, item 13): can the query encoder alone learn the hybrid teacher?

The hybrid teacher (BM25 + the bundled model's dense score, ``mining.lexical.hybrid_scores``) is ~5 points of
nDCG@10 better than the bundled model on SciFact's train-split claims (``bench/hybrid_teacher.py``). A query
step is ~10x cheaper than a passage step on this CPU, and an index built with the base model would stay valid,
so this probe trains only the query side: the documents keep the base model's vectors, and each pseudo-query's
softmax over **all** documents is pulled toward the teacher's (KL divergence). The pseudo-query's source
document is masked out of both distributions by default (it contains the query verbatim, so the teacher is
one-hot on it; ``--keep-source`` keeps it).

Data: extractive title + finding pseudo-queries (``synth.extractive.extract_pairs``) from the same SciFact
document subsample as ``bench/recipe_probe.py`` (every train-judged document plus a seeded sample), used as an
unlabelled corpus. Scored every ``--eval-every`` steps on SciFact's **train** split claims (never its test
split; no benchmark query or qrel is trained on).

    HF_HUB_OFFLINE=1 python bench/query_side_probe.py --steps 600
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
from probe_data import scifact_train_subsample
from results_file import append_section, header_lines

from medembed.config import ModelConfig
from medembed.embedding.card import resolve_card
from medembed.evaluation.retrieval import exact_scores
from medembed.mining.lexical import BM25, hybrid_scores
from medembed.synth.extractive import extract_pairs

log = logging.getLogger("bench.query_side_probe")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=1500)
    ap.add_argument("--queries-per-note", type=int, default=3, help="title + (n - 1) finding queries")
    ap.add_argument("--lexical-weight", type=float, default=0.43)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--temperature", type=float, default=0.05, help="student softmax temperature")
    ap.add_argument("--teacher-temperature", type=float, default=0.5)
    ap.add_argument("--keep-source", action="store_true", help="keep the source document in the softmax")
    ap.add_argument("--eval-every", type=int, default=100)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count() or 1)
    from sentence_transformers import SentenceTransformer

    t0 = time.perf_counter()
    ds, doc_ids, by_id, docs, qtext, qids = scifact_train_subsample(args.docs)
    claims = [qtext[q] for q in qids]

    path = resolve_card(ModelConfig()).path
    base = SentenceTransformer(path, device="cpu")
    base.max_seq_length = 256
    doc_vecs = base.encode(docs, batch_size=32, normalize_embeddings=True)
    pseudo, source = [], []
    for j, d in enumerate(doc_ids):
        for p in extract_pairs(*by_id[d], args.queries_per_note, findings=args.queries_per_note - 1):
            pseudo.append(p["query"])
            source.append(j)
    teacher = torch.from_numpy(hybrid_scores(base.encode(pseudo, batch_size=64, normalize_embeddings=True) @ doc_vecs.T,
                                             BM25(docs).scores(pseudo), args.lexical_weight))
    source_t = torch.as_tensor(source)
    prep_s = time.perf_counter() - t0
    log.info("%d documents, %d pseudo-queries (%.0f s)", len(docs), len(pseudo), prep_s)

    doc_t = torch.from_numpy(doc_vecs)

    def ndcg(m) -> float:
        m.eval()
        with torch.inference_mode():
            s = m.encode(claims, batch_size=64, normalize_embeddings=True) @ doc_vecs.T
        return 100 * exact_scores(s, qids, doc_ids, ds.qrels).mean["ndcg_at_10"]

    st = SentenceTransformer(path, device="cpu")
    st.max_seq_length = 64
    curve = [(0, ndcg(st), float("nan"))]
    opt = torch.optim.AdamW(st.parameters(), lr=args.lr, weight_decay=0.01)
    warm = max(1, args.steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / args.steps))))
    rng = np.random.default_rng(0)
    order, pos = rng.permutation(len(pseudo)), 0
    t1 = time.perf_counter()
    for step in range(args.steps):
        if pos + args.batch_size > len(order):
            order, pos = rng.permutation(len(pseudo)), 0
        idx = torch.as_tensor(order[pos:pos + args.batch_size])
        pos += args.batch_size
        st.train()
        q = F.normalize(st(st.preprocess([pseudo[i] for i in idx]))["sentence_embedding"], dim=-1)
        student, target = q @ doc_t.T / args.temperature, teacher[idx] / args.teacher_temperature
        if not args.keep_source:
            mask = torch.zeros_like(target, dtype=torch.bool)
            mask[torch.arange(len(idx)), source_t[idx]] = True
            student, target = student.masked_fill(mask, -1e4), target.masked_fill(mask, -1e4)
        loss = F.kl_div(F.log_softmax(student, -1), F.log_softmax(target, -1), log_target=True,
                        reduction="batchmean")
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(st.parameters(), 1.0)
        opt.step()
        sched.step()
        if (step + 1) % args.eval_every == 0 or step + 1 == args.steps:
            curve.append((step + 1, ndcg(st), float(loss)))
            log.info("step %d loss %.4f nDCG@10 %.2f", *curve[-1][:1], curve[-1][2], curve[-1][1])
    train_s = time.perf_counter() - t1

    cmd = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v not in (None, False))
    lines = [*header_lines("query_side_probe", f"HF_HUB_OFFLINE=1 python bench/query_side_probe.py {cmd}"),
             f"- times: prep {prep_s:.0f} s, {train_s / args.steps:.2f} s per step (evaluations included)",
             f"- data: {len(docs)} SciFact documents as an unlabelled corpus -> {len(pseudo)} pseudo-queries; "
             f"{args.steps} steps of {args.batch_size}; documents keep the base vectors; scored on {len(qids)} "
             "SciFact train-split claims over the same documents", "",
             "| step | train loss | nDCG@10 | vs base |", "|---:|---:|---:|---:|"]
    lines += [f"| {s} | {loss:.4f} | {v:.2f} | {v - curve[0][1]:+.2f} |" if s else f"| 0 | - | {v:.2f} | +0.00 |"
              for s, v, loss in curve]
    append_section(lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
