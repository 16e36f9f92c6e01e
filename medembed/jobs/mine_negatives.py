"""Job body of ``medembed mine-negatives``: pairs -> candidate table -> actor pool of miners -> triplets Parquet.

Wiring only: reading pairs and building the candidate table live in ``candidates``, retrieval and
selection in ``miner``/``selection``, writing and the hub upload in ``output``.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import pyarrow as pa
import ray

from medembed.embedding.card import ModelCard, resolve_card
from medembed.embedding.encoders import encoder_actor_kwargs
from medembed.mining import columns as M
from medembed.mining import one_actor
from medembed.mining.candidates import CandidateTable, build_candidate_table, read_pairs, split_table
from medembed.mining.config import MineNegativesJobConfig, MiningConfig
from medembed.mining.miner import NegativeMiner
from medembed.mining.output import push_to_hub, write_triplets
from medembed.runtime import artifacts, in_process
from medembed.runtime.manifest import RunManifest
from medembed.runtime.memory import cpu_actor_options
from medembed.runtime.storage import DEFAULT_STORAGE, Storage
from medembed.stages.embed import EmbedStage

log = logging.getLogger(__name__)


def summarize(stats: pa.Table, num_negatives: int) -> dict[str, Any]:
    """Counts of a run from the per-query rows (MINED_SCHEMA columns without the texts)."""
    def total(col: str) -> int:
        return int(sum(v or 0 for v in stats[col].to_pylist()))

    reasons = Counter(r for r in stats[M.SHORTFALL_REASON].to_pylist() if r)
    n = stats.num_rows
    considered = total(M.ST_CONSIDERED)
    removed = total(M.ST_ABS_MARGIN) + total(M.ST_REL_MARGIN)
    return {
        "queries_in": n,
        "queries_complete": n - sum(reasons.values()),
        "queries_short": sum(reasons.values()),
        "queries_short_by_reason": {r: reasons.get(r, 0) for r in M.SHORTFALL_REASONS},
        "queries_without_negatives": sum(1 for k in stats[M.N_NEGATIVES].to_pylist() if not k),
        "negatives_out": total(M.N_NEGATIVES),
        "negatives_expected": n * num_negatives,
        "candidates_retrieved": total(M.ST_RETRIEVED),
        "candidates_removed_same_note": total(M.ST_SAME_NOTE),
        "false_negative_filter": {"considered": considered, "removed": removed,
                                  "removed_absolute_margin": total(M.ST_ABS_MARGIN),
                                  "removed_relative_margin": total(M.ST_REL_MARGIN),
                                  "removed_share": round(removed / considered, 4) if considered else 0.0},
    }


def score_kind(mc: MiningConfig) -> str:
    """What the triplets' positive_score / negative_scores are (recorded in their marker, read by training)."""
    return "cosine" if mc.teacher == "dense" else f"hybrid(lexical_weight={mc.lexical_weight})"


def miner_kwargs(cfg: MineNegativesJobConfig, db_uri: str, table: str, storage: Storage = DEFAULT_STORAGE
                 ) -> dict[str, Any]:
    """``NegativeMiner`` constructor kwargs other than the encoder."""
    mc = cfg.mining
    params = {"num_negatives": mc.num_negatives, "min_rank": mc.min_rank, "max_rank": mc.max_rank,
              "relative_margin": mc.relative_margin, "absolute_margin": mc.absolute_margin,
              "exclude_same_note": mc.exclude_same_note}
    return {"db_uri": db_uri, "table": table, "params": params, "top_k": mc.retrieve_k,
            "retrieval": cfg.candidates.retrieval, "nprobes": cfg.candidates.nprobes,
            "refine_factor": cfg.candidates.refine_factor, "storage": storage,
            "teacher": mc.teacher, "lexical_weight": mc.lexical_weight}


def mine(cfg: MineNegativesJobConfig, card: ModelCard, pairs: pa.Table, db_uri: str, table: str,
         storage: Storage = DEFAULT_STORAGE) -> ray.data.Dataset:
    """The lazy mining stage over ``pairs`` on an actor pool: one MINED_SCHEMA row per pair."""
    mc = cfg.mining
    return ray.data.from_arrow(split_table(pairs, mc.batch_size)).map_batches(
        NegativeMiner,
        fn_constructor_kwargs={"encoder": encoder_actor_kwargs(cfg.model, cfg.embed, storage, card),
                               **miner_kwargs(cfg, db_uri, table, storage)},
        batch_size=mc.batch_size, batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=mc.num_actors), num_cpus=mc.num_cpus,
        num_gpus=mc.num_gpus, **cpu_actor_options(mc.num_gpus, cfg.embed.cpu_keep_memory))


def choose_execution(num_pairs: int, mc: MiningConfig, num_gpus: float) -> str:
    """"actor pools" above ``one_actor_max_pairs``; "in driver" up to ``in_driver_max_pairs`` when no GPU is
    asked for (the driver may run where there is none); "one actor" between."""
    if num_pairs > mc.one_actor_max_pairs:
        return "actor pools"
    return "in driver" if num_pairs <= mc.in_driver_max_pairs and not num_gpus else "one actor"


