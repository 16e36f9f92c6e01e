"""Ray job driver of `medembed mine-negatives`, the mine-negatives job: hard negatives -> triplets (body: `medembed.jobs.mine_negatives`).

Local:    python jobs/mine_negatives.py [--config NAME_OR_FILE] [--set key=value ...]
Cluster:  ray job submit --address http://HEAD:8265 --working-dir . -- python jobs/mine_negatives.py --config mine_negatives_cluster
"""

import sys

from medembed.app.runner import main_for

if __name__ == "__main__":
    sys.exit(main_for("mine_negatives"))
