"""Grid search of a baseline's constants in one batched rollout.

Every setting of the grid gets its own env in one :class:`JaxVectorEnv` (the
baselines accept constants as arrays with one value per env), for each
tuning seed, so a whole grid costs one compile and one episode of batched
steps. The objective is the mean reward per step (the task's reward with the
scenario's weights), averaged over seeds and scenarios; constraints reject
settings. Tuning seeds start at 100 so that the benchmark's seeds 0-4 stay
held out.

``python -m heatsync.agents.baseline_tuning thermostat`` repeats the search
recorded under ``tuned_on`` in ``configs/controllers.yaml`` (task, scenarios,
seeds, steps, grid, constraints) and prints the table, best first.
Constraints: ``throttled_gpu_s: x`` (total over the episode at most x),
``t_junction_max_c: x`` (hottest junction at most x), ``ramp_max_w_per_s:
limit`` (largest grid ramp after the warm-up at most the scenario's limit).
"""

from __future__ import annotations

import argparse
import functools
import itertools
import time

import numpy as np
from gymnasium.vector import AutoresetMode

from heatsync.envs import JaxVectorEnv, make_task

from .baseline_common import controller_config

__all__ = ["grid_search", "tune", "main"]

#: per-step info entries summarized for the constraints
CONSTRAINT_KEYS = ("throttled_gpu_s", "t_junction_max_c", "ramp_max_w_per_s")


def grid_search(factory, task: str, grid: dict, *, scenario=None, seeds=(100, 101),
                steps: int = 600, warmup: int = 60, info_keys=(), **overrides):
    """Evaluate every combination of ``grid`` over ``seeds`` in one batched rollout.

    **Arguments**: ``factory(env, **constants)`` builds the controller;
    ``grid`` maps constant names to lists of values; ``steps`` per episode;
    ``warmup`` steps excluded from the ``*_after_warmup`` maxima; ``info_keys``
    per-step info entries to summarize (mean over steps and, after the
    warm-up, max); ``overrides`` go to the env (``queue=...`` and scenario
    overrides).

    Grid values that are strings (component choices of the Facility
    controller) cannot vary across the envs of one batch: each of their
    combinations gets its own batched rollout over the numeric grid.

    **Returns**: list of dicts (one per setting: the constants, ``reward``
    mean per step over seeds, ``reward_std`` over seeds, and the summaries),
    best reward first.
    """
    cat = [k for k in grid if any(isinstance(v, str) for v in grid[k])]
    if cat:
        rows = []
        numeric = {k: v for k, v in grid.items() if k not in cat}
        for combo in itertools.product(*(grid[k] for k in cat)):
            fixed = dict(zip(cat, combo, strict=True))
            for r in grid_search(functools.partial(factory, **fixed), task, numeric,
                                 scenario=scenario, seeds=seeds, steps=steps, warmup=warmup,
                                 info_keys=info_keys, **overrides):
                rows.append({**fixed, **r})
        rows.sort(key=lambda r: -r["reward"])
        return rows
    names = list(grid)
    combos = list(itertools.product(*(grid[k] for k in names)))
    n_set, n_seed = len(combos), len(seeds)
    n = n_set * n_seed
    env = JaxVectorEnv(task, n, scenario=scenario, episode__steps=steps,
                       autoreset_mode=AutoresetMode.DISABLED, **overrides)
    consts = {k: np.repeat(np.array([c[i] for c in combos], dtype=float), n_seed)
              for i, k in enumerate(names)}
    pol = factory(env, **consts)
    obs, _ = env.reset(seed=[int(s) for _ in combos for s in seeds])
    pol.reset()
    total = np.zeros(n)
    alive = np.ones(n, bool)
    means = {k: np.zeros(n) for k in info_keys}
    maxes = {k: np.full(n, -np.inf) for k in info_keys}
    last = {}
    for t in range(steps):
        obs, rew, term, trunc, info = env.step(pol.act(obs))
        total += np.where(alive, rew, 0.0)
        for k in info_keys:
            v = np.asarray(info[k], dtype=float).reshape(n, -1).max(axis=1)
            means[k] += np.where(alive, v, 0.0) / steps
            if t >= warmup:
                maxes[k] = np.where(alive, np.maximum(maxes[k], v), maxes[k])
        last = {k: np.where(alive, np.asarray(info[k], dtype=float).reshape(n, -1).max(axis=1),
                            last.get(k, 0.0))
                for k in ("band_share", "ramp_max_run_w_per_s", "violation_s") if k in info}
        alive &= ~(term | trunc)
    env.close()
    rows = []
    for i, c in enumerate(combos):
        sl = slice(i * n_seed, (i + 1) * n_seed)
        row = dict(zip(names, c, strict=True))
        row["reward"] = float(np.mean(total[sl]) / steps)
        row["return"] = float(np.mean(total[sl]))
        row["reward_std"] = float(np.std(total[sl]) / steps)
        for k in info_keys:
            row[f"{k}_mean"] = float(np.mean(means[k][sl]))
            row[f"{k}_after_warmup"] = float(np.max(maxes[k][sl]))
        for k, v in last.items():
            row[f"{k}_end"] = float(np.mean(v[sl]))
        rows.append(row)
    rows.sort(key=lambda r: -r["reward"])
    return rows


