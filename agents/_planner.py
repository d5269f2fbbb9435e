"""The gradient planner behind :mod:`heatsync.agents.mpc`: plan variables and their
squashing map, the model rollout's cost (the task's reward plus smooth penalties) and the
Adam descent, batched over envs (private to :mod:`heatsync.agents`)."""

from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax

from heatsync.envs import make_task
from heatsync.envs.facility import scheduling_layout
from heatsync.envs.reward import ramp_excess_w
from heatsync.physics import exogenous_at, replace
from heatsync.physics.ups import floor_j

__all__ = ["MPCConfig", "Penalties", "plant_layout", "to_action", "from_action", "shift_plan",
           "plan_actions", "plan_of_actions",
           "plan_cost", "INTENSIVE_TERMS", "SAT", "Z_MAX"]

#: reward terms that are means over an interval (not sums): scaled by the model's interval ratio
INTENSIVE_TERMS = ("band", "ramp")


@dataclasses.dataclass(frozen=True)
class Penalties:
    """Smooth constraint penalties on top of the reward (USD), per env step (1 s).

    Each is ``usd_per_unit x weight x hinge(violation / scale) ** 2``: a weight of 1 costs
    ``usd_per_unit`` (about a step of the pod's energy) at a violation of 1 K, 1e-3 of
    oxygen fraction, or a grid ramp excess of the contract per second; state of charge is
    in units of capacity: the UPS is kept above its ride-through reserve (the band's
    lower end raised to it) and below ``ups_soc_band[1]``, ultracapacitors inside a band;
    the reward's own ``storage_value`` term already charges for stored energy used, so
    the terminal ``w_soc_end`` charge is 0 by default.
    """

    usd_per_unit: float = 0.05  #: USD of a unit of penalty (weight 1 at the unit violation)
    junction_margin_k: float = 2.0  #: keep the hottest junction below t_slowdown_c - this
    w_junction: float = 1.0  #: per K^2 above the margin, per step
    supply_margin_k: float = 1.0  #: keep the supply above condensation_floor_c + this
    w_overcool: float = 1.0  #: per K^2 below the margin, per step
    supply_max_c: float = 45.0  #: warmest allowed supply (W45 coolant class), degC
    w_supply_high: float = 0.01  #: per K^2 above supply_max_c, per step
    ups_soc_band: tuple = (0.0, 0.98)  #: keep UPS SoC inside (the reserve raises the low end)
    w_ups_soc: float = 1.0e4  #: per (UPS SoC outside its band)^2, per step
    uc_soc_band: tuple = (0.05, 0.95)  #: keep ultracapacitor SoC inside this band
    w_uc_soc: float = 10.0  #: per (mean over racks of SoC outside the band)^2, per step
    w_soc_end: float = 0.0  #: per unit of SoC lost over the horizon (UPS; mean of UCs), once
    w_ramp: float = 1.0  #: per (mean grid ramp above the limit / contract limit per s)^2, per step
    o2_margin: float = 0.005  #: keep room O2 above o2_alarm_frac + this
    w_o2: float = 1.0  #: per (1e-3 of O2 fraction below the margin)^2, per step


