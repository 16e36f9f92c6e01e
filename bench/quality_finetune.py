"""Quality benchmark (issue 10 item 13): does fine-tuning on medembed's own offline pairs lift the bundled MiniLM?

One run, the product's own jobs in one driver process on one local Ray instance:

1. ``generate-pairs`` on a corpus used as an unlabelled user corpus (default: the SciFact corpus; never a
   benchmark's queries or qrels), extractive backend (title pairs + claim-like finding pairs);
2. ``mine-negatives`` (hard negatives from a rank window, false-negative margin);
3. ``train`` (Ray Train, 1 CPU worker; interpolation with the base picked on the dev notes);
4. ``eval``: base vs fine-tuned on the test splits of ../shared/data/{scifact,med,pubmedqa}.

Appends the comparison (nDCG@10 and deltas), the data counts, the recipe and each stage's time to
bench/RESULTS.md.

    HF_HUB_OFFLINE=1 python bench/quality_finetune.py --steps 150 --lr 1e-5
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from results_file import append_section, header_lines

from medembed.app.runner import main_for

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MEDEMBED_SHARED_DATA", REPO.parent / "shared" / "data"))
log = logging.getLogger("bench.quality")


def sets(*pairs: str) -> list[str]:
    return [a for p in pairs for a in ("--set", p)]


def stage(name: str, job: str, argv: list[str], times: dict) -> None:
    """Run one job in this process (its local Ray instance is reused by the next stage); stop on failure."""
    t = time.perf_counter()
    rc = main_for(job, argv)
    times[name] = round(time.perf_counter() - t, 1)
    if rc != 0:
        raise SystemExit(f"{job} failed with exit code {rc}")


def manifest(work: Path, run: str) -> dict:
    return json.loads((work / "runs" / run / "manifest.json").read_text())


def mine(args: argparse.Namespace, work: Path, common: list[str], pairs_run: str, mine_run: str,
         times: dict) -> None:
    """The generate-pairs and mine-negatives stages of a new run."""
    stage("generate_pairs", "generate_pairs", sets(
        f"input.uri={DATA / args.corpus / 'corpus.jsonl'}", "input.id_field=_id", "input.title_field=title",
        "input.text_fields=[text]", *([f"input.limit={args.docs}"] if args.docs else []), "synth.backend=extractive",
        f"synth.extractive_findings={args.findings}",
        f"synth.queries_per_note={args.queries_per_note}", f"synth.output_dir={work / 'pairs'}",
        f"output.run_name={pairs_run}", *common), times)
    stage("mine_negatives", "mine_negatives", sets(
        f"pairs.path={work / 'pairs'}", f"candidates.store_uri={work / 'candidates'}",
        f"mining.min_rank={args.min_rank}", f"mining.max_rank={args.max_rank}", "mining.num_negatives=3",
        f"mining.teacher={args.teacher}", f"mining.absolute_margin={json.dumps(args.abs_margin)}",
        *([f"model.max_seq_length={args.mine_len}"] if args.mine_len else []),
        f"output.dir={work / 'triplets'}", f"output.run_name={mine_run}", *common), times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default=str(REPO / "bench" / "_work" / "quality"))
    ap.add_argument("--corpus", default="scifact", help="BEIR folder under ../shared/data used as a user corpus")
    ap.add_argument("--findings", type=int, default=2, help="finding pairs per document")
    ap.add_argument("--queries-per-note", type=int, default=3)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-5)
    ap.add_argument("--temperature", type=float, default=0.05)
    ap.add_argument("--negatives", type=int, default=1, help="mined hard negatives per query in training")
    ap.add_argument("--min-rank", type=int, default=10)
    ap.add_argument("--max-rank", type=int, default=60)
    ap.add_argument("--interpolate", default="[0.25, 0.5, 0.75, 1.0]")
    ap.add_argument("--datasets", default="scifact,med,pubmedqa")
    ap.add_argument("--docs", type=int, default=None, help="use the first N corpus documents (input.limit)")
    ap.add_argument("--passage-len", type=int, default=256, help="train.passage_max_length (tokens)")
    ap.add_argument("--dev-queries", type=int, default=2000, help="train.dev_eval_max_queries")
    ap.add_argument("--dev-fraction", type=float, default=0.05)
    ap.add_argument("--mine-len", type=int, default=None, help="model.max_seq_length of the mining encoder")
    ap.add_argument("--teacher", choices=["dense", "hybrid"], default="hybrid", help="mining.teacher")
    ap.add_argument("--abs-margin", type=float, default=None, help="mining.absolute_margin (hybrid: in z units)")
    ap.add_argument("--distill-weight", type=float, default=1.0, help="train.distill_weight (0: InfoNCE only)")
    ap.add_argument("--teacher-temperature", type=float, default=0.5)
    ap.add_argument("--cpu-bf16", action="store_true", help="train.cpu_bf16: bfloat16 autocast on the CPU worker "
                    "(~2x the steps in the same time on a CPU with AVX-512 BF16)")
    ap.add_argument("--reuse", default=None, metavar="STAMP", help="reuse the pairs and negatives of an earlier "
                    "run in --work (its qf-pairs-STAMP and qf-mine-STAMP runs): train and evaluate only")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    common = [f"output.run_dir={work / 'runs'}"]
    times: dict[str, float | str] = {}
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    pairs_run, mine_run, train_run, eval_run = (f"qf-{s}-{stamp}" for s in ("pairs", "mine", "train", "eval"))

    if args.reuse:
        pairs_run, mine_run = f"qf-pairs-{args.reuse}", f"qf-mine-{args.reuse}"
        times.update(generate_pairs=f"reused {pairs_run}", mine_negatives=f"reused {mine_run}")
    else:
        mine(args, work, common, pairs_run, mine_run, times)
    stage("train", "train", sets(
        f"triplets.path={work / 'triplets' / mine_run / 'triplets'}", "model.name=bundled:all-MiniLM-L6-v2",
        "train.num_workers=1", f"train.batch_size={args.batch_size}", f"train.max_steps={args.steps}",
        f"train.num_negatives={args.negatives}", f"train.temperature={args.temperature}",
        f"train.learning_rate={args.lr}", f"train.distill_weight={args.distill_weight}",
        f"train.teacher_temperature={args.teacher_temperature}", "train.query_max_length=64",
        f"train.passage_max_length={args.passage_len}",
        f"train.dev_fraction={args.dev_fraction}", f"train.dev_eval_max_queries={args.dev_queries}",
        "train.cpus_per_worker=2", "train.checkpoint_every=1000", f"train.interpolate={args.interpolate}",
        f"train.cpu_bf16={str(args.cpu_bf16).lower()}",
        f"output.dir={work / 'models'}", f"output.run_name={train_run}", *common), times)
    model_dir = work / "models" / train_run / "model"
    datasets = [{"name": d, "uri": str(DATA / d), "split": "test"} for d in args.datasets.split(",")]
    models = [{"name": "bundled:all-MiniLM-L6-v2", "label": "base"}, {"name": str(model_dir), "label": "fine-tuned"}]
    stage("evaluate", "evaluate", sets(
        f"models={json.dumps(models)}", f"datasets={json.dumps(datasets)}", "retrieval=exact",
        f"store.uri={work / 'eval_lancedb'}", f"output.dir={work / 'eval'}", f"output.run_name={eval_run}",
        *common), times)

    pm, mm, tm = manifest(work, pairs_run), manifest(work, mine_run), manifest(work, train_run)
    mc = mm["config"]["mining"]  # what the (possibly reused) mining run did, not this command's flags
    comparison = (work / "eval" / eval_run / "comparison.md").read_text()
    lines = [
        *header_lines("quality_finetune", "HF_HUB_OFFLINE=1 python bench/quality_finetune.py "
                      + " ".join(subprocess.list2cmdline([a]) for a in sys.argv[1:])),
        f"- data: {pm['counts'].get('notes_in')} {args.corpus} corpus documents as a user corpus -> "
        f"{pm['counts'].get('pairs_out')} pairs (extractive: title + "
        f"{pm['config']['synth']['extractive_findings']} finding pairs per document); "
        f"{mm['counts'].get('queries_in')} queries mined, {mm['counts'].get('negatives_out')} negatives "
        f"(ranks [{mc['min_rank']}, {mc['max_rank']}), teacher {mc['teacher']}, absolute margin {mc['absolute_margin']}); "
        f"training (InfoNCE + {args.distill_weight} x KL to the teacher at temperature {args.teacher_temperature}): "
        f"{tm['counts'].get('train_triplets')} train / "
        f"{tm['counts'].get('dev_triplets')} dev triplets, {tm['counts'].get('steps')} steps of {args.batch_size}, "
        f"lr {args.lr}, temperature {args.temperature}, {args.negatives} hard negative(s), "
        f"{'bfloat16 autocast on CPU, ' if args.cpu_bf16 else ''}passages cut to "
        f"{args.passage_len} tokens in training, interpolation "
        f"weight picked on dev: {tm['counts'].get('interpolation_alpha')}",
        f"- stage times (s): {json.dumps(times)}",
        "- evaluation (test splits; no benchmark query or qrel used in training):", "", comparison.strip(), "",
    ]
    append_section(lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
