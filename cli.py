"""Thin entry shim so `python cli.py --help` works from the repository root."""

import sys

from automtl.cli import app, main  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
