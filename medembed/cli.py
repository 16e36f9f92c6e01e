"""DEPRECATED location, kept for one release: the CLI is ``medembed.app.cli`` (console script ``medembed``)."""

import sys

from medembed.app.cli import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
