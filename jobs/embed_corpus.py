"""Ray job driver for `medembed.jobs.embed_corpus` (see `medembed.jobs` for what it does).

Local:    python jobs/embed_corpus.py [--config NAME_OR_FILE] [--set key=value ...]
Cluster:  ray job submit --address http://HEAD:8265 --working-dir . -- \
              python jobs/embed_corpus.py --config embed_cluster
"""

import sys

from medembed.runtime.runner import main_for

if __name__ == "__main__":
    sys.exit(main_for("embed_corpus"))
