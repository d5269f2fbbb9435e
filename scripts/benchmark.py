"""Benchmark controllers x tasks x scenarios x seeds; see ``--help``.

    python scripts/benchmark.py            # default subset: each task's default scenario
    python scripts/benchmark.py --full     # every scenario at its own episode length

The logic is the public package :mod:`heatsync.benchmark` (``heatsync.benchmark.run``).
"""

from heatsync.benchmark import main

if __name__ == "__main__":
    raise SystemExit(main())
