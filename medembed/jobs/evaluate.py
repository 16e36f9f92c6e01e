"""Job body of ``medembed evaluate``: models x retrieval sets -> corpus tables -> runs -> metrics -> results, table, chart.

Wiring only: datasets come from ``evaluation.datasets``/``splits``, corpus tables from
``evaluation.corpus_table`` (embedder actors + the one write path), retrieval from
``evaluation.retrieval`` (the one retriever), metrics and reports from ``evaluation.metrics``/``report``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from medembed.config import ModelConfig
from medembed.embedding.card import ModelCard, resolve_card
from medembed.embedding.encoders import build_encoder
from medembed.evaluation import report
from medembed.evaluation.config import EvaluateJobConfig
from medembed.evaluation.corpus_table import ensure_corpus_table
from medembed.evaluation.datasets import RetrievalDataset, dataset_from_pairs, load_beir
from medembed.evaluation.metrics import evaluate as score_run
from medembed.evaluation.retrieval import encode_queries, retrieve
from medembed.evaluation.splits import is_dev_note, read_pair_rows
from medembed.index.search import Retriever
from medembed.runtime import artifacts, tracking
from medembed.runtime.manifest import RunManifest
from medembed.runtime.storage import DEFAULT_STORAGE, Storage, join
from medembed.stages.embed import EmbedStage

log = logging.getLogger(__name__)

KIND = "evaluation"


@dataclass(frozen=True)
class EvalModel:
    cfg: ModelConfig
    card: ModelCard
    label: str


def resolve_models(cfg: EvaluateJobConfig, storage: Storage = DEFAULT_STORAGE) -> list[EvalModel]:
    """Cards and report labels; two models with the same id get their revision appended to the label."""
    cards = [resolve_card(m, storage) for m in cfg.models]
    ids = [c.model_id for c in cards]
    out = []
    for m, card in zip(cfg.models, cards):
        label = m.label or (card.model_id if ids.count(card.model_id) == 1 else f"{card.model_id}@{card.revision}")
        out.append(EvalModel(m.model_config_only(), card, label))
    labels = [m.label for m in out]
    if len(set(labels)) != len(labels):
        raise ValueError(f"models.label: two models share a label ({labels}); set distinct labels")
    return out


def load_datasets(cfg: EvaluateJobConfig, storage: Storage = DEFAULT_STORAGE) -> list[RetrievalDataset]:
    """The BEIR sets, then the pairs dev split (if configured), each fully loaded."""
    out = [load_beir(d.uri, d.split, name=d.name, storage_options=storage.fsspec_options(d.uri)) for d in cfg.datasets]
    if cfg.pairs_dev is not None:
        pd = cfg.pairs_dev
        pairs = read_pair_rows(pd.path, storage)
        keep = [is_dev_note(n, pd.dev_fraction) for n in pairs["note_id"].to_pylist()]
        dev = pairs.filter(keep)
        if pd.limit:
            dev = dev.slice(0, pd.limit)
        if not dev.num_rows:
            raise ValueError(f"pairs_dev: no dev pairs in {pd.path} (dev_fraction={pd.dev_fraction})")
        out.append(dataset_from_pairs(dev, name=pd.name, split="dev"))
        log.info("pairs dev split %s: %d queries, %d passages from %s", pd.name, dev.num_rows,
                 out[-1].num_documents, pd.path)
    return out


def evaluate(cfg: EvaluateJobConfig, manifest: RunManifest) -> dict[str, Any]:
    """The whole job body (for ``runner.run_job``); returns the counts recorded in ``manifest``."""
    storage = manifest.storage
    models = resolve_models(cfg, storage)
    manifest.set("models", [{"label": m.label, **m.card.to_dict()} for m in models])
    with manifest.timed("load_datasets"):
        datasets = load_datasets(cfg, storage)
    manifest.set("datasets", {d.name: {"split": d.split, "documents": d.num_documents, "queries": d.num_queries}
                              for d in datasets})
    out_dir = join(cfg.output.dir, manifest.run_id)
    artifacts.clear_marker(out_dir, storage)
    results_root = join(out_dir, "results")
    fs_opts = storage.fsspec_options(out_dir)
    k = max(cfg.k_values)
    results, paths, tables, scores = [], {}, {}, {}
    counts = {"tables_built": 0, "tables_reused": 0, "documents_embedded": 0, "queries_evaluated": 0}
    for m in models:
        encoder = build_encoder(m.cfg, cfg.embed, storage, m.card)
        for ds in datasets:
            t0 = time.perf_counter()
            with manifest.timed(f"table/{m.label}/{ds.name}"):
                table = ensure_corpus_table(ds.name, ds.corpus, m.card, m.cfg, cfg.embed, cfg.store, storage,
                                            manifest.run_id, EmbedStage.create(m.cfg, cfg.embed, storage, m.card).over_table)
            counts["tables_reused" if table.reused else "tables_built"] += 1
            counts["documents_embedded"] += 0 if table.reused else table.rows
            tables[f"{m.label}/{ds.name}"] = {"uri": table.uri, "rows": table.rows, "reused": table.reused,
                                              "built_by": table.marker.get("run_id")}
            with manifest.timed(f"search/{m.label}/{ds.name}"):
                retriever = Retriever.open(table.db_uri, table.name, encoder, storage, nprobes=cfg.store.nprobes,
                                           refine_factor=cfg.store.refine_factor)
                qvecs = encode_queries(encoder, ds.queries.texts, cfg.query_batch_size)
                run = retrieve(retriever, ds.queries.ids, qvecs, k, cfg.retrieval)
            got = score_run(run, ds.qrels, cfg.k_values)
            counts["queries_evaluated"] += got.num_queries
            result = report.make_result(dataset_name=ds.name, split=ds.split, model_name=m.label,
                                        model_revision=m.card.revision, scores=got.mean,
                                        evaluation_time=time.perf_counter() - t0, num_queries=got.num_queries,
                                        num_documents=ds.num_documents, main_metric=cfg.main_metric)
            path = report.result_path(results_root, m.label, m.card.revision, ds.name)
            report.write_result(result, path, storage_options=fs_opts)
            results.append(result)
            paths[f"{m.label}/{ds.name}"] = path
            scores.setdefault(m.label, {})[ds.name] = got.mean
            tracking.log_metrics({f"{m.label}/{ds.name}/{k}": v for k, v in got.mean.items()})
            log.info("%s on %s: %s = %.4f (%d queries, %d documents)", m.label, ds.name, cfg.main_metric,
                     got.mean[cfg.main_metric], got.num_queries, ds.num_documents)

    cmp = report.compare(results, metric=cfg.main_metric, baseline=models[0].label,
                         datasets=[d.name for d in datasets])
    markdown = report.to_markdown(cmp)
    comparison_path = join(out_dir, "comparison.md")
    fs, local = storage.fs(comparison_path)
    fs.makedirs(local.rsplit("/", 1)[0], exist_ok=True)
    with fs.open(local, "w", encoding="utf-8") as f:
        f.write(markdown)
    chart_path = report.save_png(report.plot_comparison(cmp, include_average=len(datasets) > 1),
                                 join(out_dir, f"{cfg.main_metric}.png"), storage_options=fs_opts)
    output = {"artifact": out_dir, "results": paths, "comparison": comparison_path, "chart": chart_path}
    manifest.set("tables", tables)
    manifest.set("scores", scores)
    manifest.set("comparison", {"metric": cmp.metric, "baseline": cmp.baseline, "values": cmp.values,
                                "average": cmp.average,
                                "delta": {mm: {d: cmp.delta(mm, d) for d in cmp.datasets} for mm in cmp.models[1:]}})
    manifest.set("output", output)
    tracking.log_artifacts([comparison_path, chart_path], storage=storage)
    for key, path in paths.items():  # one result JSON per model and dataset
        tracking.log_artifacts([path], f"results/{key}", storage=storage)
    for key, value in counts.items():
        manifest.count(key, value)
    artifacts.mark_complete(out_dir, KIND, manifest.run_id,
                            {**output, "main_metric": cfg.main_metric,
                             "models": [{"label": m.label, "model_id": m.card.model_id, "revision": m.card.revision,
                                         "source": m.card.source} for m in models],
                             "scores": {lbl: {d: v[cfg.main_metric] for d, v in per.items()}
                                        for lbl, per in scores.items()}}, storage)
    log.info("evaluation (%s):\n%s", out_dir, report.to_text(cmp))
    return counts
