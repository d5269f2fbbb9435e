"""Gradient MPC: receding-horizon control by gradient descent through the plant.

At each re-plan the controller optimizes a sequence of ``K`` actions, each held
for ``hold_s`` seconds, over a horizon of ``K x hold_s`` seconds, by ``iters``
steps of Adam (optax) on the summed cost of a rollout of the jitted,
differentiable plant; it applies the first action of the plan for ``hold_s``
seconds, then re-plans from the plan shifted by one action (the last action
repeated) as warm start. Batched over envs with ``vmap``; the whole optimizer
(every iteration) is one jitted call per batch size.

**Decision variables**: ``z`` of shape (K, n), unconstrained (bounded to
``|z| <= 3`` after each update); ``clip(1.05 tanh(z), -1, 1)`` (:func:`to_action`; the
factor lets a plan sit exactly at a range's end, and the clip passes gradients straight
through) is each component's position in its physical range (linear, or log-uniform for
the ramp limits), which the env's own layout encodes into the applied action
(:func:`plan_actions`): every planned and applied action is inside its range by
construction, and the planner sees no flat part of the env's action map. The first plan
starts from the scenario's fixed setpoints (action 0, :func:`plan_of_actions`) and gets
``iters_first`` iterations; later plans warm-start from the shifted previous
plan and get ``iters``. Switch actuators are not optimized (no gradient through a
switch): ``ln2_order`` orders LN2 when the tank is below ``ln2_order_below``
of its capacity, and in Facility the scheduling components start the first
visible job whenever it fits, half a period ahead of the largest running job.

**Cost** (USD, summed over the horizon): the model rollout is the task's own step
(:meth:`heatsync.envs.Task.advance` under the forecast), so the cost is ``-reward``
of the model rollout (every cost and penalty term of the task's
:class:`heatsync.envs.Reward`), plus smooth penalties (:class:`Penalties`)
for the limits the reward only prices after the fact: squared hinges on the
junction above ``t_slowdown_c - junction_margin_k``, the supply below the
condensation floor + ``supply_margin_k`` and above ``supply_max_c``, UPS and
ultracapacitor state of charge outside their bands (and a terminal charge on
state of charge lost over the horizon), the grid ramp above its limit, and
room oxygen below the alarm + ``o2_margin``.

**Model**: the plant itself (``heatsync.physics.step``). By default the model
uses the env's interval and substeps (exact). For long horizons,
``model_dt_s`` / ``model_sub_s`` run the model on a coarser interval (e.g.
10 s of 0.5 s substeps, 5x fewer substeps than 1 s of 0.1 s); extensive terms
(energy, throttling, LN2 ...) then sum to the same totals, and the intensive
ones (band RMS, mean ramp excess) are scaled by the interval ratio. Every
model step is wrapped in ``jax.checkpoint``, so gradient memory grows with the
number of model steps, not with the substeps inside.

**Forecasts** of the exogenous inputs over the horizon: ``"perfect"`` uses
the true exogenous function with the env's key (an upper bound: the
controller sees faults coming); ``"persistence"`` holds the current values
(ambient, price, carbon, fault flags, job windows) over the horizon (what a
real controller could do).

Usage (the benchmark calls ``act_state`` with the batched functional state)::

    from heatsync.envs import JaxVectorEnv
    from heatsync.agents.mpc import MPC_FACTORIES

    envs = JaxVectorEnv("CoolingDispatch", num_envs=3)
    policy = MPC_FACTORIES["CoolingDispatch"]["mpc-persistence"](envs)
    obs, _ = envs.reset(seed=0)
    obs, *_ = envs.step(policy.act_state(obs, envs.states, envs.params))
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

from heatsync.envs import make_task

from ._planner import (
    MPCConfig,
    Penalties,
    _cost_each,
    _costs_batch,
    _emit_batch,
    _init_plan,
    _plan_batch,
    _start_candidates,
    _static,
    from_action,
    plan_actions,
    plan_cost,
    plan_of_actions,
    plant_layout,
    shift_plan,
    to_action,
)

__all__ = ["MPCConfig", "Penalties", "GradientMPC", "MPC_FACTORIES", "DEFAULTS", "plant_layout",
           "shift_plan", "plan_cost", "make_mpc", "to_action", "from_action", "plan_actions",
           "plan_of_actions"]

#: tuned defaults per task (see the module docstring and scripts/_mpc_eval.py)
DEFAULTS = {
    "PowerSmoothing": MPCConfig(horizon_s=30.0, hold_s=10.0, iters=10, iters_first=40,
                                term_scale=(("lost_work", 20.0),)),
    "CoolingDispatch": MPCConfig(horizon_s=900.0, hold_s=60.0, model_dt_s=10.0,
                                 model_sub_s=0.5, iters=10, iters_first=30,
                                 start_grid=(("supply_setpoint_c",
                                              (-1.0, -0.5, 0.0, 0.5, 1.0)),),
                                 penalties=Penalties(junction_margin_k=1.0)),
    "Facility": MPCConfig(horizon_s=30.0, hold_s=10.0, iters=10, iters_first=40,
                          term_scale=(("lost_work", 20.0),)),
}

# ---- the policy -----------------------------------------------------------------------------


class GradientMPC:
    """Receding-horizon gradient MPC as a :class:`heatsync.agents.Policy`.

    **Arguments**: ``env`` (a :class:`heatsync.envs.JaxVectorEnv` or a heatsync
    Gymnasium env; gives the task and, for :meth:`act`, the state), or
    ``task`` by name; ``config`` (:class:`MPCConfig`; default: the task's tuned
    :data:`DEFAULTS`) and keyword overrides of its fields.

    :meth:`act_state` ``(obs, env_state, params)`` takes the (batched)
    functional :class:`heatsync.envs.EnvState`; :meth:`act` ``(obs)`` reads the
    state from the env given at construction. ``last_info`` holds, after each
    call, whether it re-planned, the plan cost before and after optimization
    (per env) and the wall time of the call.
    """

    def __init__(self, env=None, *, task=None, config: MPCConfig | None = None, **overrides):
        if task is None:
            if env is None:
                raise ValueError("GradientMPC: give an env or a task")
            task = env.task if hasattr(env, "task") else env.unwrapped.task
        self.task = make_task(task)
        if self.task.name not in DEFAULTS:
            raise ValueError(f"GradientMPC: task {self.task.name!r} is not supported; "
                             f"supported: {sorted(DEFAULTS)}")
        cfg = DEFAULTS[self.task.name] if config is None else config
        self.config = dataclasses.replace(cfg, **overrides) if overrides else cfg
        #: the weights and step sizes of DEFAULTS were set by hand on the task's default
        #: scenario with seeds 0-2 (the benchmark reports other seeds as held-out)
        self.tuned_on = {"scenarios": [self.task.default_scenario], "seeds": [0, 1, 2]}
        self.env = env
        self.last_info: dict = {}
        self.reset()

    def reset(self, seed=None):
        """Forget the plan (the next call plans from the fixed setpoints)."""
        del seed
        self._z = None
        self._since = 0
        self._t_prev = None
        self._st = None
        self._st_key = None

    def _static_for(self, params):
        key = (float(params.plant.dt_s), float(params.plant.h_s), params.plant.n_sub)
        if self._st is None or self._st_key != key:
            self._st = _static(self.task, params, self.config)
            self._st_key = key
        return self._st

    @property
    def replan_every(self) -> int:
        """Env steps between re-plans (``hold_s`` / env dt); known after the first call."""
        st = self._st
        return 0 if st is None else st.hold * st.ratio

    @property
    def plan(self):
        """The current plan ``z`` (N, K, n) as NumPy (``None`` before the first call)."""
        return None if self._z is None else np.asarray(self._z)

    def act(self, obs):
        """Act from the env given at construction (its functional state and params)."""
        env = self.env
        if env is None:
            raise RuntimeError("GradientMPC.act needs the plant state: call act_state(obs, "
                               "env_state, params) or build the policy with the env")
        if hasattr(env, "states"):
            return self.act_state(obs, env.states, env.params)
        base = env.unwrapped
        return self.act_state(obs, base.state, base.params)

    def act_state(self, obs, env_state, params):
        """Actions (numpy float32, batched like ``obs``) from the functional state."""
        t_start = time.perf_counter()
        obs = np.asarray(obs)
        single = obs.ndim == 1
        if single:
            env_state = jax.tree.map(lambda x: jnp.asarray(x)[None], env_state)
        st = self._static_for(params)
        t_now = np.asarray(env_state.t).reshape(-1)
        n = t_now.shape[0]
        replan = (self._z is None or self._z.shape[0] != n or self._since >= self.replan_every)
        restarted = (np.zeros(n, bool) if self._t_prev is None or self._t_prev.shape != t_now.shape
                     else t_now < self._t_prev)
        info = {"replanned": bool(replan or restarted.any())}
        if info["replanned"]:
            z_init = np.asarray(_init_plan(st, params))
            if self._z is None or self._z.shape[0] != n:
                z0 = np.broadcast_to(z_init, (n,) + z_init.shape)
            else:
                z0 = np.where(restarted[:, None, None], z_init[None], _shift_batch(self._z))
            cold = self._z is None or self._z.shape[0] != n or restarted.all()
            cfg = self.config
            if cfg.start_grid:  # multi-start: the warm plan against the constant plans
                cands = _start_candidates(st, params, z_init)
                c_grid = np.asarray(_costs_batch(st, jnp.asarray(cands), env_state, params))
                c_warm = np.asarray(_cost_each(st, jnp.asarray(z0), env_state, params))
                best = np.argmin(c_grid, axis=1)
                take = c_grid[np.arange(n), best] < c_warm
                z0 = np.where(take[:, None, None], cands[best], z0)
            n_iters, lr = (cfg.iters_first, cfg.lr) if cold else (cfg.iters, cfg.lr_warm)
            self._z0 = jnp.asarray(z0)
            z, c0, c1 = _plan_batch(st, self._z0, env_state, params, jnp.int32(n_iters),
                                    jnp.float32(lr))
            self._z = z
            self._since = 0
            info["cost_before"] = np.asarray(c0)
            info["cost_after"] = np.asarray(c1)
        a = np.asarray(_emit_batch(st, self._z[:, 0], env_state, params), dtype=np.float32)
        self._since += 1
        self._t_prev = t_now
        info["wall_s"] = time.perf_counter() - t_start
        self.last_info = info
        return a[0] if single else a


def _shift_batch(z):
    """:func:`shift_plan` for a batch of plans (N, K, n)."""
    z = np.asarray(z)
    return np.concatenate([z[:, 1:], z[:, -1:]], axis=1)


def make_mpc(task: str, **overrides):
    """A factory ``factory(env) -> GradientMPC`` for ``task`` with config overrides."""

    def factory(env=None):
        return GradientMPC(env, task=task, **overrides)

    factory.__name__ = f"mpc_{task}"
    return factory


#: name -> factory(env), per task, for the benchmark registry (heatsync.agents.BASELINES)
MPC_FACTORIES = {
    task: {"mpc-persistence": make_mpc(task, forecast="persistence"),
           "mpc-perfect": make_mpc(task, forecast="perfect")}
    for task in ("PowerSmoothing", "CoolingDispatch", "Facility")
}
