"""`medembed generate-pairs`: registered by ``medembed.cli._register_optional``."""

from __future__ import annotations

import argparse

DEFAULT_CONFIG = "jobs/configs/generate_pairs.yaml"


def _cmd_generate(args: argparse.Namespace) -> int:
    from medembed.runner import run_job
    from medembed.synth.config import GeneratePairsJobConfig
    from medembed.synth.pipeline import generate_pairs

    return run_job("generate_pairs", GeneratePairsJobConfig, args, generate_pairs)


def register(sub, add_config_args) -> None:
    p = sub.add_parser(
        "generate-pairs", help="synthetic (query, passage) pairs from clinical notes",
        description="Shard notes across Ray actors and ask a generator for diverse queries (keyword, question, "
                    "treatment/procedure/follow-up), each with the passage of the note that answers it. Backends: "
                    "extractive (offline, no LLM; default), openai (any OpenAI-compatible endpoint; API key from the "
                    "env variable named by synth.openai.api_key_env), vllm (ray.data.llm on GPUs). Outputs are "
                    "validated (JSON, schema, relevance, grounding in the note, duplicates); every note ends with "
                    "pairs or a recorded failure reason. Re-runs skip notes already done for the same generator, "
                    "model and prompt version. Pairs: <synth.output_dir>/runs/<run id>/pairs/*.parquet.")
    add_config_args(p, DEFAULT_CONFIG)
    p.set_defaults(func=_cmd_generate)
