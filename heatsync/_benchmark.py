"""The benchmark: controllers x tasks x scenarios x seeds, with resume.

``scripts/benchmark.py`` is the command line over :func:`main`; the logic is
here so that tests and notebooks can call :func:`run_benchmark` directly.

**Cells.** A cell is one (controller, task, scenario, episode length). Its
seeds run together as the N envs of one :class:`~heatsync.envs.JaxVectorEnv`
(env i reset with seed i of the cell, one episode each); the policy sees the
batched observation ``(N, obs_dim)``. Each step records the plant outputs the
env's ``info`` carries; at the end of an env's episode its KPIs come from
:func:`heatsync.physics.compute_kpis` (first and last plant state plus the
per-interval series), so every KPI means exactly what ``KPI_DOC`` says.

**Final states.** The vector env resets an env in the step that ends its
episode, so the last plant state is not in ``env.states``. For a truncated
env it is recovered by calling the env's own jitted step again from the state
before the last step with a time limit that cannot fire (same compiled code,
no retrace); for a terminated env (a trip, a hazard, unserved energy) by the
single env's jitted step (``drive_step``, the Gymnasium env's; compiled only
when some env terminates) from that state. The plant is deterministic given
the state and action (the step key is unused), so both are exact.

**Files** (under ``out``, each written atomically: temporary file, then
``os.replace``):

- ``benchmark.csv``: one row per (controller, task, scenario, seed) with
  :data:`ID_COLUMNS`, :data:`RUN_COLUMNS` and every KPI of ``KPI_DOC``;
  rewritten after each finished cell.
- ``BENCHMARK.md``: per task and scenario, a table ranked by the task's main
  KPI (:data:`MAIN_KPI`), then every KPI as mean ± std over seeds; separate
  tables for rows a controller was tuned on (``tuned_on``).
- ``plots/<Task>_episode.png`` (one episode of each controller overlaid),
  ``plots/<Task>_kpis.png`` (headline KPIs, mean ± std);
  ``traces/`` holds the per-step series those plots read (one ``.npz`` per
  cell, its first seed), so a resumed run plots cells it did not recompute.

**Resume.** On start the CSV is read; a line that does not parse (a run
killed mid-write of an older, non-atomic file, or a truncated copy) is dropped
with a warning. A cell whose requested seeds all have rows is skipped; a cell
with some seeds runs only the missing ones.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime
import io
import math
import os
import platform
import re
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from heatsync._io import write_bytes_atomic, write_text_atomic

__all__ = [
    "BenchmarkConfig", "BenchmarkError", "BenchmarkReport", "CellResult", "ID_COLUMNS",
    "MAIN_KPI", "RUN_COLUMNS", "TASK_ORDER", "columns", "main", "parse_seeds", "read_csv",
    "markdown", "run_benchmark", "run_cell", "write_csv", "write_plots",
]

#: tasks in the order the tables list them
TASK_ORDER = ("PowerSmoothing", "CoolingDispatch", "PowerAwareScheduling", "Facility")

#: the columns that identify a row
ID_COLUMNS = ("controller", "task", "scenario", "episode_steps", "seed")
#: per-row run columns: ``steps`` run (fewer than ``episode_steps`` if the
#: episode ended early), ``terminated`` 0/1, ``split`` (``held-out`` or
#: ``tuned-on``), ``tuned_scenario`` 0/1 (the controller's ``tuned_on`` names
#: this scenario), ``return`` (sum of rewards), ``wall_s`` (wall time of the
#: whole cell: every seed together, env build and any compile included)
RUN_COLUMNS = ("steps", "terminated", "split", "tuned_scenario", "return", "wall_s")

#: the KPI each task's tables are ranked by: (name, "min" or "max", why)
MAIN_KPI: dict[str, tuple[str, str, str]] = {
    "PowerSmoothing": (
        "band_rms_w", "min",
        "the in-band (0.1-20 Hz) grid oscillation the task exists to remove, in W"),
    "CoolingDispatch": (
        "return", "max",
        "the task's reward: cooling energy at the price, water, LN2 consumed, throttling "
        "and overcooling; no single KPI weighs them (cost_total_usd misses LN2 drawn from "
        "the tank and is dominated by IT energy)"),
    "PowerAwareScheduling": (
        "work_done_rack_s", "max", "training work done at nominal pace"),
    "Facility": (
        "return", "max",
        "the task's own reward summed over the episode (work value minus every cost term): "
        "no single KPI covers all actuators"),
}

#: KPIs shown beside the main one in the ranked tables and the bar charts
HEADLINE: dict[str, tuple[str, ...]] = {
    "PowerSmoothing": ("band_share", "ramp_violation_s", "work_lost_frac", "energy_waste_kwh",
                       "ups_life_used", "uc_equivalent_cycles"),
    "CoolingDispatch": ("energy_cooling_kwh", "throttled_gpu_s", "overcool_k_s",
                        "ln2_used_kg", "water_l", "t_junction_max_c", "o2_min_frac",
                        "cost_total_usd"),
    "PowerAwareScheduling": ("cost_total_usd", "peak_demand_kw", "carbon_kg",
                             "throttled_gpu_s", "work_lost_frac"),
    "Facility": ("cost_total_usd", "work_done_rack_s", "band_rms_w", "peak_demand_kw",
                 "throttled_gpu_s", "trips"),
}

RETURN_DOC = "episode return: the task's reward summed over the episode, 1"

#: episode length of the default subset (control intervals); the full run uses
#: each scenario's own length
DEFAULT_STEPS = 600
QUICK_STEPS = 60
DEFAULT_SEEDS = (0, 1, 2, 3, 4)
QUICK_SEEDS = (0, 1)

#: per-step series kept for the episode plots (from the env info)
TRACE_KEYS = ("t_s", "p_grid_mean_w", "t_junction_max_c", "t_supply_c", "uc_soc", "ups_soc",
              "ln2_tank_kg", "o2_frac")
#: the zoomed grid-power panel of the episode plots shows the last ZOOM_S seconds
ZOOM_S = 20.0
#: int32 time limit that never fires, used to recover a truncated env's last state
_NO_LIMIT = np.int32(2**31 - 1)


class BenchmarkError(RuntimeError):
    """A benchmark that cannot run as asked (unknown names, an incompatible CSV)."""


def columns() -> list[str]:
    """The CSV header: :data:`ID_COLUMNS`, :data:`RUN_COLUMNS`, then every KPI."""
    from heatsync.physics import KPI_DOC

    return [*ID_COLUMNS, *RUN_COLUMNS, *KPI_DOC]


# ---- configuration ---------------------------------------------------------------------------


@dataclasses.dataclass
class BenchmarkConfig:
    """What to run. ``None`` fields take the mode's default (see :func:`resolve`)."""

    controllers: list[str] | None = None
    """Baseline names from ``heatsync.agents.BASELINES`` (default: every baseline of each
    task); an empty list runs only ``policies``."""
    tasks: list[str] | None = None
    """Task names (default: all four)."""
    scenarios: list[str] | None = None
    """Scenario names or YAML paths for every task (default: each task's default scenario;
    ``full``: every bundled scenario)."""
    seeds: list[int] | None = None
    """Seeds, one env each (default 0-4; ``quick``: 0-1)."""
    steps: int | None = None
    """Episode length in control intervals (default 600; ``quick``: 60; ``full``: each
    scenario's own length)."""
    policies: list[str] = dataclasses.field(default_factory=list)
    """Extra policies as ``module:attr`` (see :func:`heatsync.agents.load_policy`)."""
    policy_task: str | None = None
    """The task of ``policies`` (default: every selected task whose spaces they fit)."""
    out: Path = Path("results")
    """Folder of ``benchmark.csv``, ``BENCHMARK.md``, ``plots/`` and ``traces/``."""
    quick: bool = False
    """Smoke run: 2 seeds, 60 steps, each task's default scenario."""
    full: bool = False
    """Everything: every bundled scenario at its own episode length."""
    plots: bool = True
    """Write the PNG plots."""
    prewarm: bool = True
    """Compile the next tasks' envs on background threads while cells run."""
    command: str = ""
    """How the run was started (written into ``BENCHMARK.md``)."""


