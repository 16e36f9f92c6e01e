"""Ray job driver for `medembed.jobs.reembed` (see `medembed.jobs` for what it does): the nightly re-embedding.

Local:    python jobs/nightly_reembed.py [--config NAME_OR_FILE] [--set key=value ...]
Cluster:  ray job submit --address http://HEAD:8265 --working-dir . -- \
              python jobs/nightly_reembed.py --config reembed --set input.uri=s3://... --set store.uri=s3://...
Exit codes: 0 ok, 1 failed, 2 bad config, 3 another writer holds the lease, 4 finished with quarantined input.
"""

import sys

from medembed.runtime.runner import main_for

if __name__ == "__main__":
    sys.exit(main_for("reembed"))
