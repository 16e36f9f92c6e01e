"""`medembed mine-negatives`: registered by ``medembed.cli._register_optional``."""

from __future__ import annotations

import argparse

DEFAULT_CONFIG = "jobs/configs/mine_negatives.yaml"


def _cmd_mine(args: argparse.Namespace) -> int:
    from medembed.mining.config import MineNegativesJobConfig
    from medembed.mining.pipeline import mine_negatives
    from medembed.runner import run_job

    return run_job("mine_negatives", MineNegativesJobConfig, args, mine_negatives)


def register(sub, add_config_args) -> None:
    p = sub.add_parser(
        "mine-negatives", help="hard negatives for pairs -> (query, positive, negatives) triplets",
        description="Embed the pairs' positive passages (plus, optionally, the chunks of a `medembed embed` table) "
                    "into a LanceDB candidate table, retrieve top-k candidates per query on a Ray actor pool and keep "
                    "negatives from the rank window [mining.min_rank, mining.max_rank), skipping the positive, "
                    "passages of the query's note and candidates within the margin of the positive score. Writes "
                    "Parquet triplets (output.format nested|flat) under output.dir/<run id>/triplets/.")
    add_config_args(p, DEFAULT_CONFIG)
    p.set_defaults(func=_cmd_mine)
