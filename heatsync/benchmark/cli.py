"""The command line of ``scripts/benchmark.py`` (see ``--help``)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from heatsync.envs import task_names

from .plan import (
    QUICK_STEPS,
    BenchmarkConfig,
    BenchmarkError,
    parse_seeds,
)
from .run import run

__all__ = ["build_parser", "main", "enable_jax_cache"]

EPILOG = """\
Defaults. With no arguments: every baseline of each task on the task's held-out
test distribution (<Task>-test), seeds 0-15, each scenario's own episode length
(see README for measured wall times). --full: the test distribution and every
bundled fixed scenario. --quick: seeds 0-1, %(quick_steps)d steps. Explicit
--scenarios, --seeds and --steps override the mode.

Files (in --out, each written atomically): benchmark.csv (one row per
controller, task, scenario, seed: every KPI of KPI_DOC, the episode return,
steps run, wall time), BENCHMARK.md (ranked mean ± std tables), plots/*.png,
traces/ (per-step series of each cell's first seed, for the plots).

Resume. Interrupt at any time and run the same command again: the run's
manifest (.benchmark-run.json, removed at a clean end) tells it which cells the
interrupted run finished; those are read from benchmark.csv, not recomputed,
and a cut-off last line is dropped. Without a manifest every selected cell is
computed; --resume skips every cell benchmark.csv already holds.

Your policy. --policy my_pkg.my_mod:MyPolicy (a policy object, a class or a
factory called with the JaxVectorEnv: it must have act(obs) for a batch
(N, obs_dim); reset(seed) and act_state(obs, env_state, params) are optional;
a tuned_on attribute {scenarios: [...], seeds: [...]} puts its tuned rows in
separate tables). It runs on every selected task whose spaces it fits, or on
--task only.

Examples:
  python scripts/benchmark.py
  python scripts/benchmark.py --full
  python scripts/benchmark.py --tasks CoolingDispatch --scenarios chiller-trip,heatwave
  python scripts/benchmark.py --policy my_mod:MyPolicy --task PowerSmoothing --controllers none
"""


def _csv_list(text: str) -> list[str]:
    return [s for s in (p.strip() for p in text.split(",")) if s]


def build_parser(prog: str = "scripts/benchmark.py") -> argparse.ArgumentParser:
    """The argument parser of ``scripts/benchmark.py``."""
    ap = argparse.ArgumentParser(
        prog=prog, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Benchmark controllers x tasks x scenarios x seeds on heatsync's batched "
                    "envs; write results/benchmark.csv, results/BENCHMARK.md and plots; "
                    "resume an interrupted run.",
        epilog=EPILOG % {"quick_steps": QUICK_STEPS})
    ap.add_argument("--controllers", type=_csv_list, default=None, metavar="A,B",
                    help="controllers to run, comma-separated (names from "
                         "heatsync.agents.BASELINES, plus the gradient MPC 'mpc-persistence' "
                         "and 'mpc-perfect', which run only when named, and 'oracle', the "
                         "perfect-foresight bound, which runs by default where its stored "
                         "plans (configs/oracle) cover the cells and computes missing ones "
                         "when named; default: every baseline of each task; 'none': only "
                         "--policy)")
    ap.add_argument("--tasks", type=_csv_list, default=None, metavar="T1,T2",
                    help=f"tasks, names or env ids (default: {', '.join(task_names())})")
    ap.add_argument("--scenarios", type=_csv_list, default=None, metavar="S1,S2",
                    help="scenario names or YAML paths, run on every task (default: each "
                         "task's test distribution; --full: it and every fixed scenario; "
                         "'all': every bundled scenario)")
    ap.add_argument("--seeds", default=None, metavar="SEEDS",
                    help="seeds, e.g. '0-15' or '0,3,7' (default 0-15; --quick 0-1)")
    ap.add_argument("--steps", type=int, default=None,
                    help="episode length in control intervals (default: each scenario's "
                         f"own; --quick {QUICK_STEPS})")
    ap.add_argument("--policy", action="append", default=[], metavar="MODULE:ATTR",
                    help="add a policy (repeatable): an object with act(obs), a class or a "
                         "factory(env); runs on every task whose spaces it fits")
    ap.add_argument("--task", default=None, metavar="TASK",
                    help="run the --policy policies on this task only (error if they do "
                         "not fit)")
    ap.add_argument("--out", type=Path, default=Path("results"),
                    help="output folder (default: results)")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true",
                      help=f"smoke run: seeds 0-1, {QUICK_STEPS} steps, default scenarios")
    mode.add_argument("--full", action="store_true",
                      help="every bundled scenario at its own episode length")
    ap.add_argument("--resume", action="store_true",
                    help="skip every cell whose rows benchmark.csv already holds (an "
                         "interrupted run resumes without it, from its manifest)")
    ap.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    ap.add_argument("--jit", action="store_true",
                    help="run controllers that have a JAX policy as one jitted scan per "
                         "cell (same rows; default: the Python step loop, faster while "
                         "each controller compiles its own scan)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    ap.add_argument("--jax-cache", default=None, metavar="DIR",
                    help="persistent JAX compilation cache, so a resumed or repeated run "
                         "skips most compile time (default: ~/.cache/heatsync/jax; "
                         "'none' disables)")
    return ap


def enable_jax_cache(where: str | None) -> None:
    """Point JAX's persistent compilation cache at ``where`` (default
    ``~/.cache/heatsync/jax``; ``none`` disables it)."""
    if where is not None and where.lower() in ("none", "off", ""):
        return
    import jax

    path = Path(where) if where else Path(os.environ.get(
        "XDG_CACHE_HOME", Path.home() / ".cache")) / "heatsync" / "jax"
    try:
        path.mkdir(parents=True, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", str(path))
    except (OSError, AttributeError):  # read-only home, an old JAX: run without
        pass


def main(argv: Sequence[str] | None = None, *, registry: dict | None = None,
         prog: str = "scripts/benchmark.py") -> int:
    """Command line (see ``--help``). Returns the exit status: 0, or 2 for bad arguments,
    an unloadable policy or an incompatible CSV."""
    from heatsync.agents import PolicyError
    from heatsync.physics import ScenarioError, list_scenarios

    ap = build_parser(prog)
    args = ap.parse_args(argv)
    argv_list = list(sys.argv[1:] if argv is None else argv)
    controllers = args.controllers
    if controllers is not None and [c.lower() for c in controllers] == ["none"]:
        controllers = []
    scenarios = args.scenarios
    if scenarios is not None and [s.lower() for s in scenarios] == ["all"]:
        scenarios = list_scenarios()
    cfg = BenchmarkConfig(
        controllers=controllers, tasks=args.tasks, scenarios=scenarios,
        seeds=args.seeds, steps=args.steps, policies=args.policy, policy_task=args.task,
        out=args.out, quick=args.quick, full=args.full, plots=not args.no_plots,
        jit=args.jit, resume=args.resume, command=" ".join(["python", prog, *argv_list]))
    enable_jax_cache(args.jax_cache)
    try:
        if cfg.seeds is not None:
            cfg.seeds = parse_seeds(cfg.seeds)
        report = run(cfg, registry=registry, progress=not args.no_progress)
    except (BenchmarkError, PolicyError, ScenarioError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\ninterrupted: finished cells are in {cfg.out / 'benchmark.csv'}; run the "
              "same command again to resume", file=sys.stderr)
        return 130
    print(report.ranked)
    print(f"{len(report.computed)} cell(s) computed, {len(report.skipped)} resumed, "
          f"{report.wall_s:.0f} s; wrote " + ", ".join(str(p) for p in report.files))
    return 0