@dataclasses.dataclass
class _Plan:
    tasks: list[str]
    scenarios: dict[str, list[str]]
    seeds: list[int]
    steps: int | None
    controllers: dict[str, dict[str, Callable]]  # task -> name -> factory(env)
    custom: list[str]  # --policy specs
    policy_task: str | None = None


def parse_seeds(text: str | Iterable[int]) -> list[int]:
    """Seeds from ``"0-4"``, ``"0,2,5"``, ``"0-2,10"`` or a list of ints."""
    if not isinstance(text, str):
        return [int(s) for s in text]
    seeds: list[int] = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        m = re.fullmatch(r"(\d+)-(\d+)", part)
        try:
            if m:
                lo, hi = int(m.group(1)), int(m.group(2))
                if hi < lo:
                    raise ValueError
                seeds += list(range(lo, hi + 1))
            else:
                seeds.append(int(part))
        except ValueError:
            raise BenchmarkError(f"seeds: cannot read {part!r} in {text!r}; expected e.g. "
                                 "'0-4' or '0,1,7'") from None
    if not seeds or any(s < 0 for s in seeds):
        raise BenchmarkError(f"seeds: expected non-negative seeds, got {text!r}")
    return list(dict.fromkeys(seeds))


#: controllers run only when named in ``--controllers``: the gradient MPC
#: differentiates the plant over its horizon at every re-plan (minutes per cell)
OPT_IN = ("mpc-persistence", "mpc-perfect")


def _registry() -> dict[str, dict[str, Callable]]:
    """``heatsync.agents.BASELINES`` plus the gradient MPC factories (opt-in)."""
    from heatsync.agents import BASELINES
    from heatsync.agents.mpc import MPC_FACTORIES

    reg = {t: dict(per) for t, per in BASELINES.items()}
    for t, per in MPC_FACTORIES.items():
        reg.setdefault(t, {}).update(per)
    return reg


def _task_name(name: str) -> str:
    from heatsync.envs import make_task

    try:
        return make_task(name).name
    except ValueError as e:
        raise BenchmarkError(str(e)) from None


def resolve(cfg: BenchmarkConfig, registry: dict | None = None) -> _Plan:
    """Fill in the defaults of ``cfg`` and check every name."""
    from heatsync.envs import make_task
    from heatsync.physics import list_scenarios

    registry = _registry() if registry is None else registry
    tasks = [_task_name(t) for t in (cfg.tasks or TASK_ORDER)]
    tasks = list(dict.fromkeys(tasks))
    if cfg.scenarios:
        scen = {t: list(dict.fromkeys(cfg.scenarios)) for t in tasks}
    elif cfg.full:
        scen = {t: list_scenarios() for t in tasks}
    else:
        scen = {t: [make_task(t).default_scenario] for t in tasks}
    seeds = parse_seeds(cfg.seeds) if cfg.seeds is not None else \
        list(QUICK_SEEDS if cfg.quick else DEFAULT_SEEDS)
    if cfg.steps is not None:
        steps = int(cfg.steps)
        if steps < 1:
            raise BenchmarkError(f"steps: must be >= 1, got {steps}")
    else:
        steps = None if cfg.full else (QUICK_STEPS if cfg.quick else DEFAULT_STEPS)

    known = sorted({n for per in registry.values() for n in per})
    if cfg.controllers is not None:
        unknown = [c for c in cfg.controllers if c not in known]
        if unknown:
            raise BenchmarkError(
                f"controllers: unknown {unknown}; known baselines: {known or 'none'}"
                + ("" if registry else " (heatsync.agents.BASELINES is not available)"))
    controllers: dict[str, dict[str, Callable]] = {}
    for t in tasks:
        per = registry.get(t, {})
        names = [n for n in per if n not in OPT_IN] if cfg.controllers is None else \
            [c for c in cfg.controllers if c in per]
        controllers[t] = {n: per[n] for n in names}
    custom = list(dict.fromkeys(cfg.policies))
    policy_task = None
    if cfg.policy_task is not None:
        policy_task = _task_name(cfg.policy_task)
        if not custom:
            raise BenchmarkError("--task: names the task of --policy; no --policy given")
        if policy_task not in tasks:
            tasks.append(policy_task)
            controllers[policy_task] = {}
            scen[policy_task] = (list(cfg.scenarios) if cfg.scenarios else
                                 list_scenarios() if cfg.full else
                                 [make_task(policy_task).default_scenario])
    for spec in custom:
        for t in tasks:
            if policy_task is None or t == policy_task:
                controllers[t][spec] = _loader(spec)
    if not any(controllers.values()):
        raise BenchmarkError(
            "nothing to run: no controller for the selected tasks"
            + ("" if registry else " (heatsync.agents.BASELINES is not available; pass "
               "--policy module:attr)"))
    tasks = [t for t in tasks if controllers[t]]
    return _Plan(tasks=tasks, scenarios={t: scen[t] for t in tasks}, seeds=seeds, steps=steps,
                 controllers={t: controllers[t] for t in tasks}, custom=custom,
                 policy_task=policy_task)