def candidates_and_mined(cfg: MineNegativesJobConfig, card: ModelCard, pairs: pa.Table, manifest: RunManifest
                         ) -> tuple[CandidateTable, ray.data.Dataset]:
    """Build the candidate table, then mine (materialized): two pools; one actor for small inputs; the driver
    process itself for tiny CPU-only ones."""
    mc, storage = cfg.mining, manifest.storage
    num_gpus = max(cfg.embed.num_gpus, mc.num_gpus)
    execution = choose_execution(pairs.num_rows, mc, num_gpus)
    manifest.set("execution", execution)
    if execution == "actor pools":
        with manifest.timed("candidates"):
            cands = build_candidate_table(
                cfg, card, pairs, storage=storage,
                embed_rows=EmbedStage.create(cfg.model, cfg.embed, storage, card).over_table)
        with manifest.timed("mine"):
            return cands, mine(cfg, card, pairs, cands.db_uri, cands.name, storage).materialize()
    log.info("%d pairs (mining.one_actor_max_pairs %d, in_driver_max_pairs %d): one worker %s embeds the positives "
             "and mines", pairs.num_rows, mc.one_actor_max_pairs, mc.in_driver_max_pairs,
             "in the driver process" if execution == "in driver" else "actor")
    worker = None
    try:
        with manifest.timed("candidates"):  # the model load is in (an actor's overlaps the driver's planning)
            worker = one_actor.start_worker(EmbedStage.create(cfg.model, cfg.embed, storage, card).fn_constructor_kwargs,
                                            num_cpus=max(cfg.embed.num_cpus, mc.num_cpus), num_gpus=num_gpus,
                                            in_driver=execution == "in driver", keep_memory=cfg.embed.cpu_keep_memory)
            cands = build_candidate_table(cfg, card, pairs, lambda rows, uri, schema: one_actor.write_then_encode(
                worker, rows, uri, schema, storage, pairs), storage)
        with manifest.timed("mine"):
            kwargs = miner_kwargs(cfg, cands.db_uri, cands.name, storage)
            return cands, one_actor.mined(worker, pairs, mc.batch_size, kwargs).materialize()
    finally:
        if worker is not None:
            in_process.stop(worker)


def mine_negatives(cfg: MineNegativesJobConfig, manifest: RunManifest) -> dict[str, Any]:
    """The whole job body (for ``runner.run_job``); returns the counts recorded in ``manifest``."""
    storage = manifest.storage
    card = resolve_card(cfg.model, storage)
    manifest.set("model", card.to_dict())
    with manifest.timed("read_pairs"):
        pairs = read_pairs(cfg.pairs.path, storage, cfg.pairs.limit)
    log.info("mining negatives for %d pairs from %s", pairs.num_rows, cfg.pairs.path)
    cands, mined = candidates_and_mined(cfg, card, pairs, manifest)
    manifest.set("candidates", {"uri": cands.uri, "rows": cands.rows, "positives": cands.positives,
                                "corpus_chunks": cands.corpus_chunks, "index": cands.index})
    # both model stages: in one actor the queries are encoded during the candidate stage
    elapsed = manifest.data["durations_s"]["candidates"] + manifest.data["durations_s"]["mine"]
    stat_cols = [M.N_NEGATIVES, M.SHORTFALL_REASON, *M.STAT_COLUMNS]
    refs = mined.select_columns(stat_cols).to_arrow_refs()
    stats = pa.concat_tables(ray.get(refs)) if refs else M.MINED_SCHEMA.empty_table().select(stat_cols)
    counts = summarize(stats, cfg.mining.num_negatives)
    counts["candidates"] = cands.rows

    out_dir = f"{cfg.output.dir.rstrip('/')}/{manifest.run_id}/triplets"
    with manifest.timed("write"):
        artifacts.clear_marker(out_dir, storage)
        counts["rows_out"] = write_triplets(mined, out_dir, cfg.output.format, storage)
    manifest.set("output", {"dir": out_dir, "format": cfg.output.format, "artifact": out_dir})
    if cfg.output.hub_repo:
        with manifest.timed("push_to_hub"):
            manifest.set("hub", push_to_hub(out_dir, cfg.output.hub_repo, private=cfg.output.hub_private))
    for k, v in counts.items():
        manifest.count(k, v)
    artifacts.mark_complete(out_dir, "triplets", manifest.run_id,
                            {"rows": counts["rows_out"], "format": cfg.output.format, "pairs": cfg.pairs.path,
                             "model_id": card.model_id, "scores": score_kind(cfg.mining)}, storage)
    manifest.set("throughput", {"queries_per_s": round(pairs.num_rows / elapsed, 2) if elapsed else None,
                                "candidates_and_mine_s": round(elapsed, 3)})
    fnf = counts["false_negative_filter"]
    log.info("mined %d negatives for %d queries (%d short: %s); false-negative filter removed %d of %d (%.1f%%)",
             counts["negatives_out"], counts["queries_in"], counts["queries_short"],
             {k: v for k, v in counts["queries_short_by_reason"].items() if v}, fnf["removed"], fnf["considered"],
             100 * fnf["removed_share"])
    return counts
