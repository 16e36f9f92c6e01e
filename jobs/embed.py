"""Ray job driver of `medembed embed`, the embed job: corpus -> chunks -> vectors -> LanceDB table (body: `medembed.jobs.embed`).

Local:    python jobs/embed.py [--config NAME_OR_FILE] [--set key=value ...]
Cluster:  ray job submit --address http://HEAD:8265 --working-dir . -- python jobs/embed.py --config embed_cluster
"""

import sys

from medembed.app.runner import main_for

if __name__ == "__main__":
    sys.exit(main_for("embed"))
