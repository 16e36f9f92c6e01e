"""DEPRECATED driver, kept for one release: use jobs/reembed.py (the same job, `medembed reembed`)."""

import logging
import sys

from medembed.runtime.runner import main_for

if __name__ == "__main__":
    logging.getLogger("medembed").warning("jobs/nightly_reembed.py is deprecated and will be removed in the next release; "
                                          "use jobs/reembed.py")
    sys.exit(main_for("reembed"))
