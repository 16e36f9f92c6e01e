"""Ray job: mine hard negatives for synthetic pairs and write (query, positive, negatives) triplets.

Local:    python jobs/mine_negatives.py --config jobs/configs/mine_negatives.yaml
Cluster:  ray job submit --address http://HEAD:8265 --working-dir . -- \
              python jobs/mine_negatives.py --config jobs/configs/mine_negatives.yaml \
              --set mining.num_actors=8 --set mining.num_gpus=1
"""

from __future__ import annotations

import argparse
import sys

from medembed.mining.config import MineNegativesJobConfig
from medembed.mining.pipeline import mine_negatives
from medembed.runner import add_config_args, run_job


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(p, "jobs/configs/mine_negatives.yaml")
    return run_job("mine_negatives", MineNegativesJobConfig, p.parse_args(argv), mine_negatives)


if __name__ == "__main__":
    sys.exit(main())
