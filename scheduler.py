"""Procfile entry point: `python scheduler.py` (same as `jobctl scheduler`)."""

import sys

from jobs.cli import main

if __name__ == "__main__":
    main(["scheduler", *sys.argv[1:]])
