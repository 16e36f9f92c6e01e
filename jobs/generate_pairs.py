"""Ray job driver of `medembed generate-pairs`: synthetic (query, passage) pairs (body: `medembed.jobs.generate_pairs`).

Local:    python jobs/generate_pairs.py [--config NAME_OR_FILE] [--set key=value ...]
Cluster:  ray job submit --address http://HEAD:8265 --working-dir . -- \
              python jobs/generate_pairs.py --config generate_pairs_cluster
"""

import sys

from medembed.app.runner import main_for

if __name__ == "__main__":
    sys.exit(main_for("generate_pairs"))
