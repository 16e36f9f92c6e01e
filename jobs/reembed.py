"""Ray job driver of `medembed reembed`, the nightly re-embedding (body: `medembed.jobs.reembed`).

Local:    python jobs/reembed.py [--config NAME_OR_FILE] [--set key=value ...]
Cluster:  ray job submit --address http://HEAD:8265 --working-dir . -- python jobs/reembed.py --config reembed_cluster
Exit codes: 0 ok, 1 failed, 2 bad config, 3 another writer holds the lease, 4 finished with quarantined input.
"""

import sys

from medembed.app.runner import main_for

if __name__ == "__main__":
    sys.exit(main_for("reembed"))
