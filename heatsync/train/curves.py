"""Learning curves of JAX-trainer runs (``--algo ppo-jax``), with references run on the
very same evaluation episodes.

Each run's held-out evaluation (``seed_<k>/evaluations.npz``: every ``--eval-freq``
steps, the greedy policy on ``--eval-episodes`` episodes of the training scenario from
``--eval-seed`` on, seeds no training env draws) gives one curve per training seed. The
references are the benchmark's controllers on those same episodes, run through
:func:`heatsync.benchmark.run` into ``learning/<Task>-refs/`` (a benchmark folder of its
own: ``benchmark.csv``, ``BENCHMARK.md``; resumable): ``fixed``, the best rule-based
baseline there, and the oracle where its plans for those episodes exist (``--oracle``
computes them: minutes per episode).

Files (in ``--out``, each written atomically): ``learning/<Task>.csv`` (one row per run,
training seed and evaluation: env steps, mean and std over the episodes of the return,
and the means of ``cost_usd`` and ``violation_s``), ``plots/<Task>_learning.png``
(``-return``, ``cost_usd`` and time out of specification against env steps).

Usage::

    python scripts/train.py curves results/agents/ppo-jax-PowerSmoothing [RUN ...] [--out results]
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from heatsync._io import write_bytes_atomic, write_text_atomic

from .runs import read_run_config
from .schema import ConfigError

__all__ = ["read_curves", "references", "write_curves", "main", "CSV_COLUMNS"]

CSV_COLUMNS = ("run", "seed", "timesteps", "return_mean", "return_std", "cost_usd_mean",
               "violation_s_mean", "episodes")


def read_curves(run_dir: str | Path) -> dict:
    """A run's evaluations: ``{"config": ..., "seeds": [{"seed", "timesteps" (E,),
    "returns" (E, episodes), "cost_usd", "violation_s"}]}``. Raises :class:`ConfigError`
    for a directory that is not a JAX-trainer run with evaluations."""
    run_dir = Path(run_dir)
    cfg = read_run_config(run_dir)
    if cfg.get("algo") != "ppo-jax":
        raise ConfigError(f"{run_dir}: algo {cfg.get('algo')!r}; allowed: a ppo-jax run")
    seeds = []
    for k, seed in enumerate(cfg["seeds"]):
        f = run_dir / f"seed_{k}" / "evaluations.npz"
        if not f.is_file():
            raise ConfigError(f"{f}: missing (was the run trained with --eval-freq > 0?)")
        with np.load(f) as z:
            seeds.append({"seed": int(seed), "timesteps": np.asarray(z["timesteps"]),
                          **{key: np.asarray(z[key], float)
                             for key in ("returns", "cost_usd", "violation_s")}})
    return {"config": cfg, "seeds": seeds, "dir": run_dir}


def _eval_cell(cfg: dict) -> tuple[str, str, list[int], int | None]:
    """(task, scenario, eval seeds, steps) of a run's held-out evaluation."""
    from heatsync.envs import make_task

    args = cfg["args"]
    seeds = list(range(int(args["eval_seed"]), int(args["eval_seed"]) +
                       int(args["eval_episodes"])))
    kw = dict(cfg["hyperparams"].get("env_kwargs") or {})
    steps = kw.pop("episode__steps", None)
    if kw:
        raise ConfigError(f"env_kwargs {sorted(kw)}: the references run the plain scenario; "
                          "allowed: episode__steps only")
    return make_task(cfg["env_id"]).name, cfg["scenario"], seeds, steps


def references(cfg: dict, out: Path, oracle: bool = False, progress: bool = False,
               controllers: Sequence[str] | None = None) -> dict:
    """The reference controllers on a run's evaluation episodes: ``{controller: {"J",
    "cost_usd", "violation_s"}}`` (means over the episodes; ``J = -return``), with the
    best rule-based baseline's name under ``"_best"``. Computed by
    :func:`heatsync.benchmark.run` into ``out/learning/<Task>-refs`` (cells already there
    are read back). ``controllers``: the benchmark's names (default: every baseline of the
    task, and the oracle where its plans are stored or ``oracle`` is set)."""
    import heatsync.benchmark as hb
    from heatsync.benchmark.report import baseline_names
    from heatsync.benchmark.scores import best_baseline

    task, scenario, seeds, steps = _eval_cell(cfg)
    fields = dict(tasks=[task], scenarios=[scenario], seeds=seeds, steps=steps,
                  out=out / "learning" / f"{task}-refs", plots=False, resume=True,
                  command=f"heatsync.train.curves references of {task}")
    if controllers is not None:
        fields["controllers"] = list(controllers) + (["oracle"] if oracle else [])
    elif oracle:
        from heatsync.agents import BASELINES

        fields["controllers"] = [*BASELINES[task], "oracle"]
    report = hb.run(progress=progress, **fields)
    per: dict[str, list[dict]] = {}
    for r in report.rows:
        per.setdefault(r["controller"], []).append(r)
    refs = {c: {"J": -float(np.mean([r["return"] for r in rs])),
                "cost_usd": float(np.mean([r["cost_usd"] for r in rs])),
                "violation_s": float(np.mean([r["violation_s"] for r in rs]))}
            for c, rs in per.items()}
    refs["_best"] = best_baseline(task, per, baseline_names(task))
    return refs


