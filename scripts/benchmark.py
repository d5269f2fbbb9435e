"""Benchmark controllers x tasks x scenarios x seeds; see ``--help``.

    python scripts/benchmark.py            # default subset, about 3 min on 2 CPU cores
    python scripts/benchmark.py --full     # every scenario at its own episode length

The logic lives in :mod:`heatsync._benchmark`.
"""

from heatsync._benchmark import main

if __name__ == "__main__":
    raise SystemExit(main())
