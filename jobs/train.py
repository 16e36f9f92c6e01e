"""Ray job driver for `medembed.jobs.train` (see `medembed.jobs` for what it does).

Local:    python jobs/train.py --config train --set triplets.path=./output/triplets/<run id>/triplets
Cluster:  ray job submit --address http://HEAD:8265 --working-dir . -- \
              python jobs/train.py --set train.num_workers=8 --set train.use_gpu=true \
              --set output.dir=/mnt/shared/models --set output.run_name=ft-1
Resume:   run the same command with the same output.run_name: training continues from its latest checkpoint.
"""

import sys

from medembed.runtime.runner import main_for

if __name__ == "__main__":
    sys.exit(main_for("train"))
