"""Ray job: synthetic (query, passage) pairs from clinical notes.

Local:    python jobs/generate_pairs.py --config jobs/configs/generate_pairs.yaml
Cluster:  ray job submit --address http://HEAD:8265 --working-dir . -- \
              python jobs/generate_pairs.py --config jobs/configs/generate_pairs_pmc_patients.yaml \
              --set synth.backend=openai --set synth.openai.base_url=http://vllm:8000/v1
"""

from __future__ import annotations

import argparse
import sys

from medembed.runner import add_config_args, run_job
from medembed.synth.config import GeneratePairsJobConfig
from medembed.synth.pipeline import generate_pairs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(p, "jobs/configs/generate_pairs.yaml")
    return run_job("generate_pairs", GeneratePairsJobConfig, p.parse_args(argv), generate_pairs)


if __name__ == "__main__":
    sys.exit(main())
