"""Ray job driver for `medembed.jobs.mine_negatives` (see `medembed.jobs` for what it does).

Local:    python jobs/mine_negatives.py [--config NAME_OR_FILE] [--set key=value ...]
Cluster:  ray job submit --address http://HEAD:8265 --working-dir . -- \
              python jobs/mine_negatives.py --set mining.num_actors=8 --set mining.num_gpus=1
"""

import sys

from medembed.runtime.runner import main_for

if __name__ == "__main__":
    sys.exit(main_for("mine_negatives"))