def _print(rows, top=15):
    keys = list(rows[0])
    print(" | ".join(keys))
    for r in rows[:top]:
        print(" | ".join(f"{r[k]:.4g}" if isinstance(r[k], float) else str(r[k]) for k in keys))


def tune(controller: str, top: int = 15):
    """Repeat the recorded search of ``controller``; returns the rows, best feasible first."""
    from .baselines import BASELINES

    spec = controller_config(controller).get("tuned_on")
    if not spec:
        raise ValueError(f"{controller}: not tuned (no tuned_on in controllers.yaml)")
    factory = _factory(BASELINES[spec["task"]], spec.get("controller", controller))
    grid = spec["grid"]
    seeds = spec["seeds"]
    if isinstance(seeds, str):  # "100-131"
        lo, hi = (int(x) for x in seeds.split("-"))
        seeds = list(range(lo, hi + 1))
    per_scenario = []
    for sc in spec["scenarios"]:
        limit = float(make_task(spec["task"]).make_params(sc).plant.grid.ramp_limit_w_per_s)
        rows = grid_search(factory, spec["task"], grid, scenario=sc, seeds=seeds,
                           steps=int(spec["steps"]), info_keys=CONSTRAINT_KEYS)
        for r in rows:
            r["feasible"] = _feasible(r, spec.get("constraints") or {}, limit,
                                      int(spec["steps"]))
        per_scenario.append({tuple(r[k] for k in grid): r for r in rows})
    out = []
    for key in per_scenario[0]:
        rs = [d[key] for d in per_scenario]
        row = dict(zip(grid, key, strict=True))
        row["reward"] = float(np.mean([r["reward"] for r in rs]))
        row["feasible"] = all(r["feasible"] for r in rs)
        for c in CONSTRAINT_KEYS:
            row[f"{c}_max"] = max(r[f"{c}_after_warmup"] for r in rs)
        out.append(row)
    out.sort(key=lambda r: (not r["feasible"], -r["reward"]))
    _print(out, top)
    return out


def _factory(table: dict, controller: str):
    """The registry entry of ``controller`` (a registry name or a controllers.yaml key)."""
    if controller in table:
        return table[controller]
    for f in table.values():
        base = getattr(f, "func", f)
        if getattr(base, "name", None) == controller and not getattr(f, "keywords", None):
            return f
    raise KeyError(f"{controller}: no baseline of that name in the registry")


def _feasible(row, constraints, limit, steps):
    ok = True
    for name, bound in constraints.items():
        b = limit if bound == "limit" else float(bound)
        if name == "violation_s":  # time the specification was broken, every seed
            ok &= row["violation_s_end"] <= b + 1e-9
        elif name == "throttled_gpu_s":  # a total over the episode
            ok &= row["throttled_gpu_s_mean"] * steps <= b + 1e-9
        else:
            ok &= row[f"{name}_after_warmup"] <= b
    return bool(ok)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Repeat a baseline's recorded tuning search.")
    ap.add_argument("controller", help="a key of configs/controllers.yaml with tuned_on")
    ap.add_argument("--top", type=int, default=15)
    args = ap.parse_args(argv)
    t0 = time.time()
    rows = tune(args.controller, args.top)
    print(f"{len(rows)} settings in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
