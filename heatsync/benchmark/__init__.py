"""heatsync.benchmark: controllers x tasks x scenarios x seeds, ranked, with resume.

Python API (``scripts/benchmark.py`` is the command line over :func:`main`)::

    import heatsync.benchmark as hb
    report = hb.run(tasks=["CoolingDispatch"], seeds=[0, 1], steps=120, out="results")
    report.rows          # the results table: one dict per controller, task, scenario, seed
    report.files         # benchmark.csv, BENCHMARK.md, plots/*.png
    hb.read_csv("results/benchmark.csv")

Modules, one concern each: :mod:`~heatsync.benchmark.plan` (configuration, the
controller registry, policy checks), :mod:`~heatsync.benchmark.cell` (one cell on the
batched env), :mod:`~heatsync.benchmark.store` (CSV, traces, the run manifest),
:mod:`~heatsync.benchmark.report` (BENCHMARK.md), :mod:`~heatsync.benchmark.scores`
(normalised scores and their rliable intervals), :mod:`~heatsync.benchmark.plots`,
:mod:`~heatsync.benchmark.run` (a whole run and its resume) and
:mod:`~heatsync.benchmark.cli`.
"""

from .cell import CellResult, run_cell, tuned_split
from .cli import build_parser, main
from .plan import (
    DEFAULT_SEEDS,
    DEFAULT_STEPS,
    OPT_IN,
    QUICK_SEEDS,
    QUICK_STEPS,
    BenchmarkConfig,
    BenchmarkError,
    Plan,
    default_registry,
    parse_seeds,
    resolve,
)
from .report import markdown, versus_table
from .run import BenchmarkReport, run
from .store import ID_COLUMNS, MANIFEST, RUN_COLUMNS, columns, read_csv, write_csv

__all__ = [
    "BenchmarkConfig", "BenchmarkError", "BenchmarkReport", "CellResult", "DEFAULT_SEEDS",
    "DEFAULT_STEPS", "ID_COLUMNS", "MANIFEST", "OPT_IN", "Plan", "QUICK_SEEDS", "QUICK_STEPS",
    "RUN_COLUMNS", "build_parser", "columns", "default_registry", "main", "markdown",
    "parse_seeds", "read_csv", "resolve", "run", "run_cell", "tuned_split", "versus_table",
    "write_csv",
]