def _loader(spec: str) -> Callable:
    """``factory(env)`` of a ``module:attr`` policy."""

    def make(env):
        from heatsync.agents import load_policy

        return load_policy(spec, env)

    make.spec = spec  # type: ignore[attr-defined]
    return make


def _probe(spec: str, task: str, scenario: str, n: int, steps: int | None) -> str | None:
    """Load ``spec`` for ``task`` (raises PolicyError if it does not load) and say why it
    does not fit the task's spaces (None if it fits). Builds the env, compiles nothing."""
    from heatsync.envs import JaxVectorEnv

    overrides = {} if steps is None else {"episode__steps": int(steps)}
    env = JaxVectorEnv(task, n, scenario=scenario, **overrides)
    return _fit_problem(_loader(spec)(env), env)


def _fit_problem(policy, env) -> str | None:
    """Why ``policy`` does not fit ``env`` (None if it does): one ``act`` on zeros."""
    from heatsync.envs import check_action

    obs = np.zeros((env.num_envs, *env.single_observation_space.shape), np.float32)
    try:
        a = policy.act(obs)
        check_action(np.asarray(a), env.single_action_space, batch=env.num_envs,
                     name="action")
    except Exception as e:  # a policy for another task fails in its own way
        return f"{type(e).__name__}: {e}"
    return None


# ---- one cell --------------------------------------------------------------------------------


@dataclasses.dataclass
class CellResult:
    """The outcome of :func:`run_cell`: one row per seed and the first seed's trace."""

    rows: list[dict]
    trace: dict[str, np.ndarray]
    wall_s: float
    policy_calls: int


def _tuned_split(tuned_on, scenario: str, seed: int) -> tuple[str, bool]:
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


def _final_plant_states(env, rngs, prev_states, actions, truncated, terminated):
    """The plant states at the end of the step from ``prev_states``: for rows
    ``truncated`` from the env's own compiled step with no time limit, for rows
    ``terminated`` from the single env's step. Returns a batched State of NumPy
    arrays (the other rows: unspecified)."""
    import jax
    import jax.numpy as jnp

    from heatsync.envs._core import drive_step, drive_vstep, structure_id
    from heatsync.physics import replace

    out = None
    if truncated.any():
        params = replace(env.params, episode_steps=jnp.asarray(
            _NO_LIMIT, dtype=jnp.result_type(env.params.episode_steps)))
        sid = structure_id(env.params, env.single_action_space.shape)
        _, states, _ = drive_vstep(env.task, sid, rngs, prev_states, actions, params)
        out = states.plant
    if terminated.any():  # rare: the single env's jitted step, row by row
        sid = structure_id(env.params, env.single_action_space.shape)
        rows = []
        for i in np.flatnonzero(terminated):
            _, st, _ = drive_step(env.task, sid, rngs[i], _row(prev_states, i), actions[i],
                                  env.params)
            rows.append((i, jax.tree.map(np.asarray, st.plant)))
        if out is None:
            out = jax.tree.map(lambda x: np.repeat(x[None], len(terminated), 0), rows[0][1])
        out = jax.tree.map(np.array, out)  # writable copies
        for i, st in rows:
            for o, x in zip(jax.tree.leaves(out), jax.tree.leaves(st), strict=True):
                o[i] = x
    return jax.tree.map(np.asarray, out)


def _where_rows(mask: np.ndarray, a, b):
    """Row-wise select between two batched pytrees: ``a`` where ``mask`` (N,), else ``b``."""
    import jax

    def sel(x, y):
        x, y = np.asarray(x), np.asarray(y)
        return np.where(mask.reshape((-1,) + (1,) * (x.ndim - 1)), x, y)

    return jax.tree.map(sel, a, b)


def _row(tree, i):
    import jax

    return jax.tree.map(lambda x: np.asarray(x)[i], tree)


def run_cell(task: str, scenario: str, factory: Callable, seeds: Sequence[int],
             steps: int | None = None, *, tuned_on: Any = None, controller: str = "",
             on_step: Callable[[int], None] | None = None) -> CellResult:
    """Run one episode per seed of ``factory(env)`` on ``task`` and ``scenario``.

    **Arguments**: task name, scenario (name or path), ``factory(env) -> Policy``
    (``env`` the :class:`~heatsync.envs.JaxVectorEnv` with one env per seed),
    seeds, ``steps`` (episode length; default: the scenario's), ``tuned_on``
    (overrides the policy's own ``tuned_on`` attribute), the controller name
    for the rows, ``on_step(n)`` called with every n steps done (progress).

    **Returns**: :class:`CellResult` with one CSV row per seed (see :func:`columns`)
    and the first seed's per-step trace for the plots.
    """
    import jax

    from heatsync.envs import JaxVectorEnv, check_action
    from heatsync.physics import KPI_DOC, OUTPUTS, compute_kpis

    t0 = time.perf_counter()
    seeds = [int(s) for s in seeds]
    overrides = {} if steps is None else {"episode__steps": int(steps)}
    env = JaxVectorEnv(task, len(seeds), scenario=scenario, **overrides)
    policy = factory(env)
    if tuned_on is None:
        tuned_on = getattr(policy, "tuned_on", None) or getattr(factory, "tuned_on", None)
    n, T = env.num_envs, int(env.params.episode_steps)
    if callable(getattr(policy, "reset", None)):
        policy.reset(seeds[0])
    act_state = getattr(policy, "act_state", None)
    act_state = act_state if callable(act_state) else None

    obs, _ = env.reset(seed=seeds)
    s0 = jax.tree.map(np.asarray, env.states.plant)
    sum_keys = [k for k in OUTPUTS]
    extra = ("p_grid_sub_w", "t_s", "o2_frac", "t_supply_c", "uc_soc", "ups_soc",
             "ln2_tank_kg")
    rec: dict[str, np.ndarray] = {}
    final = None
    ret = np.zeros(n)
    length = np.full(n, T)
    terminated = np.zeros(n, bool)
    active = np.ones(n, bool)
    calls = 0
    for t in range(T):
        if act_state is not None:
            a = act_state(obs, env.states, env.params)
        else:
            a = policy.act(obs)
        calls += 1
        a = check_action(np.asarray(a), env.single_action_space, batch=n,
                         name=f"{controller or 'policy'} action")
        rngs, prev = env._rngs, env.states
        obs, r, term, trunc, info = env.step(a)
        if not rec:
            for k in (*sum_keys, *extra):
                v = np.asarray(info[k])
                if k == "uc_soc":  # per rack -> mean
                    v = v.reshape(n, -1).mean(axis=1)
                rec[k] = np.zeros((T, *v.shape), v.dtype)
        for k in rec:
            v = np.asarray(info[k])
            rec[k][t] = v.reshape(n, -1).mean(axis=1) if k == "uc_soc" else v
        ret += np.where(active, r, 0.0)
        done = (term | trunc) & active
        if done.any():
            fs = _final_plant_states(env, rngs, prev, a, done & trunc, done & term)
            final = fs if final is None else _where_rows(done, fs, final)
            length[done] = t + 1
            terminated |= done & term
            active &= ~done
        if on_step is not None:
            on_step(1)
        if not active.any():
            if on_step is not None and T - t - 1 > 0:
                on_step(T - t - 1)
            break
    wall = time.perf_counter() - t0

    p = env.params.plant
    rows, trace = [], {}
    for i, seed in enumerate(seeds):
        L = int(length[i])
        series = {k: v[:L, i] for k, v in rec.items()}
        kpis = compute_kpis(p, _row(s0, i), _row(final, i), series)
        split, tuned_scenario = _tuned_split(tuned_on, env.scenario.name, seed)
        row = {"controller": controller, "task": env.task.name, "scenario": env.scenario.name,
               "episode_steps": T, "seed": seed, "steps": L,
               "terminated": int(terminated[i]), "split": split,
               "tuned_scenario": int(tuned_scenario), "return": float(ret[i]),
               "wall_s": wall}
        row.update({k: float(kpis[k]) for k in KPI_DOC})
        rows.append(row)
        if i == 0:
            trace = {k: np.asarray(series[k], np.float64) for k in TRACE_KEYS}
            trace["p_grid_sub_w"] = np.asarray(series["p_grid_sub_w"], np.float64).reshape(-1)
            trace["h_s"] = np.float64(p.h_s)
            trace["seed"] = np.int64(seed)
    env.close()
    return CellResult(rows=rows, trace=trace, wall_s=wall, policy_calls=calls)


