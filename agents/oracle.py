"""``oracle``: the best action sequence found for each test episode with perfect foresight.

An upper reference for the benchmark's normalised score (0 = ``fixed``, 100 = ``oracle``).
For every episode (task, scenario, seed) the whole action sequence is optimised offline
knowing that episode's future exactly: the exogenous inputs, the job schedule and the
faults are those of the episode's key, because the optimiser rolls the env itself forward
from the episode's reset. What is reported is the **replayed** episode: the action
sequence run through the exact env, so the oracle's cost is achievable, not a
relaxation. It is the best found, not a proven optimum.

**Search** (per episode, all episodes batched):

1. *Starts*: the recorded action sequence of every start controller (``fixed``,
   ``best-constant`` and each rule of the task), replayed exactly; the best of them is
   the incumbent, so the oracle is never worse than a start on any seed.
2. *Gradient* (Box tasks): Adam (optax) on plan variables ``z`` (one row per
   ``hold_steps`` control intervals), mapped into every component's physical range by the
   squashing map of the gradient MPC (:func:`heatsync.agents.mpc.plan_actions`), from
   two starts (the best recorded sequence and ``best-constant``'s). The loss is the
   exact env's ``-reward`` summed over the episode plus the MPC's smooth constraint
   penalties (:class:`heatsync.agents.mpc.Penalties`), whose gradient steers away from
   the specification's hard edges; the plant's switches (LN2 orders, job starts in
   Facility) keep the start's values. After every iteration the exact episode of the
   iterate is scored (the same rollout) and the best iterate kept.
3. *Local search* (discrete actions, and optionally Box): a (1 + P) evolution: each
   generation, ``population`` mutants of the incumbent set one action component to a
   random value over a random window of 1 to ``window_steps[1]`` intervals (for
   PowerAwareScheduling: "start the oldest job", "defer", a phase bin, for a while),
   all replayed exactly; the best mutant replaces the incumbent if it is better.

**Better** means: meets the specification (no violation, no termination) first, then the
lower ``-return`` (USD: cost + penalties), the benchmark's order. The convergence record
(best ``-return`` after each iteration of each start, and of each generation) is kept
with the plans, so a reader can see how far the search moved and whether the restarts
agree.

``python -m heatsync.agents.oracle PowerSmoothing`` computes the plans of the task's
test distribution for the benchmark's seeds and writes ``configs/oracle/<scenario>.npz``
(package data); the benchmark's ``oracle`` controller replays them
(:class:`OraclePolicy`) and, for episodes without a stored plan, computes one.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from gymnasium import spaces

from heatsync.envs import JaxVectorEnv, episode_keys, make_task

from ._oracle_plans import OracleResult, _fingerprint, _stored_plans, covers, load, plan_path, save
from ._oracle_search import _gradient, _search, better
from ._planner import Penalties

__all__ = ["OracleConfig", "OracleResult", "OraclePolicy", "DEFAULTS", "episode_keys",
           "replay", "record_actions", "better", "optimize", "compute", "refresh", "save", "load",
           "covers",
           "plan_path", "main"]


@dataclasses.dataclass(frozen=True)
class OracleConfig:
    """Budget and settings of the oracle's search (hashable: one compile per config).

    ``starts``: controllers whose recorded sequences start the search (names of the
    task's baselines; missing names are skipped); ``iters``: Adam iterations (Box tasks;
    0: no gradient phase); ``lr``: Adam's step in ``z`` units; ``hold_steps``: control
    intervals per plan row; ``generations`` / ``population``: the local search (0: none);
    ``window_steps``: the range of a mutation's window (log-uniform);
    ``search_segments``: the action segments the local search mutates (names of the
    task's action layout; empty: every component); ``rng_seed``: the mutations'
    generator; ``penalties``: the smooth constraint penalties of the loss.
    """

    starts: tuple = ("fixed", "best-constant")
    iters: int = 200  # est.: budgets per task in DEFAULTS, set by the time per iteration
    lr: float = 0.05  # the gradient MPC's warm-start step (MPCConfig.lr_warm), est.
    hold_steps: int = 1  # every interval its own action, as the closed-loop rules act
    generations: int = 0
    population: int = 32  # est.: 16 seeds x 32 = 512 episodes per replay batch
    window_steps: tuple = (1, 600)  # est.: one interval to ten minutes of a 1 h episode
    search_segments: tuple = ()
    rng_seed: int = 0
    penalties: Penalties = Penalties()

    def __post_init__(self):
        if self.iters < 0 or self.generations < 0 or self.population < 1:
            raise ValueError(f"iters = {self.iters}, generations = {self.generations}, "
                             f"population = {self.population}: need iters >= 0, "
                             "generations >= 0, population >= 1")
        if not self.lr > 0 or self.hold_steps < 1:
            raise ValueError(f"lr = {self.lr}, hold_steps = {self.hold_steps}: need lr > 0 "
                             "and hold_steps >= 1")
        lo, hi = self.window_steps
        if not 1 <= lo <= hi:
            raise ValueError(f"window_steps = {self.window_steps}: need 1 <= lo <= hi")


#: the budgets the committed plans were computed with (see the module docstring); an Adam
#: iteration on 16 seeds x 2 starts costs about 4.4 s on PowerSmoothing (1800 steps) and
#: twice that on the 3600-step tasks (2 cores), which sets the budgets
DEFAULTS = {
    "PowerSmoothing": OracleConfig(starts=("fixed", "best-constant", "firmware", "lowpass",
                                           "lowpass_ups"), iters=200, lr=0.05),
    "CoolingDispatch": OracleConfig(starts=("fixed", "best-constant", "thermostat", "pid"),
                                    iters=60, lr=0.05),
    "PowerAwareScheduling": OracleConfig(starts=("fixed", "best-constant", "fcfs", "easy",
                                                 "greedy", "carbon"), iters=0,
                                         generations=30, population=32),
    "Facility": OracleConfig(starts=("fixed", "best-constant", "rule"), iters=60, lr=0.05,
                             generations=40, population=32,
                             search_segments=("defer_job", "job_select", "phase_offset")),
}


# ---- episodes and exact replay ------------------------------------------------------------


def _replay_one(task, params, key, actions):
    """One episode of a given action sequence from ``Task.reset(key)``: the benchmark's
    episode of a seed (:func:`episode_keys`). Not :func:`heatsync.envs.rollout`, which
    splits its keys for a policy and so runs other episodes."""
    _, state = task.reset(key, params)
    f = state.plant.t_s.dtype

    def body(carry, a):
        s, active, ret, term_any = carry
        _, s1, r, term, trunc, _ = task.step(None, s, a, params)
        ret = ret + jnp.where(active, r.astype(f), 0.0)
        term_any = term_any | (term & active)
        steps_done = active
        s = jax.tree.map(lambda x, y: jnp.where(active, x, y), s1, s)
        return (s, active & ~(term | trunc), ret, term_any), steps_done

    init = (state, jnp.ones((), bool), jnp.zeros((), f), jnp.zeros((), bool))
    (last, _, ret, term), ran = jax.lax.scan(body, init, actions)
    return ret, last.cost_usd, last.violation_s, term, jnp.sum(ran)


@partial(jax.jit, static_argnums=(0,))
def _replay_batch(task, params, keys, actions):
    return jax.vmap(partial(_replay_one, task, params))(keys, actions)


def replay(task, params, keys, actions) -> dict:
    """Run the action sequences ``actions`` (N, T, d) from the episodes of ``keys`` (N, 2)
    (:func:`episode_keys`) through the exact env (``Task.reset`` and ``Task.step``, one
    jitted scan, vmapped): NumPy ``return``, ``cost_usd``, ``violation_s``,
    ``terminated``, ``steps`` and ``spec_met`` (N,). An episode that ends early keeps
    its totals from that step."""
    task = make_task(task)
    ret, cost, viol, term, steps = _replay_batch(task, params, jnp.asarray(keys),
                                                 jnp.asarray(actions))
    out = {"return": np.asarray(ret, np.float64), "cost_usd": np.asarray(cost, np.float64),
           "violation_s": np.asarray(viol, np.float64),
           "terminated": np.asarray(term, bool), "steps": np.asarray(steps, np.int64)}
    out["spec_met"] = (out["violation_s"] == 0.0) & ~out["terminated"]
    return out


def record_actions(task: str, scenario: str, factory: Callable, seeds: Sequence[int],
                   steps: int) -> np.ndarray:
    """The actions (N, T, d) a controller ``factory(env)`` applies in the benchmark's
    episodes (:func:`heatsync.benchmark.run_cell`; after an episode ends its last action
    is held)."""
    from heatsync.benchmark import run_cell

    return run_cell(task, scenario, factory, seeds, int(steps), keep_actions=True).actions


# ---- the whole search ---------------------------------------------------------------------


def _search_components(layout, segments: Sequence[str]) -> list[int] | None:
    """Indices of the action components of the named ``segments`` (``None`` if empty)."""
    if not segments:
        return None
    known = [s.name for s in layout.segments]
    bad = [s for s in segments if s not in known]
    if bad:
        raise ValueError(f"OracleConfig.search_segments: unknown segments {bad}; the task's "
                         f"action segments are {known}")
    return [i for i, n in enumerate(layout.names()) if n.split("[")[0] in segments]


def optimize(task: str, scenario: str, seeds: Sequence[int], steps: int | None = None,
             cfg: OracleConfig | None = None, registry: dict | None = None,
             log: Callable[[str], None] | None = print,
             previous: np.ndarray | None = None) -> OracleResult:
    """The oracle's plans for ``seeds`` of ``task`` on ``scenario`` (see the module
    docstring). ``registry``: task -> controller name -> factory (default: the
    benchmark's); ``steps``: episode length (default: the scenario's); ``previous``
    (N, T, d): earlier plans of the same episodes (e.g. the stored ones), one more start
    named ``previous``, so a search continues where an earlier one stopped."""
    from heatsync.agents import BASELINES

    t_start = time.perf_counter()
    tk = make_task(task)
    cfg = DEFAULTS.get(tk.name, OracleConfig()) if cfg is None else cfg
    seeds = [int(s) for s in seeds]
    env = JaxVectorEnv(tk, len(seeds), scenario=scenario,
                       **({} if steps is None else {"episode__steps": int(steps)}))
    T = int(env.params.episode_steps)
    params, space = env.params, env.single_action_space
    if cfg.search_segments and not isinstance(space, spaces.Box):
        raise ValueError(f"OracleConfig.search_segments = {cfg.search_segments}: only for "
                         f"Box tasks; {tk.name}'s actions are {type(space).__name__}")
    comps = (_search_components(tk.layout(params), cfg.search_segments)
             if cfg.search_segments else None)
    keys = episode_keys(seeds)
    reg = (BASELINES if registry is None else registry).get(tk.name, {})
    names = [s for s in cfg.starts if s in reg] or ["fixed"]
    starts, sj, sm = [], [], []
    for name in names:
        a = record_actions(tk.name, scenario, reg[name], seeds, T)
        res = replay(tk, params, keys, a)
        starts.append(a)
        sj.append(-res["return"])
        sm.append(res["spec_met"])
        if log:
            log(f"  start {name:14s}: mean -return {sj[-1].mean():10.3f} USD, spec met "
                f"{int(sm[-1].sum())}/{len(seeds)}")
    if previous is not None:
        previous = np.asarray(previous, np.float32 if isinstance(space, spaces.Box)
                              else np.int64)
        if previous.shape != starts[0].shape:
            raise ValueError(f"oracle: previous plans of shape {previous.shape}; need "
                             f"{starts[0].shape} (seeds, steps, action size)")
        res = replay(tk, params, keys, previous)
        names.append("previous")
        starts.append(previous.astype(starts[0].dtype))
        sj.append(-res["return"])
        sm.append(res["spec_met"])
        if log:
            log(f"  start {'previous':14s}: mean -return {sj[-1].mean():10.3f} USD, spec met "
                f"{int(sm[-1].sum())}/{len(seeds)}")
    starts, sj, sm = np.stack(starts), np.stack(sj), np.stack(sm)
    N = len(seeds)
    best_k = np.zeros(N, int)
    for k in range(1, len(names)):
        take = better(sm[k], sj[k], sm[best_k, np.arange(N)], sj[best_k, np.arange(N)])
        best_k = np.where(take, k, best_k)
    inc = starts[best_k, np.arange(N)].copy()
    j = sj[best_k, np.arange(N)].copy()
    met = sm[best_k, np.arange(N)].copy()
    grad_j = np.zeros((0, N, 0))
    if cfg.iters > 0 and isinstance(space, spaces.Box):
        bc = names.index("best-constant") if "best-constant" in names else 0
        gstarts = np.stack([inc, starts[bc]])
        acts, gj, gm, grad_j = _gradient(tk, params, keys, gstarts, cfg, log)
        for s in range(gstarts.shape[0]):
            take = better(gm[s], gj[s], met, j)
            inc = np.where(take[:, None, None], acts[s], inc)
            j, met = np.where(take, gj[s], j), np.where(take, gm[s], met)
    search_j = np.zeros((N, 0))
    if cfg.generations > 0:
        inc, j, met, search_j = _search(tk, params, space, keys, inc, j, met, cfg, log,
                                        replay, comps)
    final = replay(tk, params, keys, inc)
    meta = {"config": _config_dict(cfg), "fingerprint": _fingerprint(env),
            "wall_s": time.perf_counter() - t_start, "episode_steps": T}
    env.close()
    return OracleResult(task=tk.name, scenario=env.scenario.name, seeds=seeds, steps=T,
                        actions=inc, ret=final["return"], cost_usd=final["cost_usd"],
                        violation_s=final["violation_s"], spec_met=final["spec_met"],
                        start_names=names, start_j=sj, grad_j=grad_j, search_j=search_j,
                        meta=meta)


def _config_dict(cfg: OracleConfig) -> dict:
    d = dataclasses.asdict(cfg)
    d["starts"] = list(cfg.starts)
    d["window_steps"] = list(cfg.window_steps)
    d["search_segments"] = list(cfg.search_segments)
    d["penalties"] = {k: (list(v) if isinstance(v, tuple) else v)
                      for k, v in d["penalties"].items()}
    return d


# ---- the benchmark's controller -----------------------------------------------------------


class OraclePolicy:
    """The ``oracle`` controller: replays the stored plan of each episode.

    The benchmark calls :meth:`reset_episodes` with the cell's seeds; a seed (or an
    episode length) without a stored plan in ``configs/oracle/<scenario>.npz`` is
    computed then with the task's :data:`DEFAULTS` (minutes per task), or raises if
    ``compute_missing`` is false. ``tuned_on`` is ``None``: the oracle is fitted to each
    test episode by design (perfect foresight), which is what makes it a bound.
    """

    tuned_on = None

    def __init__(self, env, *, folder: str | Path | None = None, compute_missing: bool = True,
                 config: OracleConfig | None = None):
        self.env = env
        self.task = env.task
        self.folder, self.compute_missing, self.config = folder, compute_missing, config
        self._actions = None
        self._t = 0

    def reset(self, seed=None):
        self._t = 0

    def reset_episodes(self, seeds: Sequence[int]):
        """Load (or compute) the plans of the episodes of ``seeds``."""
        seeds = [int(s) for s in seeds]
        T = int(self.env.params.episode_steps)
        scen = self.env.scenario.name
        plans = {}
        path = plan_path(scen, self.folder)
        if path.exists():
            r = load(path)
            if r.steps == T and r.meta.get("fingerprint") == _fingerprint(self.env):
                plans = {s: r.actions[i] for i, s in enumerate(r.seeds)}
        missing = [s for s in seeds if s not in plans]
        if missing:
            if not self.compute_missing:
                raise ValueError(f"oracle: no stored plan for {self.task.name} on {scen} "
                                 f"with seeds {missing} and {T} steps in {path}; run "
                                 f"python -m heatsync.agents.oracle {self.task.name}")
            r = optimize(self.task.name, scen, missing, T, self.config, log=None)
            plans.update({s: r.actions[i] for i, s in enumerate(r.seeds)})
        self._actions = np.stack([plans[s] for s in seeds])
        self._t = 0

    def act(self, obs):
        if self._actions is None:
            raise RuntimeError("OraclePolicy: call reset_episodes(seeds) first (the "
                               "benchmark does)")
        t = min(self._t, self._actions.shape[1] - 1)
        self._t += 1
        a = self._actions[:, t]
        return a[0] if np.asarray(obs).ndim == 1 else a


def refresh(task: str, scenario: str | None = None, folder: str | Path | None = None,
            rtol: float = 1e-6) -> Path:
    """Re-stamp stored plans after a change of the params' structure that must not change
    the episodes (e.g. a new parameter whose default keeps the old physics): replay every
    stored plan through the current env and, only if each replayed ``return`` equals the
    stored one (to ``rtol``), store the current fingerprint. Raises ``ValueError`` naming
    the seeds that differ otherwise (then recompute with :func:`compute`)."""
    tk = make_task(task)
    scenario = tk.spec.test_scenario if scenario is None else scenario
    path = plan_path(scenario, folder)
    r = load(path)
    env = JaxVectorEnv(tk.name, 1, scenario=scenario, episode__steps=int(r.steps))
    env.close()
    got = replay(tk, env.params, episode_keys(r.seeds), r.actions)
    bad = [s for s, a, b in zip(r.seeds, got["return"], r.ret, strict=True)
           if not abs(a - b) <= rtol * max(abs(b), 1.0)]
    if bad:
        raise ValueError(f"oracle refresh {path}: the replayed return differs on seeds {bad}; "
                         f"the episodes changed, recompute: python -m heatsync.agents.oracle "
                         f"{tk.name}")
    r.meta["fingerprint"] = _fingerprint(env)
    return save(r, path)


def compute(task: str, seeds: Sequence[int] | None = None, scenario: str | None = None,
            folder: str | Path | None = None, cfg: OracleConfig | None = None,
            log=print, resume: bool = False) -> Path:
    """Compute and store the plans of ``task`` (default: its test distribution and the
    benchmark's default seeds). ``resume``: start from the stored plans too (one more
    start), so a longer or different search continues an earlier one and never ends
    worse than it."""
    from heatsync.benchmark import DEFAULT_SEEDS

    tk = make_task(task)
    scenario = tk.spec.test_scenario if scenario is None else scenario
    seeds = list(DEFAULT_SEEDS) if seeds is None else list(seeds)
    prev = _stored_plans(tk.name, scenario, seeds, folder) if resume else None
    r = optimize(tk.name, scenario, seeds, None, cfg, log=log, previous=prev)
    if resume:  # the search this one continues (its own history is in git)
        old = load(plan_path(scenario, folder)).meta
        r.meta["continues"] = {k: old[k] for k in ("config", "wall_s", "continues")
                               if k in old}
    if log:
        log(f"{tk.name}: oracle mean -return {(-r.ret).mean():.3f} USD, spec met "
            f"{int(r.spec_met.sum())}/{len(seeds)}, {r.meta['wall_s']:.0f} s")
    return save(r, plan_path(r.scenario, folder))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m heatsync.agents.oracle",
                                 description="Compute the oracle's plans of a task's test "
                                             "distribution (configs/oracle/).")
    ap.add_argument("tasks", nargs="+")
    ap.add_argument("--seeds", default=None, help="e.g. 0-15 (default: the benchmark's)")
    ap.add_argument("--scenario", default=None)
    ap.add_argument("--out", default=None, help="folder (default: configs/oracle)")
    ap.add_argument("--iters", type=int, default=None)
    ap.add_argument("--generations", type=int, default=None)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--rng-seed", type=int, default=None,
                    help="the local search's generator (use another one to --continue)")
    ap.add_argument("--continue", dest="resume", action="store_true",
                    help="start from the stored plans too: continue an earlier search")
    ap.add_argument("--refresh", action="store_true",
                    help="do not optimise: replay the stored plans under the current code and "
                         "re-stamp their fingerprint if every return is unchanged")
    a = ap.parse_args(argv)
    from heatsync.benchmark import parse_seeds

    seeds = None if a.seeds is None else parse_seeds(a.seeds)
    for t in a.tasks:
        if a.refresh:
            print(f"{t}: refreshed {refresh(t, a.scenario, a.out)}")
            continue
        cfg = DEFAULTS.get(make_task(t).name, OracleConfig())
        over = {k: v for k, v in (("iters", a.iters), ("generations", a.generations),
                                  ("lr", a.lr), ("rng_seed", a.rng_seed)) if v is not None}
        cfg = dataclasses.replace(cfg, **over)
        print(f"{t}: {compute(t, seeds, a.scenario, a.out, cfg, resume=a.resume)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
