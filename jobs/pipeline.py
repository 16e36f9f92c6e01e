"""Ray job driver of `medembed pipeline`, the gated pipeline (body: `medembed.jobs.pipeline`).

Local:    python jobs/pipeline.py [--config NAME_OR_FILE] [--set key=value ...]
Cluster:  ray job submit --address http://HEAD:8265 --working-dir . -- python jobs/pipeline.py --config pipeline_cluster
"""

import sys

from medembed.app.runner import main_for

if __name__ == "__main__":
    sys.exit(main_for("pipeline"))