# ---- files -----------------------------------------------------------------------------------


class _Prewarm:
    """Compile the vector env's reset and step of upcoming cells on background threads.

    Compilation dominates a short benchmark and XLA compiles on one core, so on
    a machine with two cores the next task compiles while this one runs. Each
    job is one throwaway reset and step of a ``JaxVectorEnv`` with the cells'
    batch size, which fills JAX's in-memory cache for exactly the calls the cell
    makes (same static task and structure, same shapes); jobs with the same
    structure compile once. Daemon threads, so an interrupted run exits at once.
    """

    def __init__(self, jobs: list[tuple[str, str]], n: int, steps: int | None,
                 workers: int | None = None):
        import queue
        import threading

        self.n, self.steps = n, steps
        self.lock = threading.Lock()
        self.structures: dict = {}  # (task, structure id) -> Event set when compiled
        self.done: dict = {}  # (task, scenario) -> Event
        self.jobs: queue.Queue = queue.Queue()
        for job in dict.fromkeys(jobs):
            self.done[job] = threading.Event()
            self.jobs.put(job)
        for _ in range(workers or min(2, _cores())):
            threading.Thread(target=self._work, daemon=True, name="heatsync-prewarm").start()

    def _work(self):
        import queue

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
        import threading

        from heatsync.envs import JaxVectorEnv
        from heatsync.envs._core import structure_id

        overrides = {} if self.steps is None else {"episode__steps": int(self.steps)}
        env = JaxVectorEnv(task, self.n, scenario=scenario, **overrides)
        key = (env.task.name, structure_id(env.params, env.single_action_space.shape))
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


_write_bytes_atomic = write_bytes_atomic  # the helpers live in heatsync._io
_write_text_atomic = write_text_atomic


_INT_COLUMNS = {"episode_steps", "seed", "steps", "terminated", "tuned_scenario"}
_STR_COLUMNS = {"controller", "task", "scenario", "split"}


def read_csv(path: Path) -> tuple[list[dict], list[str]]:
    """Rows of a benchmark CSV and a warning per line dropped.

    A line is dropped if it is not newline-terminated (cut off mid-write), has
    the wrong number of fields or a field that does not parse. Raises
    :class:`BenchmarkError` if the header differs from :func:`columns` (a CSV
    from another version: move it away or use another ``--out``).
    """
    path = Path(path)
    if not path.exists():
        return [], []
    cols = columns()
    text = path.read_text()
    lines = text.splitlines(keepends=True)
    if not lines:
        return [], []
    header = next(csv.reader([lines[0]]))
    if header != cols:
        raise BenchmarkError(
            f"{path}: its columns differ from this version's ({len(header)} vs {len(cols)}; "
            f"first difference near {_first_diff(header, cols)!r}); move it away or pass "
            "another --out")
    rows, warnings = [], []
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.endswith("\n"):
            warnings.append(f"{path}:{lineno}: dropped a line cut off mid-write")
            continue
        try:
            fields = next(csv.reader([line]))
            if len(fields) != len(cols):
                raise ValueError(f"{len(fields)} fields, expected {len(cols)}")
            row = {}
            for k, v in zip(cols, fields, strict=True):
                row[k] = v if k in _STR_COLUMNS else int(v) if k in _INT_COLUMNS else float(v)
        except (ValueError, StopIteration, csv.Error) as e:
            warnings.append(f"{path}:{lineno}: dropped an unreadable line ({e})")
            continue
        rows.append(row)
    return rows, warnings


def _first_diff(a, b):
    for x, y in zip(a, b, strict=False):
        if x != y:
            return x
    return a[len(b)] if len(a) > len(b) else b[len(a)] if len(b) > len(a) else None


def _key(row: dict) -> tuple:
    return tuple(row[k] for k in ID_COLUMNS)


