"""DEPRECATED driver, kept for one release: use jobs/reembed.py (the same job, `medembed reembed`)."""

import sys

from medembed.app.runner import main_for

if __name__ == "__main__":
    sys.stderr.write("WARNING: jobs/nightly_reembed.py is deprecated and will be removed in the next release; use jobs/reembed.py\n")
    sys.exit(main_for("reembed"))