@dataclasses.dataclass(frozen=True)
class MPCConfig:
    """Settings of :class:`GradientMPC` (hashable: one compiled planner per config).

    ``horizon_s``: planning horizon; ``hold_s``: each planned action is held
    this long, which is also the re-plan interval (the plan has
    ``ceil(horizon_s / hold_s)`` actions); ``model_dt_s`` / ``model_sub_s``: the
    model's control interval and substep (``None``: the env's); ``iters``,
    ``iters_first``, ``lr``: Adam iterations and step size (in ``z`` units) of the
    first, cold-started plan; ``iters``, ``lr_warm``: the same for the warm-started
    re-plans (the step size decays to a tenth over a plan's iterations, cosine);
    ``forecast``: ``"persistence"`` or ``"perfect"``; ``ln2_order_below``:
    tank fill below which LN2 is ordered; ``checkpoint``: rematerialize each
    model step in the backward pass; ``term_scale``: ``(term, factor)`` pairs that
    multiply the reward's weight of a term inside the MPC's cost (e.g.
    ``(("lost_work", 20.0),)`` to make lost work a near-hard constraint);
    ``start_grid``: ``(segment, values)`` pairs: at each re-plan the warm start is
    compared with constant plans that hold that segment at each normalized value in
    ``values`` (the other actuators at the fixed setpoints), and the descent starts
    from the cheapest (a multi-start against local minima, e.g. the supply setpoint
    between the chiller and free-cooling regimes); ``penalties``: :class:`Penalties`.
    """

    horizon_s: float = 30.0
    hold_s: float = 10.0
    model_dt_s: float | None = None
    model_sub_s: float | None = None
    iters: int = 20
    iters_first: int = 60
    lr: float = 0.2
    lr_warm: float = 0.05
    forecast: str = "persistence"
    ln2_order_below: float = 0.25
    checkpoint: bool = True
    term_scale: tuple = ()
    start_grid: tuple = ()
    penalties: Penalties = Penalties()

    def __post_init__(self):
        if self.forecast not in ("persistence", "perfect"):
            raise ValueError(f"forecast: {self.forecast!r}; allowed: 'persistence', 'perfect'")
        if not (self.horizon_s > 0 and self.hold_s > 0 and self.horizon_s >= self.hold_s):
            raise ValueError(f"horizon_s = {self.horizon_s}, hold_s = {self.hold_s}: need "
                             "0 < hold_s <= horizon_s")
        if self.iters < 0 or self.iters_first < 0 or not (self.lr > 0 and self.lr_warm > 0):
            raise ValueError(f"iters = {self.iters}, iters_first = {self.iters_first}, lr = "
                             f"{self.lr}, lr_warm = {self.lr_warm}: need iters >= 0, "
                             "iters_first >= 0, lr > 0, lr_warm > 0")


#: normalized action = clip(SAT x tanh(z), -1, 1): SAT > 1 lets a plan reach a range's ends
SAT = 1.05
#: |z| bound after each update (tanh(3) x SAT = 1.045: just past the ends, slope kept)
Z_MAX = 3.0


# ---- action layout --------------------------------------------------------------------------


def plant_layout(task, params):
    """The action layout the planner optimizes: the task's whole Box layout (its switch
    components, ``step`` and ``bins``, are set by rule, not optimized)."""
    return make_task(task).layout(params)


def to_action(z):
    """Normalized actions in [-1, 1] from plan variables: ``clip(SAT tanh(z), -1, 1)``,
    with a straight-through gradient at the clip (so a plan at a range's end can leave it)."""
    a = SAT * jnp.tanh(z)
    return a + jax.lax.stop_gradient(jnp.clip(a, -1.0, 1.0) - a)


def from_action(a):
    """Plan variables for normalized actions ``a`` (the inverse of :func:`to_action`)."""
    return jnp.arctanh(jnp.clip(jnp.asarray(a) / SAT, -1.0 / SAT, 1.0 / SAT))


def _unit_values(layout, w):
    """Physical values by segment at unit coordinates ``w`` in [-1, 1] (..., n): the ends
    of each range at -1 and 1, linear (log-uniform for ``logcenter``) between."""
    out = {}
    for s in layout:
        u = 0.5 * (w[..., layout.slices[s.name]] + 1.0)
        lo, hi = jnp.asarray(s.lo, w.dtype), jnp.asarray(s.hi, w.dtype)
        if s.scale == "logcenter":
            out[s.name] = jnp.exp(jnp.log(lo) + u * (jnp.log(hi) - jnp.log(lo)))
        else:
            out[s.name] = lo + u * (hi - lo)
    return out


def plan_actions(layout, z):
    """Env actions (..., n) of plan variables ``z``: each component's position in its
    physical range is ``to_action(z)``, encoded by the env's own layout. The planner
    thus sees no flat part of the action map (a default at an end of its range makes
    half of the env's [-1, 1] flat) and reaches every setting."""
    return layout.encode(_unit_values(layout, to_action(z)), xp=jnp)


def plan_of_actions(layout, a):
    """Plan variables of env actions ``a`` (the inverse of :func:`plan_actions`)."""
    v = layout.decode(a)
    parts = []
    for s in layout:
        x = jnp.reshape(jnp.asarray(v[s.name]), jnp.shape(a)[:-1] + (s.size,))
        lo, hi = jnp.asarray(s.lo, x.dtype), jnp.asarray(s.hi, x.dtype)
        if s.scale == "logcenter":
            x, lo, hi = jnp.log(x), jnp.log(lo), jnp.log(hi)
        parts.append(2.0 * (x - lo) / jnp.where(hi > lo, hi - lo, 1.0) - 1.0)
    return from_action(jnp.concatenate(parts, axis=-1))


