"""Train a stable-baselines3 agent on a heatsync task: ``python scripts/train.py --help``.

A thin command line over :mod:`heatsync.train` (``heatsync.train.cli``; from Python,
``heatsync.train.run(heatsync.train.TrainConfig(...))``).
"""

import sys

from heatsync.train.cli import console

if __name__ == "__main__":
    sys.exit(console())
