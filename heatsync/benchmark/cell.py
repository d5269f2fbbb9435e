"""One benchmark cell: a controller on a task and scenario, one episode per seed.

The seeds run together as the N envs of one :class:`~heatsync.envs.JaxVectorEnv`
(env i reset with seed i of the cell, autoreset disabled); the policy sees the
batched observation ``(N, obs_dim)``. Each step records the plant outputs the env's
``info`` carries; an env's episode ends at its first termination or at the time limit,
and its last plant state is the one the vector env reports for that step
(``info["final_state"]``), so its KPIs come from
:func:`heatsync.physics.compute_kpis` on exactly the episode that ran.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
from gymnasium.vector import AutoresetMode

from heatsync.envs import JaxVectorEnv, check_action, episode_keys, rollout
from heatsync.physics import KPI_DOC, OUTPUTS, compute_kpis

from .plan import BenchmarkError, parse_seeds

__all__ = ["CellResult", "run_cell", "tuned_split", "Prewarm", "TRACE_KEYS", "cores"]

#: per-step series kept for the episode plots (from the env info)
TRACE_KEYS = ("t_s", "p_grid_mean_w", "t_junction_max_c", "t_supply_c", "uc_soc", "ups_soc",
              "ln2_tank_kg", "o2_frac")
#: info entries recorded besides the plant OUTPUTS (uc_soc is kept as the rack mean)
_EXTRA = ("p_grid_sub_w", "t_s", "o2_frac", "t_supply_c", "uc_soc", "ups_soc", "ln2_tank_kg")


@dataclasses.dataclass
class CellResult:
    """The outcome of :func:`run_cell`: one row per seed and the first seed's trace."""

    rows: list[dict]
    trace: dict[str, np.ndarray]
    wall_s: float
    policy_calls: int
    actions: np.ndarray | None = None  # (N, T, ...) with keep_actions; held after an end


def tuned_split(tuned_on, scenario: str, seed: int) -> tuple[str, bool]:
    """``(split, tuned_scenario)`` of a row for a controller's ``tuned_on``.

    ``tuned_on`` may be ``None`` (not tuned), a list of scenario names, or a
    mapping with optional ``scenarios`` (names; absent: all) and ``seeds``
    (ints or a ``"100-104"`` string; absent: all). A row is ``tuned-on`` when
    both its scenario and its seed were used for tuning, else ``held-out``.
    """
    if not tuned_on:
        return "held-out", False
    if isinstance(tuned_on, str):
        tuned_on = [tuned_on]
    if isinstance(tuned_on, dict):
        scen = tuned_on.get("scenarios", tuned_on.get("scenario"))
        seeds = tuned_on.get("seeds", tuned_on.get("seed"))
    else:
        scen, seeds = list(tuned_on), None
    if isinstance(scen, str):
        scen = [scen]
    in_scen = scen is None or scenario in set(scen) or Path(scenario).stem in set(scen)
    if seeds is None:
        in_seed = True
    else:
        try:
            in_seed = seed in set(parse_seeds(seeds if not isinstance(seeds, int) else [seeds]))
        except BenchmarkError:
            in_seed = False
    return ("tuned-on" if in_scen and in_seed else "held-out"), bool(in_scen)


def _rows_where(mask: np.ndarray, a, b):
    """Row-wise select between two batched pytrees: ``a`` where ``mask`` (N,), else ``b``."""
    def sel(x, y):
        x, y = np.asarray(x), np.asarray(y)
        return np.where(mask.reshape((-1,) + (1,) * (x.ndim - 1)), x, y)

    return jax.tree.map(sel, a, b)


def _row(tree, i):
    return jax.tree.map(lambda x: np.asarray(x)[i], tree)


def make_env(task: str, scenario: str, n: int, steps: int | None) -> JaxVectorEnv:
    """The cell's vector env: ``n`` envs, autoreset disabled (each runs one episode)."""
    overrides = {} if steps is None else {"episode__steps": int(steps)}
    return JaxVectorEnv(task, n, scenario=scenario, autoreset_mode=AutoresetMode.DISABLED,
                        **overrides)