def shift_plan(z):
    """Warm start: drop the applied first action, repeat the last one ((K, n) -> (K, n))."""
    return jnp.concatenate([z[1:], z[-1:]], axis=0)


# ---- the model ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Static:
    """Everything the compiled planner specializes on (hashable)."""

    task: object
    cfg: MPCConfig
    ratio: int  # env steps per model step
    n_sub: int  # model substeps per model step
    hold: int  # model steps per planned action
    knots: int  # planned actions K


def _static(task, params, cfg: MPCConfig) -> _Static:
    p = params.plant
    env_dt = float(p.dt_s)
    model_dt = env_dt if cfg.model_dt_s is None else float(cfg.model_dt_s)
    ratio = int(round(model_dt / env_dt))
    if ratio < 1 or abs(ratio * env_dt - model_dt) > 1e-9:
        raise ValueError(f"model_dt_s = {model_dt} must be a whole multiple of the env's "
                         f"dt_s = {env_dt}")
    sub = float(p.h_s) if cfg.model_sub_s is None else float(cfg.model_sub_s)
    n_sub = max(1, int(round(model_dt / sub)))
    hold = max(1, int(round(cfg.hold_s / model_dt)))
    if abs(hold * model_dt - cfg.hold_s) > 1e-9:
        raise ValueError(f"hold_s = {cfg.hold_s} must be a whole multiple of the model's "
                         f"interval {model_dt} s")
    knots = int(np.ceil(cfg.horizon_s / cfg.hold_s - 1e-9))
    return _Static(make_task(task), cfg, ratio, n_sub, hold, knots)


def _model_state(st: _Static, env_state):
    """The env state the model rolls forward: the episode's plant params on the model's
    interval and substeps (unchanged when they are the env's)."""
    p = env_state.plant_params
    if st.ratio == 1 and st.n_sub == p.n_sub:
        return env_state
    return replace(env_state, plant_params=replace(p, dt_s=p.dt_s * st.ratio, n_sub=st.n_sub),
                   p_grid_sub_w=jnp.zeros((st.n_sub,), env_state.p_grid_sub_w.dtype))


def _forecast(st: _Static, env_state, model_state, t_s, dt_s):
    """Exogenous inputs of the model interval starting at ``t_s``."""
    if st.cfg.forecast == "perfect":
        return exogenous_at(env_state.exo_params, env_state.exo_key, t_s, dt_s)
    e = env_state.exo
    return replace(e, t_s=jnp.asarray(t_s, e.t_s.dtype),
                   ln2_delivery_kg=jnp.zeros_like(e.ln2_delivery_kg))


def _hinge2(x):
    return jnp.square(jnp.maximum(x, 0.0))


def _penalty(pen: Penalties, mp, s1, out, s0, exo):
    """Smooth constraint penalties of one model interval, per env step (see
    :class:`Penalties`), on top of the reward's own."""
    g, c = mp.gpu, mp.cdu
    f = s1.t_s.dtype
    j = _hinge2(out["t_junction_max_c"] - (g.t_slowdown_c - pen.junction_margin_k))
    oc = _hinge2(c.condensation_floor_c + pen.supply_margin_k - out["t_supply_min_c"])
    hot = _hinge2(out["t_supply_max_c"] - pen.supply_max_c)
    ups_soc = s1.ups.e_j / jnp.maximum(mp.ups.e_max_j, 1e-9)
    uc_soc = s1.uc_e_j / jnp.maximum(mp.ultracap.e_max_j * jnp.ones_like(s1.uc_e_j), 1e-9)
    lo, hi = pen.uc_soc_band
    ups_lo = jnp.maximum(pen.ups_soc_band[0], floor_j(mp.ups, 1.0) / mp.ups.e_max_j)
    ups = _hinge2(ups_lo - ups_soc) + _hinge2(ups_soc - pen.ups_soc_band[1])
    uc = jnp.mean(_hinge2(lo - uc_soc) + _hinge2(uc_soc - hi))
    ramp = _hinge2(ramp_excess_w(mp, s0, out["p_grid_sub_w"], exo)
                   / (mp.grid.contract_limit_w * mp.dt_s))
    o2 = _hinge2((mp.ln2.o2_alarm_frac + pen.o2_margin - out["o2_min_frac"]) / 1e-3)
    return (pen.usd_per_unit * (pen.w_junction * j + pen.w_overcool * oc
                                + pen.w_supply_high * hot + pen.w_ups_soc * ups
                                + pen.w_uc_soc * uc + pen.w_ramp * ramp + pen.w_o2 * o2)).astype(f)


