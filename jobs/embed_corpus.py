"""DEPRECATED driver, kept for one release: use jobs/embed.py (the same job, `medembed embed`)."""

import sys

from medembed.app.runner import main_for

if __name__ == "__main__":
    sys.stderr.write("WARNING: jobs/embed_corpus.py is deprecated and will be removed in the next release; use jobs/embed.py\n")
    sys.exit(main_for("embed"))
