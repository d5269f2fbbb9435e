"""The command line (``python scripts/perf.py``): build the probes for the run's
settings, compile them all (the warm-up), measure each alone in the report's order,
render and write the report. See :mod:`heatsync.perf` for what is measured."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from heatsync._io import write_text_atomic

from . import __doc__ as PACKAGE_DOC
from .breakdown import Breakdown
from .envs import CompileSplit, EnvLatency, StepAnatomy, Untuned
from .grad import GradCost
from .plant import Hall, PlantStepCost, PlantThroughput, Roof, ShardedThroughput
from .report import render
from .runner import TASKS, loadavg, machine, measure, settings, warm_up
from .train import TrainingThroughput
from .vector import VecThroughput

__all__ = ["FULL_OUT", "QUICK_OUT", "parse_args", "probes", "run", "main"]

#: where a full run writes its report (the committed one)
FULL_OUT = Path("results/PERF.md")
#: where a ``--quick`` run writes its report unless ``--out`` says otherwise (git-ignored)
QUICK_OUT = Path("results/perf-quick/PERF.md")


def parse_args(argv=None) -> argparse.Namespace:
    """The arguments, with ``out`` resolved (:data:`FULL_OUT` or, with ``--quick``,
    :data:`QUICK_OUT`, unless ``--out`` is given)."""
    ap = argparse.ArgumentParser(prog="python scripts/perf.py", description=PACKAGE_DOC,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="smoke run of every in-process code path: tiny step counts, 3 "
                         "repeats, batches 1 and 64, a 200-rack hall, Env.step and the vector "
                         "env (N = 64) of one task, no gradient, no subprocess probes but "
                         "the training throughput's, 2 "
                         "compiles at a time; figures are noisy. Writes to "
                         f"{QUICK_OUT} (git-ignored), not {FULL_OUT}, unless --out is given")
    ap.add_argument("--out", type=Path, default=None,
                    help="where to write the markdown report, written atomically (default: "
                         f"{FULL_OUT}, or {QUICK_OUT} with --quick)")
    ap.add_argument("--repeats", type=int, default=None,
                    help="timed repeats (median) of each rollout and vector-env block "
                         "(default 5, or 3 with --quick)")
    ap.add_argument("--jobs", type=int, default=None,
                    help="programs compiled at a time in the warm-up phase (default 1, or 2 "
                         "with --quick); more than 1 is faster on several cores but inflates "
                         "the compile-time figures when the cores are busy")
    ap.add_argument("--grad-steps", type=int, default=None,
                    help="control intervals (1 s each) of the differentiated rollout "
                         "(default 3600 = 1 h; --quick skips the gradient unless this is "
                         "given)")
    args = ap.parse_args(argv)
    for name in ("repeats", "jobs", "grad_steps"):
        val = getattr(args, name)
        if val is not None and val < 1:
            ap.error(f"--{name.replace('_', '-')}: expected a positive int, got {val}")
    if args.out is None:
        args.out = QUICK_OUT if args.quick else FULL_OUT
    return args


def probes(s: dict) -> dict:
    """Every probe of a run with settings ``s``, by its place in the results (a list
    for the rows of one table; ``None`` where the run skips it)."""
    reps, quick = s["repeats"], s["quick"]
    big = max(s["batches"])
    return {
        "plant": [PlantThroughput(b, s["plant_steps"](b), reps) for b in s["batches"]],
        "sharded": None if quick else ShardedThroughput(big, s["plant_steps"](big), reps),
        "hall": Hall(s["hall_racks"], s["hall_steps"], reps),
        "hall_one_job": Hall(s["hall_racks"], s["hall_steps"], reps,
                             racks_per_job=s["hall_racks"]),
        "step_cost": PlantStepCost(),
        "latency": [EnvLatency(t, s["latency_steps"], s["latency_warmup"])
                    for t in s["latency_tasks"]],
        "vec": [VecThroughput(t, n, s["vec_block_steps"], reps)
                for t in s["vec_tasks"] for n in s["vec_n"]],
        "anatomy": StepAnatomy(TASKS[0], s["anatomy_calls"]),
        "split": None if quick else CompileSplit(TASKS[-1], max(s["vec_n"])),
        "untuned": None if quick else Untuned(TASKS[0], s["anatomy_calls"], s["plant_steps"](1)),
        "roof": Roof(),
        "breakdown": None if quick else Breakdown(big, s["plant_steps"](big), s["hall_racks"],
                                                  s["hall_steps"], TASKS[-1], max(s["vec_n"])),
        "grad": GradCost(s["grad_steps"], reps) if s["grad_steps"] > 0 else None,
        "train": TrainingThroughput(TASKS[0], reps, s["train"],
                                    {"updates_per_chunk": 4, **s["train"], "n_steps": 10},
                                    s["sb3_updates"]),
    }


def run(s: dict) -> tuple[dict, float]:
    """Warm up every probe, then measure each alone, in the report's order.
    **Returns** ``(results, warm-up seconds)``."""
    ps = probes(s)
    load0 = loadavg()
    every = [p for v in ps.values() for p in (v if isinstance(v, list) else [v])
             if p is not None]
    t_warm = warm_up(every, s["jobs"])
    r = {"machine": machine(), "quick": s["quick"]}
    for key, v in ps.items():
        r[key] = [measure(p) for p in v] if isinstance(v, list) else measure(v)
    r["load"] = (load0, loadavg())
    return r, t_warm


def main(argv=None) -> int:
    args = parse_args(argv)
    s = settings(args.quick, args.repeats, args.jobs, args.grad_steps)
    t_start = time.perf_counter()
    r, t_warm = run(s)
    text = render(r, s, time.perf_counter() - t_start)
    write_text_atomic(args.out, text)
    print(text)
    print(f"wrote {args.out} (warm-up {t_warm:.0f} s, total "
          f"{time.perf_counter() - t_start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
