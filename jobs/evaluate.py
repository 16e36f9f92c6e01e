"""Ray job driver for `medembed.jobs.evaluate` (see `medembed.jobs` for what it does).

Local:    python jobs/evaluate.py [--config NAME_OR_FILE] [--set key=value ...]
Cluster:  ray job submit --address http://HEAD:8265 --working-dir . -- \
              python jobs/evaluate.py --set embed.num_actors=8 --set embed.num_gpus=1
"""

import sys

from medembed.runtime.runner import main_for

if __name__ == "__main__":
    sys.exit(main_for("evaluate"))
