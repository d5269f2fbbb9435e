"""Measure heatsync's speed on this machine and write results/PERF.md (``--quick``:
a smoke run into results/perf-quick/); see ``--help``.

The logic lives in :mod:`heatsync.perf`.
"""

from heatsync.perf.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
