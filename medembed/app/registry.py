"""The job registry: the one list of jobs, each naming its config class, its body and its shipped config.

A job has ONE name (``Job.name``: ``embed``, ``reembed``, ``generate_pairs``, ``mine_negatives``, ``evaluate``,
``train``, ``pipeline``), used everywhere: the job body ``medembed/jobs/<name>.py``, the driver ``jobs/<name>.py``
(for ``ray job submit``), the default config ``medembed/configs/<name>.yaml``, the KubeRay file
``cluster/kuberay/rayjob-<command>.yaml``, the manifest's job name and the run id prefix (``<name>-<UTC time>-<hex>``).
The CLI writes it with ``-`` for ``_`` (``medembed generate-pairs``, ``Job.command``) and accepts both spellings.
Old names (``embed_corpus``, ``eval``, ``nightly_reembed``) still resolve for one release, with a deprecation
warning (``by_name``).

A job body is ``body(cfg, manifest) -> counts``: the wiring of library stages for one run. Bodies and configs are
imported lazily, so ``medembed --help`` starts without Ray or torch.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    name: str  # THE job name: body module, driver jobs/<name>.py, default config, manifest job name, run id prefix
    config: str  # "module:Class" of the pydantic job config
    body: str  # "module:function" of the job body
    help: str
    description: str
    ray_train: bool = False  # runs Ray Train: a local Ray instance then starts the dashboard (its State API)

    @property
    def command(self) -> str:
        """The CLI spelling of the name: ``generate-pairs`` for ``generate_pairs``."""
        return command_of(self.name)

    @property
    def default_config(self) -> str:
        """The shipped config it runs by default: ``medembed/configs/<name>.yaml``."""
        return self.name

    @property
    def driver(self) -> str:
        """Its driver for ``ray job submit``, relative to the repository root."""
        return f"jobs/{self.name}.py"

    def config_class(self) -> type:
        return _load(self.config)

    def body_function(self) -> Callable[..., dict[str, Any]]:
        return _load(self.body)


def _load(ref: str) -> Any:
    module, attr = ref.split(":")
    return getattr(importlib.import_module(module), attr)


def command_of(name: str) -> str:
    return name.replace("_", "-")


JOBS: dict[str, Job] = {}  # by name
DEPRECATED_NAMES = {"eval": "evaluate", "embed_corpus": "embed", "nightly_reembed": "reembed"}  # old -> new, one release


def register(job: Job) -> Job:
    if job.name in JOBS:
        raise ValueError(f"job {job.name!r} registered twice")
    JOBS[job.name] = job
    return job


def by_name(name: str) -> Job:
    """A job by its name, in either spelling (``generate_pairs`` or ``generate-pairs``); an old name
    (``eval``, ``embed_corpus``, ``nightly_reembed``) with a deprecation warning."""
    key = name.replace("-", "_")
    if key in JOBS:
        return JOBS[key]
    if key in DEPRECATED_NAMES:
        new = DEPRECATED_NAMES[key]
        log.warning("job name %r is deprecated and will be removed in the next release; use %r", name, command_of(new))
        return JOBS[new]
    raise KeyError(f"unknown job {name!r}; jobs: {sorted(command_of(n) for n in JOBS)}")


register(Job(
    "embed", "medembed.config:EmbedJobConfig", "medembed.jobs.embed:embed", "embed a corpus into a LanceDB table",
    "Read a corpus (JSONL/CSV/Parquet, local, s3:// or a HF dataset), chunk it with the model's tokenizer, embed "
    "every chunk on a Ray actor pool and write a LanceDB table with full-text (and, past store.ann_min_rows, ANN) "
    "indexes. Re-runs only embed new or changed documents. Bad rows go to <run_dir>/<run id>/quarantine/."))
register(Job(
    "generate_pairs", "medembed.synth.config:GeneratePairsJobConfig", "medembed.jobs.generate_pairs:generate_pairs",
    "synthetic (query, passage) pairs from clinical notes",
    "Shard notes across Ray actors and ask a generator for diverse queries (keyword, question, "
    "treatment/procedure/follow-up), each with the passage of the note that answers it. Backends: extractive "
    "(offline, no LLM; default), openai (any OpenAI-compatible endpoint; API key from the env variable named by "
    "synth.openai.api_key_env), vllm (ray.data.llm on GPUs). Outputs are validated (JSON, schema, relevance, "
    "grounding in the note, duplicates); every note ends with pairs or a recorded failure reason. Re-runs skip notes "
    "already done for the same generator, model and prompt version. Pairs: <synth.output_dir>/<run id>/pairs/."))
register(Job(
    "mine_negatives", "medembed.mining.config:MineNegativesJobConfig", "medembed.jobs.mine_negatives:mine_negatives",
    "hard negatives for pairs -> (query, positive, negatives) triplets",
    "Embed the pairs' positive passages (plus, optionally, the chunks of a `medembed embed` table) into a LanceDB "
    "candidate table, retrieve top-k candidates per query on a Ray actor pool and keep negatives from the rank window "
    "[mining.min_rank, mining.max_rank), skipping the positive, passages of the query's note and candidates within "
    "the margin of the positive score. Writes Parquet triplets (output.format nested|flat) under "
    "output.dir/<run id>/triplets/."))
register(Job(
    "evaluate", "medembed.evaluation.config:EvaluateJobConfig", "medembed.jobs.evaluate:evaluate",
    "retrieval metrics of models on BEIR sets and the pairs dev split, compared",
    "Embed each retrieval set's corpus with each model on a Ray actor pool into a LanceDB table (one per dataset and "
    "model revision, reused when complete), encode the queries with the model's query prompt, retrieve top-k (exact "
    "or ANN) and score nDCG/MAP/Recall/Precision/MRR at k_values (trec_eval conventions). Writes one result JSON per "
    "model and dataset, comparison.md (deltas vs the first model) and a chart of the main metric under "
    "output.dir/<run id>/."))
register(Job(
    "train", "medembed.training.config:TrainJobConfig", "medembed.jobs.train:train",
    "contrastive fine-tuning on mined triplets (Ray Train, DDP)",
    "Split the triplets of a mine-negatives run by source note into train and dev, then fine-tune the base model on "
    "N Ray Train workers (DDP; CPU or one GPU each) with InfoNCE over in-batch and hard negatives (temperature "
    "train.temperature), batches free of shared positives and notes, AdamW with warmup + cosine, gradient clipping, "
    "checkpoints every train.checkpoint_every steps. A dead worker restarts from the latest checkpoint; the same "
    "output.run_name resumes a killed job. Optionally interpolates with the base weights (train.interpolate, picked "
    "by dev nDCG@10). Writes a sentence-transformers model with its prompts and model card to "
    "output.dir/<run id>/model/.", ray_train=True))
register(Job(
    "reembed", "medembed.index.config:ReembedJobConfig", "medembed.jobs.reembed:reembed",
    "nightly incremental re-embedding behind a serving name (atomic, one writer)",
    "Compare the corpus with the served table by document signature on Ray, embed only new and changed documents and "
    "commit adds and removals (changed and deleted documents) as ONE table version; with a newly promoted model, "
    "build that model's table, verify it (rows, ids, hashes, dimension, a sample search) and switch the serving name "
    "(sync.serving_name, default store.corpus_name) to it in one step (`medembed rollback` returns it). One writer "
    "per serving name (a lease with a heartbeat under <store.uri>/_medembed/leases/). Exit codes: 0 ok, 1 failed "
    "(what searches see is untouched), 2 bad config, 3 another writer holds the lease (after sync.lease_wait_s), "
    "4 finished but input was quarantined (no document deleted while a source or ids were lost)."))
register(Job(
    "pipeline", "medembed.pipeline.config:PipelineJobConfig", "medembed.jobs.pipeline:pipeline",
    "corpus -> pairs -> negatives -> train -> evaluate -> gate -> embed, stages reused",
    "Run generate-pairs, mine-negatives, train and eval as stages of one run (one Ray instance, sub-manifests "
    "<run id>/<stage>), promote the fine-tuned candidate only if it is not worse than the current model on the gate "
    "(gate.datasets, gate.metric, gate.tolerance; default the held-out pairs-dev notes), record the decision in "
    "output.dir/<run id>/promote/promoted.json and embed the corpus with the promoted model. A rerun reuses every "
    "stage whose config and inputs are unchanged (fingerprint in output.dir/<run id>/stages/<stage>/_SUCCESS.json) "
    "and redoes a stage whose output is incomplete, and everything after it.", ray_train=True))