def run_cell(task: str, scenario: str, factory: Callable, seeds: Sequence[int],
             steps: int | None = None, *, tuned_on: Any = None, controller: str = "",
             on_step: Callable[[int], None] | None = None,
             keep_actions: bool = False, jit: bool = False) -> CellResult:
    """Run one episode per seed of ``factory(env)`` on ``task`` and ``scenario``.

    **Arguments**: task name, scenario (name or path), ``factory(env) -> Policy``
    (``env`` the :class:`~heatsync.envs.JaxVectorEnv` with one env per seed),
    seeds, ``steps`` (episode length; default: the scenario's), ``tuned_on``
    (overrides the policy's own ``tuned_on`` attribute), the controller name
    for the rows, ``on_step(n)`` called with every n steps done (progress),
    ``keep_actions`` (return the applied actions; an env's last action is held after its
    episode ends), ``jit`` (a policy with ``jax_policy()``, see
    :mod:`heatsync.agents.jax_policy`, runs as one jitted scan instead of the step loop:
    the same rows; ``keep_actions`` implies the loop). Off by default: each controller
    then compiles its own episode scan, which at the benchmark's 16 episodes costs more
    than the loop it replaces (measured in the README's "JAX policies").

    **Returns**: :class:`CellResult` with one CSV row per seed (see
    :func:`heatsync.benchmark.columns`) and the first seed's per-step trace.
    """
    t0 = time.perf_counter()
    seeds = [int(s) for s in seeds]
    env = make_env(task, scenario, len(seeds), steps)
    policy = factory(env)
    if tuned_on is None:
        tuned_on = getattr(policy, "tuned_on", None) or getattr(factory, "tuned_on", None)
    n, T = env.num_envs, int(env.params.episode_steps)
    from heatsync.agents.jax_policy import jax_policy_of

    jp = jax_policy_of(policy) if jit and not keep_actions else None
    if jp is not None:
        return _run_jitted(env, jp, seeds, T, tuned_on, controller, on_step, t0)
    if callable(getattr(policy, "reset", None)):
        policy.reset(seeds[0])
    if callable(getattr(policy, "reset_episodes", None)):  # e.g. the oracle's plans
        policy.reset_episodes(seeds)
    act_state = getattr(policy, "act_state", None)
    act_state = act_state if callable(act_state) else None

    obs, _ = env.reset(seed=seeds)
    s0 = jax.tree.map(np.asarray, env.states.plant)
    rec: dict[str, np.ndarray] = {}
    final = None
    ret, cost, violation = np.zeros(n), np.zeros(n), np.zeros(n)
    length = np.full(n, T)
    terminated = np.zeros(n, bool)
    active = np.ones(n, bool)
    calls = 0
    actions = None
    for t in range(T):
        a = act_state(obs, env.states, env.params) if act_state is not None else policy.act(obs)
        calls += 1
        a = check_action(np.asarray(a), env.single_action_space, batch=n,
                         name=f"{controller or 'policy'} action")
        if keep_actions:
            if actions is None:
                actions = np.zeros((n, T, *a.shape[1:]), a.dtype)
            held = active.reshape((-1,) + (1,) * (a.ndim - 1))
            actions[:, t] = np.where(held, a, actions[:, t - 1] if t else a)
        obs, r, term, trunc, info = env.step(a)
        if not rec:
            for k in (*OUTPUTS, *_EXTRA):
                v = np.asarray(info[k])
                if k == "uc_soc":  # per rack -> mean
                    v = v.reshape(n, -1).mean(axis=1)
                rec[k] = np.zeros((T, *v.shape), v.dtype)
        for k in rec:
            v = np.asarray(info[k])
            rec[k][t] = v.reshape(n, -1).mean(axis=1) if k == "uc_soc" else v
        ret += np.where(active, r, 0.0)
        cost = np.where(active, info["cost_usd"], cost)
        violation = np.where(active, info["violation_s"], violation)
        done = (term | trunc) & active
        if done.any():
            fs = env.final_states(info).plant
            final = fs if final is None else _rows_where(done, fs, final)
            length[done] = t + 1
            terminated |= done & term
            active &= ~done
        if on_step is not None:
            on_step(1)
        if not active.any():
            if actions is not None:
                actions[:, t + 1:] = actions[:, t:t + 1]
            if on_step is not None and T - t - 1 > 0:
                on_step(T - t - 1)
            break
    wall = time.perf_counter() - t0
    rows, trace = _rows_and_trace(env, seeds, s0, final, rec, length, terminated, violation,
                                  cost, ret, tuned_on, controller, wall)
    env.close()
    return CellResult(rows=rows, trace=trace, wall_s=wall, policy_calls=calls,
                      actions=actions)


def _run_jitted(env, jp, seeds, T, tuned_on, controller, on_step, t0) -> CellResult:
    """The cell of a JAX policy: one jitted ``lax.scan`` over the episode, vmapped over the
    seeds (:func:`heatsync.envs.rollout` from the vector env's reset keys), so the same
    episodes as the step loop; no Python call per step (``policy_calls`` 0)."""
    keys = episode_keys(seeds)
    _check_jax_action(env, jp, controller)
    res = rollout(env.task, env.params, jp, keys, T, record=(*OUTPUTS, *_EXTRA),
                  reset_keys=keys)
    res = jax.tree.map(np.asarray, (res.returns, res.cost_usd, res.violation_s, res.steps,
                                    res.terminated, res.series, res.s0, res.s1))
    ret, cost, violation, length, terminated, series, s0, final = res
    rec = {k: np.moveaxis(series[k], 0, 1) for k in (*OUTPUTS, *_EXTRA)}  # (T, N, ...)
    if on_step is not None:
        on_step(T)
    wall = time.perf_counter() - t0
    rows, trace = _rows_and_trace(env, seeds, s0, final, rec, length, terminated, violation,
                                  cost, ret.astype(np.float64), tuned_on, controller, wall)
    env.close()
    return CellResult(rows=rows, trace=trace, wall_s=wall, policy_calls=0, actions=None)


