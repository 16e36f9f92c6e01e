"""Ray job driver of `medembed train`, contrastive fine-tuning (body: `medembed.jobs.train`).

Local:    python jobs/train.py [--config NAME_OR_FILE] [--set key=value ...]
Cluster:  ray job submit --address http://HEAD:8265 --working-dir . -- python jobs/train.py --config train_cluster
Resume:   run the same command with the same output.run_name: training continues from its latest checkpoint.
"""

import sys

from medembed.app.runner import main_for

if __name__ == "__main__":
    sys.exit(main_for("train"))