def write_csv(path: Path, rows: list[dict]) -> None:
    """Write every row (sorted by cell and seed) atomically."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns(), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (repr(float(v)) if isinstance(v, float) else v) for k, v in r.items()})
    _write_text_atomic(Path(path), buf.getvalue())


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _trace_path(out: Path, task: str, scenario: str, T: int, controller: str) -> Path:
    return out / "traces" / task / f"{_safe(scenario)}_{T}" / f"{_safe(controller)}.npz"


def _save_trace(path: Path, trace: dict) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, **trace)
    _write_bytes_atomic(path, buf.getvalue())


def _load_trace(path: Path) -> dict | None:
    try:
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError):
        return None


# ---- the run ---------------------------------------------------------------------------------


@dataclasses.dataclass
class BenchmarkReport:
    """What :func:`run_benchmark` did: cells computed and skipped (resumed), the rows
    of the selection, policies that fit no task, files written, wall time."""

    computed: list[tuple] = dataclasses.field(default_factory=list)
    skipped: list[tuple] = dataclasses.field(default_factory=list)
    not_fitting: list[str] = dataclasses.field(default_factory=list)
    rows: list[dict] = dataclasses.field(default_factory=list)
    files: list[Path] = dataclasses.field(default_factory=list)
    policy_calls: int = 0
    wall_s: float = 0.0
    markdown: str = ""
    ranked: str = ""


def _episode_steps(task: str, scenario: str, steps: int | None, cache: dict) -> int:
    if steps is not None:
        return int(steps)
    if scenario not in cache:
        from heatsync.envs import make_task

        cache[scenario] = int(make_task(task).load(scenario).episode_steps)
    return cache[scenario]


def _scenario_name(task: str, scenario: str, cache: dict) -> str:
    """The scenario's own name (a YAML path resolves to the ``name`` inside)."""
    if scenario not in cache:
        from heatsync.envs import make_task

        cache[scenario] = make_task(task).load(scenario).name
    return cache[scenario]


def run_benchmark(cfg: BenchmarkConfig, *, registry: dict | None = None,
                  progress: bool = True, log: Callable[[str], None] | None = None
                  ) -> BenchmarkReport:
    """Run (or resume) the benchmark of ``cfg`` and write its files.

    **Arguments**: the config; ``registry`` (default ``heatsync.agents.BASELINES``,
    ``{task: {controller: factory(env)}}``); ``progress`` (a tqdm bar on stderr);
    ``log`` (messages; default stderr).

    **Returns**: a :class:`BenchmarkReport`.
    """
    from heatsync.agents import PolicyError

    log = log or (lambda msg: print(msg, file=sys.stderr))
    t_start = time.perf_counter()
    plan = resolve(cfg, registry)
    out = Path(cfg.out)
    csv_path = out / "benchmark.csv"
    rows, warnings = read_csv(csv_path)
    for w in warnings:
        log(f"warning: {w}")
    by_key = {_key(r): r for r in rows}
    len_cache: dict = {}
    name_cache: dict = {}

    # cells not finished (a cell missing any seed reruns with every seed, so that the
    # batch size, hence the compiled code, is the same for every cell)
    todo, report = [], BenchmarkReport()
    for task in plan.tasks:
        for scen in plan.scenarios[task]:
            name = _scenario_name(task, scen, name_cache)
            T = _episode_steps(task, scen, plan.steps, len_cache)
            for ctrl, factory in plan.controllers[task].items():
                cell = (ctrl, task, name, T)
                if all((*cell, s) in by_key for s in plan.seeds):
                    report.skipped.append(cell)
                else:
                    todo.append((cell, scen, factory))
    if report.skipped:
        log(f"resume: {len(report.skipped)} finished cell(s) read from {csv_path}, "
            "not recomputed")
    if warnings:  # drop the bad lines from the file now
        write_csv(csv_path, sorted(by_key.values(), key=_sort_key))

    # custom policies: load them and check their spaces before anything compiles
    for spec in plan.custom:
        for task in plan.tasks:
            mine = [c for c in todo if c[0][0] == spec and c[0][1] == task]
            if not mine:
                continue
            why = _probe(spec, task, mine[0][1], len(plan.seeds), plan.steps)
            if why is not None:
                msg = f"policy '{spec}' does not fit {task}: {why}"
                if plan.policy_task is not None:
                    raise PolicyError(msg)
                report.not_fitting.append(msg)
                todo = [c for c in todo if c not in mine]
        ran = [c for c in todo + [(k,) for k in report.skipped] if c[0][0] == spec]
        if not ran and report.not_fitting:
            raise PolicyError(f"policy '{spec}' fits none of the tasks "
                              f"({', '.join(plan.tasks)}): " + "; ".join(
                                  m for m in report.not_fitting if f"'{spec}'" in m))

    bar = None
    if progress and todo:
        from tqdm.auto import tqdm

        tty = sys.stderr.isatty()
        bar = tqdm(total=sum(c[0][3] for c in todo), unit="step", desc="benchmark",
                   dynamic_ncols=True, file=sys.stderr, mininterval=0.2 if tty else 15.0)
    warm = _Prewarm([(c[0][1], c[1]) for c in todo], len(plan.seeds), plan.steps) \
        if cfg.prewarm and todo else None
    try:
        for (ctrl, task, name, T), scen, factory in todo:
            if bar is not None:
                bar.set_description(f"{task}/{name} {ctrl}")
            if warm is not None:
                warm.wait(task, scen)
            res = run_cell(task, scen, factory, plan.seeds, plan.steps, controller=ctrl,
                           on_step=bar.update if bar is not None else None)
            report.policy_calls += res.policy_calls
            for r in res.rows:
                by_key[_key(r)] = r
            write_csv(csv_path, sorted(by_key.values(), key=_sort_key))
            _save_trace(_trace_path(out, task, name, T, ctrl), res.trace)
            report.computed.append((ctrl, task, name, T))
    finally:
        if bar is not None:
            bar.close()

    # the selection's rows, files
    selected = []
    for task in plan.tasks:
        for scen in plan.scenarios[task]:
            name = _scenario_name(task, scen, name_cache)
            T = _episode_steps(task, scen, plan.steps, len_cache)
            for ctrl in plan.controllers[task]:
                for s in plan.seeds:
                    r = by_key.get((ctrl, task, name, T, s))
                    if r is not None:
                        selected.append(r)
    report.rows = selected
    files = [csv_path]
    if cfg.plots:
        files += write_plots(out, selected, plan)
    report.wall_s = time.perf_counter() - t_start
    md, ranked = markdown(selected, plan, cfg, report, [p.relative_to(out) for p in files[1:]])
    _write_text_atomic(out / "BENCHMARK.md", md)
    files.append(out / "BENCHMARK.md")
    report.files, report.markdown, report.ranked = files, md, ranked
    return report


def _sort_key(r: dict):
    t = TASK_ORDER.index(r["task"]) if r["task"] in TASK_ORDER else len(TASK_ORDER)
    return (t, r["task"], r["scenario"], r["episode_steps"], r["controller"], r["seed"])


# ---- tables ----------------------------------------------------------------------------------


def _doc(kpi: str) -> str:
    from heatsync.physics import KPI_DOC

    return RETURN_DOC if kpi == "return" else KPI_DOC[kpi]


