"""Ray job driver of `medembed evaluate`, the evaluate job: retrieval metrics of models compared (body: `medembed.jobs.evaluate`).

Local:    python jobs/evaluate.py [--config NAME_OR_FILE] [--set key=value ...]
Cluster:  ray job submit --address http://HEAD:8265 --working-dir . -- python jobs/evaluate.py --config evaluate_cluster
"""

import sys

from medembed.app.runner import main_for

if __name__ == "__main__":
    sys.exit(main_for("evaluate"))