def _check_jax_action(env, jp, controller):
    """The action's shape of a JAX policy (abstract evaluation of one step: no compile),
    so a wrong shape is named before the episode's program is built."""
    task, params = env.task, env.params
    space = env.single_action_space

    def first(key):
        obs, state = task.reset(key, params)
        own = getattr(jp, "default_constants", None)
        ps = jp.init(key, params, {} if own is None else own())
        return jp.act(ps, obs, key, params, state)[0]

    got = jax.eval_shape(first, jax.random.PRNGKey(0))
    if tuple(got.shape) != tuple(space.shape):
        raise BenchmarkError(f"{controller or 'policy'}: its JAX policy's action has shape "
                             f"{tuple(got.shape)}; {env.task.name}'s action space needs "
                             f"{tuple(space.shape)}")


def _rows_and_trace(env, seeds, s0, final, rec, length, terminated, violation, cost, ret,
                    tuned_on, controller, wall):
    """The CSV rows (KPIs of each episode that ran) and the first seed's trace."""
    p, T = env.params.plant, int(env.params.episode_steps)
    rows, trace = [], {}
    for i, seed in enumerate(seeds):
        L = int(length[i])
        series = {k: v[:L, i] for k, v in rec.items()}
        kpis = compute_kpis(p, _row(s0, i), _row(final, i), series)
        split, tuned_scenario = tuned_split(tuned_on, env.scenario.name, seed)
        row = {"controller": controller, "task": env.task.name, "scenario": env.scenario.name,
               "episode_steps": T, "seed": seed, "steps": L,
               "terminated": int(terminated[i]),
               "spec_met": int(violation[i] == 0.0 and not terminated[i]),
               "violation_s": float(violation[i]), "cost_usd": float(cost[i]), "split": split,
               "tuned_scenario": int(tuned_scenario), "return": float(ret[i]),
               "wall_s": wall}
        row.update({k: float(kpis[k]) for k in KPI_DOC})
        rows.append(row)
        if i == 0:
            trace = {k: np.asarray(series[k], np.float64) for k in TRACE_KEYS}
            trace["p_grid_sub_w"] = np.asarray(series["p_grid_sub_w"], np.float64).reshape(-1)
            trace["h_s"] = np.float64(p.h_s)
            trace["seed"] = np.int64(seed)
    return rows, trace


def cores() -> int:
    """CPU cores this process may use."""
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


class Prewarm:
    """Compile the vector env's reset and step of upcoming cells on background threads.

    Compilation dominates a short benchmark and XLA compiles on one core, so on
    a machine with two cores the next task compiles while this one runs. Each
    job is one throwaway reset and step of the cell's vector env, which fills JAX's
    in-memory cache for exactly the calls the cell makes (same static task and
    structure, same shapes); jobs with the same structure compile once. Daemon
    threads, so an interrupted run exits at once.
    """

    def __init__(self, jobs: list[tuple[str, str]], n: int, steps: int | None,
                 workers: int | None = None):
        self.n, self.steps = n, steps
        self.lock = threading.Lock()
        self.structures: dict = {}  # (task, structure id) -> Event set when compiled
        self.done: dict = {}  # (task, scenario) -> Event
        self.jobs: queue.Queue = queue.Queue()
        for job in dict.fromkeys(jobs):
            self.done[job] = threading.Event()
            self.jobs.put(job)
        for _ in range(workers or min(2, cores())):
            threading.Thread(target=self._work, daemon=True, name="heatsync-prewarm").start()

    def _work(self):
        while True:
            try:
                job = self.jobs.get_nowait()
            except queue.Empty:
                return
            try:
                self._compile(*job)
            except Exception:  # noqa: BLE001 - the cell itself will raise it with context
                pass
            finally:
                self.done[job].set()

    def _compile(self, task: str, scenario: str):
        env = make_env(task, scenario, self.n, self.steps)
        key = (env.task.name, env.entry.sid)
        with self.lock:
            ev = self.structures.get(key)
            mine = ev is None
            if mine:
                ev = self.structures[key] = threading.Event()
        if not mine:
            ev.wait()
            return
        try:
            env.reset(seed=list(range(self.n)))
            space = env.single_action_space
            env.step(np.zeros((self.n, *space.shape), dtype=space.dtype))
        finally:
            ev.set()

    def wait(self, task: str, scenario: str) -> None:
        """Block until the job of (task, scenario) has compiled (or failed)."""
        ev = self.done.get((task, scenario))
        if ev is not None:
            ev.wait()