def _md(text: str) -> str:
    """Text safe inside a markdown table cell (pipes escaped)."""
    return text.replace("|", "\\|")


def _unit(kpi: str) -> str:
    """The unit at the end of a KPI_DOC entry (after the last comma), if it has one."""
    doc = _doc(kpi)
    if ", " in doc:
        tail = doc.rsplit(", ", 1)[1].strip()
        if len(tail) <= 8 and " " not in tail:
            return tail
    return ""


def fmt(mean: float, std: float) -> str:
    """``mean ± std`` as the tables print it (4 and 2 significant digits)."""
    return f"{mean:.4g} ± {std:.2g}"


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof = 1; 0 for a single value)."""
    v = np.asarray(values, dtype=np.float64)
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def _groups(rows: list[dict]) -> dict:
    """rows by task -> (scenario, T) -> split -> controller -> rows."""
    g: dict = {}
    for r in rows:
        g.setdefault(r["task"], {}).setdefault((r["scenario"], r["episode_steps"]), {}) \
            .setdefault(r["split"], {}).setdefault(r["controller"], []).append(r)
    return g


def _ranked(task: str, per_ctrl: dict[str, list[dict]]) -> list[str]:
    """Controllers in rank order: fewer episodes ended early first, then the main KPI."""
    kpi, how, _ = MAIN_KPI[task]
    sign = 1.0 if how == "min" else -1.0

    def key(c):
        rs = per_ctrl[c]
        early = np.mean([r["terminated"] for r in rs])
        m = mean_std([r[kpi] for r in rs])[0]
        return (early, sign * m if math.isfinite(m) else math.inf, c)

    return sorted(per_ctrl, key=key)


def _seeds_text(seeds: Iterable[int]) -> str:
    s = sorted(set(seeds))
    if s and s == list(range(s[0], s[-1] + 1)) and len(s) > 2:
        return f"{s[0]}-{s[-1]}"
    return ",".join(map(str, s))


def _ranked_table(task: str, per_ctrl: dict, tuned_marks: set[str]) -> list[str]:
    kpi, how, _ = MAIN_KPI[task]
    cols = [kpi] + (["return"] if kpi != "return" else []) + list(HEADLINE[task])
    head = ["rank", "controller"] + [f"`{c}`" + (f" ({_unit(c)})" if _unit(c) else "")
                                     for c in cols] + ["ended early", "seeds"]
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join(["---:", "---"] + ["---:"] * len(cols) + ["---:", "---"]) + "|"]
    for i, c in enumerate(_ranked(task, per_ctrl), start=1):
        rs = per_ctrl[c]
        cells = [fmt(*mean_std([r[k] for r in rs])) for k in cols]
        early = sum(r["terminated"] for r in rs)
        name = f"`{_md(c)}`" + (" †" if c in tuned_marks else "")
        lines.append("| " + " | ".join([str(i), name, *cells, f"{early}/{len(rs)}",
                                        _seeds_text(r["seed"] for r in rs)]) + " |")
    return lines


def _all_kpi_table(task: str, per_ctrl: dict) -> list[str]:
    from heatsync.physics import KPI_DOC

    order = _ranked(task, per_ctrl)
    lines = ["| KPI | " + " | ".join(f"`{_md(c)}`" for c in order) + " | meaning, unit |",
             "|---|" + "---:|" * len(order) + "---|"]
    for k in ["return", *KPI_DOC]:
        cells = [fmt(*mean_std([r[k] for r in per_ctrl[c]])) for c in order]
        lines.append(f"| `{k}` | " + " | ".join(cells) + f" | {_md(_doc(k))} |")
    return lines


#: per task, (KPI, how, allowance) side conditions under which a controller "beats" the
#: best baseline on the main KPI: no more lost work (PowerSmoothing); no throttling and no
#: overcooling (CoolingDispatch); ``allowance`` is the absolute slack
SIDE_CONDITIONS: dict[str, tuple[tuple[str, str, float], ...]] = {
    "PowerSmoothing": (("work_lost_frac", "le_best", 1e-4),),
    "CoolingDispatch": (("throttled_gpu_s", "zero", 0.0), ("overcool_k_s", "zero", 0.0)),
}


def _baseline_names(task: str) -> set[str]:
    from heatsync.agents import BASELINES

    return set(BASELINES.get(task, {}))


def _versus_table(task: str, per_ctrl: dict[str, list[dict]]) -> list[str]:
    """Each controller that is not a rule-based baseline (MPC, trained agents, user
    policies) against the best-ranked baseline on the same seeds, with the verdict."""
    base = _baseline_names(task)
    others = [c for c in per_ctrl if c not in base]
    bases = {c: rs for c, rs in per_ctrl.items() if c in base}
    if not others or not bases:
        return []
    kpi, how, _ = MAIN_KPI[task]
    side = SIDE_CONDITIONS.get(task, ())
    better = (lambda a, b: a < b) if how == "min" else (lambda a, b: a > b)
    head = ["controller", "seeds", f"`{kpi}`", "best baseline", f"its `{kpi}`",
            *[f"`{k}` (it / baseline)" for k, _, _ in side], "beats it?"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in _ranked(task, per_ctrl):
        if c not in others:
            continue
        seeds = {r["seed"] for r in per_ctrl[c]}
        same = {b: [r for r in rs if r["seed"] in seeds] for b, rs in bases.items()}
        same = {b: rs for b, rs in same.items() if len(rs) == len(seeds)}
        if not same:
            continue
        best = _ranked(task, same)[0]
        m_c = mean_std([r[kpi] for r in per_ctrl[c]])
        m_b = mean_std([r[kpi] for r in same[best]])
        ok = better(m_c[0], m_b[0]) and not any(r["terminated"] for r in per_ctrl[c])
        cells = []
        for k, rule, slack in side:
            v_c = mean_std([r[k] for r in per_ctrl[c]])[0]
            v_b = mean_std([r[k] for r in same[best]])[0]
            ok = ok and (v_c <= v_b + slack if rule == "le_best" else abs(v_c) <= slack)
            cells.append(f"{v_c:.4g} / {v_b:.4g}")
        lines.append("| " + " | ".join([f"`{_md(c)}`", _seeds_text(seeds), fmt(*m_c),
                                        f"`{_md(best)}`", fmt(*m_b), *cells,
                                        "**yes**" if ok else "no"]) + " |")
    return lines


def markdown(rows: list[dict], plan: _Plan, cfg: BenchmarkConfig, report: BenchmarkReport,
             plots: list[Path]) -> tuple[str, str]:
    """``(BENCHMARK.md text, the ranked tables alone)`` from the selection's rows."""
    import jax

    import heatsync

    steps_all = sorted({r["episode_steps"] for r in rows})
    cmd = cfg.command or "heatsync._benchmark.run_benchmark(...)"
    head = [
        "# heatsync benchmark", "",
        f"Produced by `{cmd}` (heatsync {heatsync.__version__}, JAX {jax.__version__} on "
        f"{jax.default_backend()}, {_cpu()}, {_cores()} cores) on "
        f"{datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}: {len(report.computed)} "
        f"cell(s) computed and {len(report.skipped)} read back from `benchmark.csv`, "
        f"{report.wall_s:.0f} s wall for this invocation; the cells' own wall time (env build "
        f"and compile included) sums to {_cells_wall(rows):.0f} s.", "",
        f"Each cell (controller, task, scenario) runs seeds {_seeds_text(plan.seeds)} together "
        "as the envs of one `JaxVectorEnv`, one episode each of "
        f"{', '.join(map(str, steps_all)) or '-'} control intervals (timesteps) of "
        f"{_dt_text(rows)}; tables give mean ± sample std over seeds (KPIs from "
        "`heatsync.physics.compute_kpis`, units from `KPI_DOC`). Every row is in "
        "`benchmark.csv`.", "",
        "Ranking: runs whose episodes ended early (a trip, an oxygen hazard or unserved "
        "energy, where the task terminates on it) rank last, then the task's main KPI:", "",
        "| task | main KPI | better | why |", "|---|---|---|---|",
    ]
    for t in plan.tasks:
        k, how, why = MAIN_KPI[t]
        head.append(f"| {t} | `{k}` ({_md(_doc(k))}) | {'lower' if how == 'min' else 'higher'} "
                    f"| {why} |")
    head += ["", "Held-out vs tuned-on: a controller that declares `tuned_on` (scenarios and "
             "seeds used to tune its constants) has its rows on those scenarios *and* seeds "
             "in a separate *tuned-on* table; † marks a controller tuned on the scenario "
             "(with other seeds). The other tables hold held-out rows only.", ""]
    if report.not_fitting:
        per: dict[str, list[str]] = {}
        for m in report.not_fitting:
            hit = re.match(r"policy '(.+)' does not fit (\w+): ", m)
            per.setdefault(hit.group(1) if hit else m, []).append(hit.group(2) if hit else "")
        head += ["Not run where the policy's spaces do not fit the task's:", ""]
        head += [f"- `{_md(p)}`: " + ", ".join(t for t in ts if t) if any(ts) else f"- {p}"
                 for p, ts in per.items()]
        head.append("")

    body, ranked = [], []
    groups = _groups(rows)
    for task in plan.tasks:
        if task not in groups:
            continue
        kpi, how, _ = MAIN_KPI[task]
        body += [f"## {task}", ""]
        ranked += [f"## {task} (ranked by `{kpi}`, {'lower' if how == 'min' else 'higher'} "
                   "is better)", ""]
        for (scen, T), splits in sorted(groups[task].items()):
            tuned_marks = {r["controller"] for sp in splits.values() for rs in sp.values()
                           for r in rs if r["tuned_scenario"]}
            for split in ("held-out", "tuned-on"):
                if split not in splits:
                    continue
                label = "" if split == "held-out" else " — tuned-on (optimistic)"
                title = f"### {scen}, {T} steps{label}"
                table = _ranked_table(task, splits[split], tuned_marks)
                legend = [f"`{k}`: {_doc(k)}" for k in
                          dict.fromkeys([kpi, "return", *HEADLINE[task]])]
                body += [title, "", *table, "", "; ".join(legend) + ".", ""]
                versus = _versus_table(task, splits[split]) if split == "held-out" else []
                if versus:
                    cond = "; ".join(
                        f"`{k}` " + ("no higher than the baseline's" if rule == "le_best"
                                     else "zero") for k, rule, _ in SIDE_CONDITIONS.get(task, ()))
                    body += [f"Versus the best rule-based baseline on the same held-out seeds "
                             f"(it beats it when `{kpi}` is better"
                             + (f" and {cond}" if cond else "") + ", with no episode ended "
                             "early):", "", *versus, ""]
                body += [f"Every KPI, {scen}, {T} steps{label}:", "",
                         *_all_kpi_table(task, splits[split]), ""]
                ranked += [title, "", *table, ""]
                if versus:
                    ranked += ["Versus the best rule-based baseline (same seeds):", "",
                               *versus, ""]
        for p in plots:
            if p.name.startswith(f"{task}_"):
                body += [f"![{p.stem}]({p.as_posix()})", ""]
    text = "\n".join(head + body).rstrip() + "\n"
    return text, "\n".join(ranked).rstrip() + "\n"


