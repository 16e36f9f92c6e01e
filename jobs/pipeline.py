"""Ray job driver for `medembed.jobs.pipeline` (see `medembed.jobs` for what it does).

Local:    python jobs/pipeline.py [--config NAME_OR_FILE] [--set key=value ...]
Cluster:  ray job submit --address http://HEAD:8265 --working-dir . -- \
              python jobs/pipeline.py --config my_pipeline.yaml
"""

import sys

from medembed.runtime.runner import main_for

if __name__ == "__main__":
    sys.exit(main_for("pipeline"))