def _soc(mp, s):
    ups = s.ups.e_j / jnp.maximum(mp.ups.e_max_j, 1e-9)
    uc = jnp.mean(s.uc_e_j / jnp.maximum(mp.ultracap.e_max_j * jnp.ones_like(s.uc_e_j), 1e-9))
    return ups, uc


def _interval_cost(st: _Static, signed: dict):
    """``-reward`` of one model interval from the task's signed USD terms, with the
    intensive terms scaled to the model's interval and :attr:`MPCConfig.term_scale`
    applied; ``deadline`` does not depend on the plant actions and is left out."""
    scale = {"deadline": 0.0, **dict(st.cfg.term_scale)}
    cost = jnp.zeros((), next(iter(signed.values())).dtype)
    for name in st.task.reward.terms:
        f = (st.ratio if name in INTENSIVE_TERMS else 1.0) * scale.get(name, 1.0)
        cost = cost - f * signed[name]
    return cost


def plan_cost(st: _Static, z, env_state, params):
    """Cost of the plan ``z`` (K, n) from one env's state: the model rollout's summed
    ``-reward`` (the task's own step, :meth:`heatsync.envs.Task.advance`, under the
    forecast) plus the smooth penalties (scalar). Switch components stay off inside the
    model (no LN2 order, no job start)."""
    mask = jnp.asarray(st.task.layout(params).switch_mask())
    a_plan = jnp.where(mask, -1.0, plan_actions(st.task.layout(params), z))
    pen = st.cfg.penalties
    m0 = _model_state(st, env_state)
    mp = m0.plant_params

    def one(carry, i):
        s = carry
        exo = _forecast(st, env_state, s, s.plant.t_s, mp.dt_s)
        s = replace(s, exo=exo)
        s1, _, signed, out, _, _, _ = st.task.advance(params, s, a_plan[i // st.hold])
        c = _interval_cost(st, signed) + st.ratio * _penalty(pen, mp, s1.plant, out, s.plant,
                                                             exo)
        return s1, c

    body = jax.checkpoint(one) if st.cfg.checkpoint else one
    n_steps = st.knots * st.hold
    s_end, costs = jax.lax.scan(body, m0, jnp.arange(n_steps))
    ups0, uc0 = _soc(mp, env_state.plant)
    ups1, uc1 = _soc(mp, s_end.plant)
    end = pen.usd_per_unit * pen.w_soc_end * (jnp.maximum(ups0 - ups1, 0.0)
                                              + jnp.maximum(uc0 - uc1, 0.0))
    return jnp.sum(costs) + end


def _plan_one(st: _Static, z0, env_state, params, n_iters, lr):
    """Adam on one env's plan for ``n_iters`` iterations at step size ``lr`` (both
    traced; cosine decay to ``lr / 10``): ``(best plan, cost of z0, cost of the best
    plan)``; the best plan seen is kept, so the returned cost never exceeds the
    warm start's."""
    opt = optax.scale_by_adam()
    loss = partial(plan_cost, st)
    vg = jax.value_and_grad(loss)
    n = jnp.maximum(n_iters, 1).astype(z0.dtype)

    def it(i, carry):
        z, o, best_z, best_c, c0 = carry
        c, g = vg(z, env_state, params)
        g = jnp.nan_to_num(g, nan=0.0, posinf=0.0, neginf=0.0)
        better = c < best_c
        best_z = jnp.where(better, z, best_z)
        best_c = jnp.where(better, c, best_c)
        c0 = jnp.where(i == 0, c, c0)
        upd, o = opt.update(g, o)
        step = lr * (0.1 + 0.45 * (1.0 + jnp.cos(jnp.pi * i / n)))
        z = jnp.clip(z - step * upd, -Z_MAX, Z_MAX)
        return z, o, best_z, best_c, c0

    inf = jnp.asarray(jnp.inf, z0.dtype)
    z, _, best_z, best_c, c0 = jax.lax.fori_loop(0, n_iters, it,
                                                 (z0, opt.init(z0), z0, inf, inf))
    c_last = loss(z, env_state, params)
    better = c_last < best_c
    best_z = jnp.where(better, z, best_z)
    best_c = jnp.where(better, c_last, best_c)
    c0 = jnp.where(n_iters > 0, c0, c_last)
    return best_z, c0, best_c


@partial(jax.jit, static_argnums=0)
def _plan_batch(st: _Static, z0, env_states, params, n_iters, lr):
    """Batched planner (leading axis N on ``z0`` and the states; params, iteration
    count and step size shared; compiled once per batch size)."""
    return jax.vmap(partial(_plan_one, st), in_axes=(0, 0, None, None, None))(
        z0, env_states, params, n_iters, lr)


def _rules(st: _Static, cfg: MPCConfig, env_state, params):
    """Switch components by rule: LN2 order (all tasks with LN2) and scheduling (Facility)."""
    s = env_state.plant
    p = params.plant
    fill = s.ln2.tank_kg / jnp.maximum(p.ln2.tank_capacity_kg, 1e-9)
    order = jnp.where(fill < cfg.ln2_order_below, 1.0, -1.0)
    # Facility: start the first visible job when it fits, half a period ahead of the largest job
    sched = None
    if st.task.name == "Facility":
        sched = scheduling_layout(params).encode(
            {"defer_job": 0.0, "job_select": 0.0, "phase_offset": 0.5}, xp=jnp)
    return order, sched


@partial(jax.jit, static_argnums=0)
def _emit_batch(st: _Static, z_first, env_states, params):
    """Env actions (N, action dim) from the first planned action of each env."""
    layout = plant_layout(st.task, params)

    def one(z, es):
        order, sched = _rules(st, st.cfg, es, params)
        a = plan_actions(layout, z)
        if "ln2_order" in layout.slices:
            a = a.at[layout.slices["ln2_order"]].set(order)
        if sched is not None:
            sl = slice(layout.slices["defer_job"].start, layout.slices["phase_offset"].stop)
            a = a.at[sl].set(sched.astype(a.dtype))
        return a

    return jax.vmap(one)(z_first, env_states)


@partial(jax.jit, static_argnums=0)
def _init_plan(st: _Static, params):
    """The first plan: the scenario's fixed setpoints (action 0) held over the horizon
    (K, n)."""
    layout = plant_layout(st.task, params)
    z = plan_of_actions(layout, jnp.zeros((layout.size,), params.plant.dt_s.dtype))
    return jnp.broadcast_to(z, (st.knots, layout.size))


def _start_candidates(st: _Static, params, z_init):
    """Constant plans of :attr:`MPCConfig.start_grid` (C, K, n), ``z_init`` first."""
    layout = plant_layout(st.task, params)
    cands = [np.asarray(z_init)]
    for name, values in st.cfg.start_grid:
        if name not in layout.slices:
            raise ValueError(f"start_grid: no action segment {name!r}; segments: "
                             f"{list(layout.slices)}")
        sl = layout.slices[name]
        for v in values:
            z = np.array(z_init, copy=True)
            z[:, sl] = np.asarray(from_action(jnp.full((sl.stop - sl.start,), float(v))))
            cands.append(z)
    return np.stack(cands)


@partial(jax.jit, static_argnums=0)
def _costs_batch(st: _Static, zs, env_states, params):
    """Plan cost of each candidate (C, K, n) for each env: (N, C)."""
    per_env = jax.vmap(lambda z, es: plan_cost(st, z, es, params), in_axes=(0, None))
    return jax.vmap(lambda es: per_env(zs, es))(env_states)


@partial(jax.jit, static_argnums=0)
def _cost_each(st: _Static, z0, env_states, params):
    """Plan cost of each env's own plan (N, K, n) -> (N,)."""
    return jax.vmap(lambda z, es: plan_cost(st, z, es, params))(z0, env_states)
