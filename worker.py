"""Procfile entry point: `python worker.py [--queues ...] [--concurrency N] [--burst]` (same as `jobctl worker`)."""

import sys

from jobs.cli import main

if __name__ == "__main__":
    main(["worker", *sys.argv[1:]])