def _cells_wall(rows) -> float:
    """Sum of the cells' wall times (a cell's rows share its ``wall_s``)."""
    cells = {(r["controller"], r["task"], r["scenario"], r["episode_steps"]): r["wall_s"]
             for r in rows}
    return float(sum(cells.values()))


def _dt_text(rows) -> str:
    dts = set()
    for r in rows:
        if r["steps"] > 0:
            dts.add(round(r["duration_s"] / r["steps"], 6))
    return ", ".join(f"{d:g} s" for d in sorted(dts)) or "-"


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


# ---- plots -----------------------------------------------------------------------------------


def _plot_cell(task: str, plan: _Plan, rows: list[dict]) -> tuple[str, int] | None:
    """The (scenario, T) a task's episode plot shows: its default scenario if run."""
    from heatsync.envs import make_task

    have = sorted({(r["scenario"], r["episode_steps"]) for r in rows if r["task"] == task})
    if not have:
        return None
    default = make_task(task).default_scenario
    for s, T in have:
        if s == default:
            return s, T
    return have[0]


def _save_fig(fig, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    _write_bytes_atomic(path, buf.getvalue())


def write_plots(out: Path, rows: list[dict], plan: _Plan) -> list[Path]:
    """Per task: ``plots/<Task>_episode.png`` and ``plots/<Task>_kpis.png``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    written = []
    for task in plan.tasks:
        cell = _plot_cell(task, plan, rows)
        if cell is None:
            continue
        scen, T = cell
        ctrls = list(plan.controllers[task])
        # one episode of each controller
        fig = Figure(figsize=(11, 11), layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(4, 2).ravel()
        titles = ["grid power, 1-s interval mean (kW)",
                  f"grid power, last {ZOOM_S:g} s at substep resolution (kW)",
                  "hottest junction (degC)", "coolant supply (degC)",
                  "state of charge (solid: ultracapacitor mean, dashed: UPS)",
                  "LN2 in the tank (kg)", "room oxygen (%)", None]
        seed = None
        for i, ctrl in enumerate(ctrls):
            tr = _load_trace(_trace_path(out, task, scen, T, ctrl))
            if tr is None or tr["t_s"].size == 0:
                continue
            seed = int(tr["seed"])
            # earlier controllers drawn wider, so identical curves stay visible
            style = {"color": f"C{i % 10}", "lw": max(2.4 - 0.5 * i, 0.7), "alpha": 0.85}
            t = tr["t_s"]
            h = float(tr["h_s"])
            fine = tr["p_grid_sub_w"]
            tf = t[0] - (fine.size // t.size) * h + h * np.arange(1, fine.size + 1)
            zoom = tf > tf[-1] - ZOOM_S
            axes[0].plot(t, tr["p_grid_mean_w"] / 1e3, label=ctrl, **style)
            axes[1].plot(tf[zoom], fine[zoom] / 1e3, **style)
            axes[2].plot(t, tr["t_junction_max_c"], **style)
            axes[3].plot(t, tr["t_supply_c"], **style)
            axes[4].plot(t, tr["uc_soc"], **style)
            axes[4].plot(t, tr["ups_soc"], ls="--", **style)
            axes[5].plot(t, tr["ln2_tank_kg"], **style)
            axes[6].plot(t, tr["o2_frac"] * 100.0, **style)
        for title, ax in zip(titles, axes, strict=True):
            if title is None:
                continue
            ax.set_title(title, fontsize=9)
            ax.grid(alpha=0.3)
            ax.set_xlabel("time (s)", fontsize=8)
        handles, labels = axes[0].get_legend_handles_labels()
        axes[7].axis("off")
        axes[7].legend(handles, labels, loc="center", fontsize=9, title="controller")
        fig.suptitle(f"{task} on {scen}: one episode (seed {seed}) of each controller, "
                     f"{T} steps", fontsize=11)
        path = out / "plots" / f"{task}_episode.png"
        _save_fig(fig, path)
        written.append(path)

        # KPI bars: mean ± std per controller, grouped by scenario
        kpis = list(dict.fromkeys([MAIN_KPI[task][0], *HEADLINE[task]]))[:6]
        groups = _groups([r for r in rows if r["task"] == task and r["split"] == "held-out"])
        cells = sorted(groups.get(task, {}))
        if not cells:
            continue
        fig = Figure(figsize=(12, 6.5), layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(2, 3).ravel()
        width = 0.8 / max(len(ctrls), 1)
        x = np.arange(len(cells))
        for ax, k in zip(axes, kpis, strict=False):
            for i, ctrl in enumerate(ctrls):
                ms = [mean_std([r[k] for r in groups[task][c]["held-out"].get(ctrl, [])])
                      if ctrl in groups[task][c].get("held-out", {}) else (np.nan, 0.0)
                      for c in cells]
                ax.bar(x + (i - (len(ctrls) - 1) / 2) * width, [m for m, _ in ms], width,
                       yerr=[s for _, s in ms], color=f"C{i % 10}", label=ctrl, capsize=2)
            unit = _unit(k)
            ax.set_title(f"{k}" + (f" ({unit})" if unit else ""), fontsize=9)
            ax.set_xticks(x, [f"{s}\n{T}" for s, T in cells], fontsize=7)
            ax.grid(alpha=0.3, axis="y")
        for ax in axes[len(kpis):]:
            ax.set_visible(False)
        axes[0].legend(fontsize=7)
        fig.suptitle(f"{task}: KPIs, mean ± std over seeds (held-out rows; x: scenario, steps)",
                     fontsize=11)
        path = out / "plots" / f"{task}_kpis.png"
        _save_fig(fig, path)
        written.append(path)
    return written


# ---- command line ----------------------------------------------------------------------------

EPILOG = """\
Defaults. With no arguments: every baseline of each task on the task's default
scenario, seeds 0-4, %(default_steps)d steps each (about three minutes on 2 CPU
cores, compile included). --full: every bundled scenario at its own episode
length. --quick: seeds 0-1, %(quick_steps)d steps. Explicit --scenarios,
--seeds and --steps override the mode.

Files (in --out, each written atomically): benchmark.csv (one row per
controller, task, scenario, seed: every KPI of KPI_DOC, the episode return,
steps run, wall time), BENCHMARK.md (ranked mean ± std tables), plots/*.png,
traces/ (per-step series of each cell's first seed, for the plots).

Resume. Interrupt at any time and run the same command again: finished cells
are read from benchmark.csv and not recomputed; a cut-off last line is dropped.
Delete benchmark.csv (or use another --out) to recompute everything.

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
        epilog=EPILOG % {"default_steps": DEFAULT_STEPS, "quick_steps": QUICK_STEPS})
    ap.add_argument("--controllers", type=_csv_list, default=None, metavar="A,B",
                    help="controllers to run, comma-separated (names from "
                         "heatsync.agents.BASELINES, plus the gradient MPC 'mpc-persistence' "
                         "and 'mpc-perfect', which run only when named; default: every "
                         "baseline of each task; 'none': only --policy)")
    ap.add_argument("--tasks", type=_csv_list, default=None, metavar="T1,T2",
                    help=f"tasks, names or env ids (default: {', '.join(TASK_ORDER)})")
    ap.add_argument("--scenarios", type=_csv_list, default=None, metavar="S1,S2",
                    help="scenario names or YAML paths, run on every task (default: each "
                         "task's default scenario; --full: all bundled; 'all': all bundled)")
    ap.add_argument("--seeds", default=None, metavar="SEEDS",
                    help="seeds, e.g. '0-4' or '0,3,7' (default 0-4; --quick 0-1)")
    ap.add_argument("--steps", type=int, default=None,
                    help=f"episode length in control intervals (default {DEFAULT_STEPS}; "
                         f"--quick {QUICK_STEPS}; --full: each scenario's own)")
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
    ap.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    ap.add_argument("--jax-cache", default=None, metavar="DIR",
                    help="persistent JAX compilation cache, so a resumed or repeated run "
                         "skips most compile time (default: ~/.cache/heatsync/jax; "
                         "'none' disables)")
    return ap


def _enable_jax_cache(where: str | None) -> None:
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
        command=" ".join(["python", prog, *argv_list]))
    _enable_jax_cache(args.jax_cache)
    try:
        if cfg.seeds is not None:
            cfg.seeds = parse_seeds(cfg.seeds)
        report = run_benchmark(cfg, registry=registry, progress=not args.no_progress)
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
