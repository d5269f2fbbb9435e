"""``best-constant``: the constant action that does best on training-distribution seeds.

A sanity floor for every benchmark table: if a rule (or an agent) cannot beat the best
constant action, the task does not need control. The search, on the task's training
distribution and seeds >= 100 (the benchmark's test seeds stay held out):

* Box actions: the default (0) and ``n_random`` uniform draws in [-1, 1], then
  ``rounds`` rounds of Gaussian perturbations around the ``keep`` best (step size
  halving each round); every candidate runs one episode per seed, all candidates and
  seeds as the envs of one :class:`~heatsync.envs.JaxVectorEnv`;
* discrete actions (MultiDiscrete): every action.

The objective is the mean episode return (USD: -(cost + penalties)), the quantity the
benchmark ranks by. ``python -m heatsync.agents.best_constant PowerSmoothing`` repeats
the search and writes the result into ``configs/best_constant.yaml`` (package data),
which :class:`BestConstant` reads.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import time
from importlib import resources
from pathlib import Path

import numpy as np
import yaml
from gymnasium import spaces
from gymnasium.vector import AutoresetMode

from heatsync._io import write_text_atomic
from heatsync.envs import JaxVectorEnv, make_task

from .baseline_common import Baseline
from .jax_policy import ConstantPolicy

__all__ = ["BestConstant", "search", "evaluate_constants", "main", "SEARCH_DEFAULTS"]

#: the search's settings (recorded with its result)
SEARCH_DEFAULTS = {"seeds": list(range(100, 108)), "n_random": 95, "rounds": 3, "keep": 8,
                   "per_parent": 12, "sigma": 0.3, "rng_seed": 0}


@functools.cache
def _table() -> dict:
    text = resources.files("heatsync.configs").joinpath("best_constant.yaml").read_text()
    return yaml.safe_load(text) or {}


class BestConstant(Baseline):
    """The best constant action found on the task's training distribution.

    **Rule**: the same action every interval (``configs/best_constant.yaml``: the
    action's components by name, and ``tuned_on`` with the search's scenario, seeds and
    settings). **Source**: the constant-action sanity floor of RL benchmarks (jumanji's
    smoke checks; a task a constant solves needs no controller). **Constants**: the
    action itself. Tuned: see ``tuned_on`` (``python -m heatsync.agents.best_constant``).
    """

    name = "fixed"  # no constants of its own in controllers.yaml
    task_name = "PowerSmoothing"

    def __init__(self, env=None, task=None, **constants):
        base = getattr(env, "unwrapped", env)
        if task is None and getattr(base, "task", None) is not None:
            task = base.task
        super().__init__(env, task=task, **constants)
        entry = _table().get(self.task.name)
        if entry is None:
            raise KeyError(f"configs/best_constant.yaml has no entry for {self.task.name}; run "
                           f"python -m heatsync.agents.best_constant {self.task.name}")
        names = self.task.action_names(self.params)
        if list(entry["names"]) != names:
            raise ValueError(f"best_constant.yaml's {self.task.name} action was found for "
                             f"components {entry['names']}, this env's are {names}: search "
                             "again")
        self._action = np.asarray(entry["action"], self.action_space.dtype)
        self.tuned_on = entry["tuned_on"]

    def _act(self, obs):
        return np.tile(self._action, (obs.shape[0], 1))

    def jax_policy(self):
        """The same controller as a pure-function policy (:mod:`heatsync.agents.jax_policy`)."""
        return ConstantPolicy.of(self._action)


def evaluate_constants(task, scenario, candidates, seeds, steps=None):
    """Mean episode return (USD) of each constant action over the seeds, all candidates
    and seeds batched into one vector env. **Returns** ``(C,)``."""
    cands = np.asarray(candidates)
    C, S = len(cands), len(seeds)
    over = {} if steps is None else {"episode__steps": int(steps)}
    env = JaxVectorEnv(task, C * S, scenario=scenario, autoreset_mode=AutoresetMode.DISABLED,
                       **over)
    obs, _ = env.reset(seed=[int(s) for _ in range(C) for s in seeds])
    acts = np.repeat(cands.astype(env.single_action_space.dtype), S, axis=0)
    ret = np.zeros(C * S)
    active = np.ones(C * S, bool)
    for _ in range(int(env.params.episode_steps)):
        obs, r, term, trunc, _ = env.step(acts)
        ret += np.where(active, r, 0.0)
        active &= ~(term | trunc)
        if not active.any():
            break
    env.close()
    return ret.reshape(C, S).mean(axis=1)


def search(task_name: str, scenario: str | None = None, log=print, **settings) -> dict:
    """The best constant action of a task (see the module docstring). **Returns** the
    ``best_constant.yaml`` entry: ``action``, ``names``, ``return``, ``tuned_on``."""
    task = make_task(task_name)
    scenario = scenario or task.spec.train_scenario
    cfg = {**SEARCH_DEFAULTS, **settings}
    params = task.make_params(scenario)
    space = task.action_space(params)
    names = task.action_names(params)
    seeds = list(cfg["seeds"])
    t0 = time.perf_counter()
    if isinstance(space, spaces.MultiDiscrete):
        cands = np.asarray(list(itertools.product(*(range(int(n)) for n in space.nvec))))
        scores = evaluate_constants(task, scenario, cands, seeds)
        best, best_score = cands[int(np.argmax(scores))], float(np.max(scores))
        log(f"{task.name}: {len(cands)} discrete actions, best {best_score:.2f}")
    else:
        rng = np.random.default_rng(cfg["rng_seed"])
        A = space.shape[0]
        cands = np.concatenate([np.zeros((1, A)), rng.uniform(-1, 1, (cfg["n_random"], A))])
        scores = evaluate_constants(task, scenario, cands, seeds)
        for r in range(cfg["rounds"]):
            top = cands[np.argsort(-scores)[:cfg["keep"]]]
            sigma = cfg["sigma"] / 2 ** r
            new = np.clip(np.repeat(top, cfg["per_parent"], axis=0)
                          + rng.normal(0, sigma, (len(top) * cfg["per_parent"], A)), -1, 1)
            cands = np.concatenate([top, new])
            scores = evaluate_constants(task, scenario, cands, seeds)
            log(f"{task.name}: round {r + 1}, best {float(np.max(scores)):.2f} "
                f"({time.perf_counter() - t0:.0f} s)")
        best, best_score = cands[int(np.argmax(scores))], float(np.max(scores))
    return {"names": names, "action": [float(x) for x in np.round(best, 4)],
            "return": round(best_score, 4),
            "tuned_on": {"task": task.name, "scenarios": [scenario], "seeds": seeds,
                         "steps": int(params.episode_steps),
                         "objective": "mean episode return (USD), all seeds",
                         "search": {k: v for k, v in cfg.items() if k != "seeds"}}}


def main(argv=None):
    ap = argparse.ArgumentParser(description="Search a task's best constant action and write "
                                             "it into configs/best_constant.yaml.")
    ap.add_argument("tasks", nargs="+", help="task names")
    ap.add_argument("--out", type=Path,
                    default=Path(str(resources.files("heatsync.configs")
                                     .joinpath("best_constant.yaml"))))
    args = ap.parse_args(argv)
    table = yaml.safe_load(args.out.read_text()) if args.out.exists() else {}
    table = table or {}
    for name in args.tasks:
        task = make_task(name)
        table[task.name] = search(task.name)
        write_text_atomic(args.out, "# Written by python -m heatsync.agents.best_constant; see "
                          "agents/best_constant.py.\n" + yaml.safe_dump(table, sort_keys=True))
        print(f"{task.name}: {table[task.name]['action']} -> return "
              f"{table[task.name]['return']}")


if __name__ == "__main__":
    main()
