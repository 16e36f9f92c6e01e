"""Job body of ``medembed train``: triplets -> split by note -> Ray Train (DDP) -> interpolation -> model folder.

Wiring only: reading and splitting live in ``training.data``, batching in ``training.batching``,
the worker loop in ``training.loop``, the trainer in ``training.trainer``, picking the
interpolation weight in ``training.interpolate`` and the model folder in ``training.export``.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from medembed.embedding.card import ModelCard, resolve_card
from medembed.evaluation.datasets import RetrievalDataset, dataset_from_pairs, passage_id
from medembed.mining import columns as M
from medembed.runtime import artifacts, tracking
from medembed.runtime.manifest import RunManifest
from medembed.training import data
from medembed.training.config import TrainJobConfig

log = logging.getLogger(__name__)


def dev_dataset(dev, max_queries: int) -> RetrievalDataset:
    """Dev queries against the dev positives plus their mined negatives as distractors."""
    dev = dev.slice(0, max_queries)
    ds = dataset_from_pairs(data.dev_pairs(dev), name="train-dev", split="dev")
    seen = set(ds.corpus.ids)
    for negs in dev[M.NEGATIVES].to_pylist():
        for text in negs:
            pid = passage_id(text)
            if pid not in seen:
                seen.add(pid)
                ds.corpus.ids.append(pid)
                ds.corpus.titles.append("")
                ds.corpus.texts.append(text)
    return ds


def finish_model(cfg: TrainJobConfig, card: ModelCard, tuned: dict[str, Any], dev, out_card: ModelCard,
                 training: dict[str, Any], model_dir: str) -> dict[str, Any]:
    """Interpolate (when configured), score on dev, save the model folder; returns the dev summary."""
    import torch

    from medembed.embedding.loading import load_sentence_transformer
    from medembed.training.export import save_model
    from medembed.training.interpolate import SELECT_METRIC, choose_alpha, dev_scores

    tc = cfg.train
    st = load_sentence_transformer(card, cfg.model.model_copy(update={"device": "cpu", "dtype": "float32"}))
    base = {k: v.detach().clone() for k, v in st.state_dict().items()}
    alpha, dev_results = 1.0, {}
    if dev.num_rows:
        ds = dev_dataset(dev, tc.dev_eval_max_queries)
        prompts = {"query": card.prompts.query, "document": card.prompts.document}

        def score(model):
            with torch.no_grad():
                return dev_scores(model, ds, prompts, tc.query_max_length, tc.passage_max_length)

        alpha, dev_results = choose_alpha(st, base, tuned, tc.interpolate or [1.0], score)
        log.info("dev %s: base %.4f, tuned %.4f, chosen alpha %.2f -> %.4f", SELECT_METRIC,
                 dev_results[0.0][SELECT_METRIC], dev_results[1.0][SELECT_METRIC] if 1.0 in dev_results
                 else float("nan"), alpha, dev_results[alpha][SELECT_METRIC])
    else:
        st.load_state_dict(tuned)
    training["interpolation_alpha"] = alpha if tc.interpolate else None
    training["dev"] = {str(a): {k: round(v, 5) for k, v in m.items()} for a, m in dev_results.items()}
    if Path(model_dir).exists():
        shutil.rmtree(model_dir)  # an earlier attempt of this run died while writing it
    save_model(st, model_dir, out_card, training)
    return {"alpha": alpha, "dev": training["dev"]}


def train(cfg: TrainJobConfig, manifest: RunManifest) -> dict[str, Any]:
    """The whole job body (for ``runner.run_job``); returns the counts recorded in ``manifest``."""
    from medembed.training.trainer import check_resources, fit

    tc, storage = cfg.train, manifest.storage
    check_resources(tc, cfg.ray)
    card = resolve_card(cfg.model, storage)
    card = card.on_this_node(cfg.model, storage)
    manifest.set("model", card.to_dict())
    with manifest.timed("read_triplets"):
        trip = data.read_triplets(cfg.triplets.path, storage, cfg.triplets.limit)
    train_rows, dev = data.split_by_note(trip.table, tc.dev_fraction)
    train_rows, short = data.with_negatives(train_rows, tc.num_negatives)
    dev, _ = data.with_negatives(dev, tc.num_negatives)
    log.info("triplets: %d read from %s, %d train (%d left out with < %d negatives), %d dev", trip.table.num_rows,
             trip.source, train_rows.num_rows, short, tc.num_negatives, dev.num_rows)
    if train_rows.num_rows == 0:
        raise ValueError(f"no training triplets with >= {tc.num_negatives} negatives in {trip.source}")
    if tc.distill_weight:
        data.teacher_scores(train_rows, tc.num_negatives)  # fail here, on the driver, not in every worker
        log.info("distilling the teacher scores of %s (%s) with weight %s", trip.source, trip.scores,
                 tc.distill_weight)

    run_root = f"{cfg.output.dir.rstrip('/')}/{manifest.run_id}"
    model_dir = f"{run_root}/model"
    if "://" in model_dir:
        raise ValueError("output.dir must be a local or shared filesystem path (the model folder is written "
                         "with sentence-transformers)")
    artifacts.clear_marker(model_dir)
    with manifest.timed("train"):
        result = fit(train_rows, tc, card, cfg.output.dir, manifest.run_id, tracking.worker_target())
    m = result.metrics
    model_id = cfg.output.model_name or f"medembed-{card.slug}-{manifest.run_id}"
    from medembed.training.export import output_card

    out_card = output_card(card, model_id, max(tc.passage_max_length, tc.query_max_length))
    training = {"triplets_path": trip.source, "triplets_run_id": trip.run_id, "train_run_id": manifest.run_id,
                "train_triplets": train_rows.num_rows, "dev_triplets": dev.num_rows, "steps": m.get("step"),
                "first_loss": m.get("first_loss"), "final_loss": m.get("loss"),
                "hyperparameters": tc.model_dump(), "teacher_scores": trip.scores if tc.distill_weight else None,
                "base_model_revision": card.revision}
    with manifest.timed("dev_and_save"):
        dev_summary = finish_model(cfg, card, result.state["model"], dev, out_card, training, model_dir)
    tracking.log_metrics({"interpolation_alpha": dev_summary["alpha"],
                          **{f"dev/alpha_{a}/{k}": v for a, per in dev_summary["dev"].items() for k, v in per.items()}})
    counts = {"triplets_read": trip.table.num_rows, "triplets_dropped": trip.dropped,
              "train_triplets": train_rows.num_rows, "dev_triplets": dev.num_rows,
              "train_left_out_few_negatives": short, "tail_rows_left_out": result.plan.left_out,
              "steps": m.get("step"), "steps_per_epoch": result.plan.steps_per_epoch,
              "first_loss": m.get("first_loss"), "final_loss": m.get("loss"),
              "attempt_start_steps": m.get("attempt_start_steps"), "resumed_from_step": m.get("resumed_from_step"),
              "steps_per_s": m.get("attempt_steps_per_s"), "cpu_memory_kept": m.get("cpu_memory_kept"),
              "interpolation_alpha": training["interpolation_alpha"], "dev": dev_summary["dev"],
              "model_dir": model_dir, "model_id": model_id, "checkpoint": result.checkpoint_path}
    for k, v in counts.items():
        manifest.count(k, v)
    manifest.set("output", {"dir": model_dir, "artifact": model_dir})
    artifacts.mark_complete(model_dir, "model", manifest.run_id,
                            {"model_id": model_id, "base_model": card.model_id, "triplets": trip.source,
                             "steps": m.get("step"), "interpolation_alpha": training["interpolation_alpha"],
                             "dev": dev_summary["dev"]}, storage)
    return counts
