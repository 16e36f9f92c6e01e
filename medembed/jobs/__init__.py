"""The job registry: one entry per job, naming its config class, its body and its shipped config.

A job body is ``body(cfg, manifest) -> counts``: the wiring of library stages for one run. The CLI
(``medembed <job>``) and the thin drivers in ``jobs/*.py`` (for ``ray job submit``) are both built
from this registry, so a job is added in one place. Bodies and configs are imported lazily, so
``medembed --help`` starts without Ray or torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Job:
    command: str  # CLI subcommand
    name: str  # manifest job name, run id prefix, driver file name (jobs/<name>.py)
    config: str  # "module:Class" of the pydantic job config
    body: str  # "module:function" of the job body
    default_config: str  # shipped config (medembed/configs/<name>.yaml)
    help: str
    description: str
    ray_train: bool = False  # runs Ray Train: a local Ray instance then starts the dashboard (its State API)

    def config_class(self) -> type:
        return _load(self.config)

    def body_function(self) -> Callable[..., dict[str, Any]]:
        return _load(self.body)


def _load(ref: str) -> Any:
    module, attr = ref.split(":")
    return getattr(importlib.import_module(module), attr)


JOBS: dict[str, Job] = {}


def register(job: Job) -> Job:
    if job.command in JOBS:
        raise ValueError(f"job {job.command!r} registered twice")
    JOBS[job.command] = job
    return job


def by_name(name: str) -> Job:
    """A job by CLI command (``embed``) or job name (``embed_corpus``)."""
    for job in JOBS.values():
        if name in (job.command, job.name):
            return job
    raise KeyError(f"unknown job {name!r}; jobs: {sorted(JOBS)}")


register(Job(
    "embed", "embed_corpus", "medembed.config:EmbedJobConfig", "medembed.jobs.embed_corpus:embed_corpus",
    "embed_local", "embed a corpus into a LanceDB table",
    "Read a corpus (JSONL/CSV/Parquet, local, s3:// or a HF dataset), chunk it with the model's tokenizer, embed "
    "every chunk on a Ray actor pool and write a LanceDB table with full-text (and, past store.ann_min_rows, ANN) "
    "indexes. Re-runs only embed new or changed documents. Bad rows go to <run_dir>/<run id>/quarantine/."))
register(Job(
    "generate-pairs", "generate_pairs", "medembed.synth.config:GeneratePairsJobConfig",
    "medembed.jobs.generate_pairs:generate_pairs", "generate_pairs",
    "synthetic (query, passage) pairs from clinical notes",
    "Shard notes across Ray actors and ask a generator for diverse queries (keyword, question, "
    "treatment/procedure/follow-up), each with the passage of the note that answers it. Backends: extractive "
    "(offline, no LLM; default), openai (any OpenAI-compatible endpoint; API key from the env variable named by "
    "synth.openai.api_key_env), vllm (ray.data.llm on GPUs). Outputs are validated (JSON, schema, relevance, "
    "grounding in the note, duplicates); every note ends with pairs or a recorded failure reason. Re-runs skip notes "
    "already done for the same generator, model and prompt version. Pairs: <synth.output_dir>/runs/<run id>/pairs/."))
register(Job(
    "mine-negatives", "mine_negatives", "medembed.mining.config:MineNegativesJobConfig",
    "medembed.jobs.mine_negatives:mine_negatives", "mine_negatives",
    "hard negatives for pairs -> (query, positive, negatives) triplets",
    "Embed the pairs' positive passages (plus, optionally, the chunks of a `medembed embed` table) into a LanceDB "
    "candidate table, retrieve top-k candidates per query on a Ray actor pool and keep negatives from the rank window "
    "[mining.min_rank, mining.max_rank), skipping the positive, passages of the query's note and candidates within "
    "the margin of the positive score. Writes Parquet triplets (output.format nested|flat) under "
    "output.dir/<run id>/triplets/."))
register(Job(
    "eval", "evaluate", "medembed.evaluation.config:EvaluateJobConfig", "medembed.jobs.evaluate:evaluate_models",
    "evaluate", "retrieval metrics of models on BEIR sets and the pairs dev split, compared",
    "Embed each retrieval set's corpus with each model on a Ray actor pool into a LanceDB table (one per dataset and "
    "model revision, reused when complete), encode the queries with the model's query prompt, retrieve top-k (exact "
    "or ANN) and score nDCG/MAP/Recall/Precision/MRR at k_values (trec_eval conventions). Writes one result JSON per "
    "model and dataset, comparison.md (deltas vs the first model) and a chart of the main metric under "
    "output.dir/<run id>/."))
register(Job(
    "train", "train", "medembed.training.config:TrainJobConfig", "medembed.jobs.train:train", "train",
    "contrastive fine-tuning on mined triplets (Ray Train, DDP)",
    "Split the triplets of a mine-negatives run by source note into train and dev, then fine-tune the base model on "
    "N Ray Train workers (DDP; CPU or one GPU each) with InfoNCE over in-batch and hard negatives (temperature "
    "train.temperature), batches free of shared positives and notes, AdamW with warmup + cosine, gradient clipping, "
    "checkpoints every train.checkpoint_every steps. A dead worker restarts from the latest checkpoint; the same "
    "output.run_name resumes a killed job. Optionally interpolates with the base weights (train.interpolate, picked "
    "by dev nDCG@10). Writes a sentence-transformers model with its prompts and model card to "
    "output.dir/<run id>/model/.", ray_train=True))
register(Job(
    "reembed", "reembed", "medembed.index.config:ReembedJobConfig", "medembed.jobs.reembed:reembed", "reembed",
    "nightly incremental re-embedding behind a serving name (atomic, one writer)",
    "Compare the corpus with the served table by document signature on Ray, embed only new and changed documents and "
    "commit adds and removals (changed and deleted documents) as ONE table version; with a newly promoted model, "
    "build that model's table, verify it (rows, ids, hashes, dimension, a sample search) and switch the serving name "
    "(sync.serving_name, default store.corpus_name) to it in one step (`medembed rollback` returns it). One writer "
    "per serving name (a lease with a heartbeat under <store.uri>/_medembed/leases/). Exit codes: 0 ok, 1 failed "
    "(what searches see is untouched), 2 bad config, 3 another writer holds the lease (after sync.lease_wait_s), "
    "4 finished but input was quarantined (no document deleted while a source or ids were lost)."))
register(Job(
    "pipeline", "pipeline", "medembed.pipeline.config:PipelineJobConfig", "medembed.jobs.pipeline:pipeline",
    "pipeline", "corpus -> pairs -> negatives -> train -> evaluate -> gate -> embed, stages reused",
    "Run generate-pairs, mine-negatives, train and eval as stages of one run (one Ray instance, sub-manifests "
    "<run id>/<stage>), promote the fine-tuned candidate only if it is not worse than the current model on the gate "
    "(gate.datasets, gate.metric, gate.tolerance; default the held-out pairs-dev notes), record the decision in "
    "output.dir/<run id>/promote/promoted.json and embed the corpus with the promoted model. A rerun reuses every "
    "stage whose config and inputs are unchanged (fingerprint in output.dir/<run id>/stages/<stage>/_SUCCESS.json) "
    "and redoes a stage whose output is incomplete, and everything after it.", ray_train=True))
