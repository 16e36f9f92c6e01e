"""DEPRECATED driver, kept for one release: use jobs/embed.py (the same job, `medembed embed`)."""

import logging
import sys

from medembed.runtime.runner import main_for

if __name__ == "__main__":
    logging.getLogger("medembed").warning("jobs/embed_corpus.py is deprecated and will be removed in the next release; "
                                          "use jobs/embed.py")
    sys.exit(main_for("embed"))
