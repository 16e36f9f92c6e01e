"""Ray job: embed a corpus into a LanceDB table.

Local:    python jobs/embed_corpus.py --config jobs/configs/embed_local.yaml
Cluster:  ray job submit --address http://HEAD:8265 --working-dir . -- \
              python jobs/embed_corpus.py --config jobs/configs/embed_cluster.yaml
"""

from __future__ import annotations

import argparse
import sys

from medembed.config import EmbedJobConfig
from medembed.pipeline import embed_corpus
from medembed.runner import add_config_args, run_job


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(p, "jobs/configs/embed_local.yaml")
    return run_job("embed_corpus", EmbedJobConfig, p.parse_args(argv), embed_corpus)


if __name__ == "__main__":
    sys.exit(main())