def _csv_text(runs: Sequence[dict]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for run in runs:
        for s in run["seeds"]:
            for i, t in enumerate(s["timesteps"]):
                w.writerow([run["dir"].name, s["seed"], int(t), f"{np.mean(s['returns'][i]):.6g}",
                            f"{np.std(s['returns'][i]):.6g}",
                            f"{np.mean(s['cost_usd'][i]):.6g}",
                            f"{np.mean(s['violation_s'][i]):.6g}", len(s["returns"][i])])
    return buf.getvalue()


def _plot(task: str, scenario: str, runs: Sequence[dict], refs: dict) -> bytes:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    panels = (("J", "returns", "-return (USD, lower is better)", -1.0),
              ("cost_usd", "cost_usd", "cost_usd (USD)", 1.0),
              ("violation_s", "violation_s", "time out of specification (s)", 1.0))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    lines = [("fixed", "fixed", "0.4"), (refs.get("_best"), f"{refs.get('_best')} (best rule)",
                                         "tab:red"), ("oracle", "oracle", "k")]
    for ax, (ref_key, key, label, sign) in zip(axes, panels, strict=True):
        for run in runs:
            for s in run["seeds"]:
                y = sign * s[key].mean(axis=1)
                ax.plot(s["timesteps"], y, marker=".", lw=1.2,
                        label=f"{run['dir'].name} seed {s['seed']}")
        for name, lab, color in lines:
            if name and name in refs:
                ax.axhline(refs[name][ref_key], ls="--", color=color, lw=1.2, label=lab)
        if ref_key != "cost_usd":  # penalties span decades: linear near 0, log beyond
            ax.set_yscale("symlog", linthresh=max(1.0, abs(refs.get("fixed", {}).get(
                ref_key, 1.0))))
        ax.set_xlabel("env steps per training seed")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    n_ep = runs[0]["seeds"][0]["returns"].shape[1]
    oracle_note = "" if "oracle" in refs else " (no oracle line: no stored plans for them)"
    fig.suptitle(f"{task}: held-out evaluation on {scenario}, {n_ep} episodes; dashed: "
                 f"controllers on the same episodes{oracle_note}", fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def write_curves(run_dirs: Sequence[str | Path], out: str | Path = "results",
                 oracle: bool = False, progress: bool = False,
                 controllers: Sequence[str] | None = None) -> list[Path]:
    """Read the runs, compute their references and write the CSV and plot of each task
    (runs of one task share them). **Returns** the files written."""
    out = Path(out)
    runs = [read_curves(d) for d in run_dirs]
    by_task: dict[tuple, list[dict]] = {}
    for run in runs:
        task, scenario, seeds, steps = _eval_cell(run["config"])
        by_task.setdefault((task, scenario, tuple(seeds), steps), []).append(run)
    tasks = [k[0] for k in by_task]
    if len(set(tasks)) < len(tasks):
        raise ConfigError("runs of one task must share their evaluation episodes (scenario, "
                          "--eval-seed, --eval-episodes)")
    written = []
    for (task, scenario, _, _), group in by_task.items():
        refs = references(group[0]["config"], out, oracle=oracle, progress=progress,
                          controllers=controllers)
        p = out / "learning" / f"{task}.csv"
        write_text_atomic(p, _csv_text(group))
        q = out / "plots" / f"{task}_learning.png"
        write_bytes_atomic(q, _plot(task, scenario, group, refs))
        written += [p, q]
    return written


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python scripts/train.py curves",
                                 description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("runs", nargs="+", type=Path, help="ppo-jax run directories")
    ap.add_argument("--out", type=Path, default=Path("results"),
                    help="output folder (default: results)")
    ap.add_argument("--oracle", action="store_true",
                    help="compute the oracle on the evaluation episodes where its plans "
                         "are missing (minutes per episode)")
    ap.add_argument("--controllers", default=None, metavar="A,B",
                    help="reference controllers (default: every baseline of the task)")
    args = ap.parse_args(argv)
    from heatsync.benchmark import BenchmarkError

    ctrls = None if args.controllers is None else [c for c in args.controllers.split(",") if c]
    try:
        files = write_curves(args.runs, args.out, oracle=args.oracle, progress=True,
                             controllers=ctrls)
    except (ConfigError, BenchmarkError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print("wrote " + ", ".join(str(f) for f in files))
    return 0
