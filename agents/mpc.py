"""Gradient MPC: receding-horizon control by gradient descent through the plant.

At each re-plan the controller optimizes a sequence of ``K`` actions, each held
for ``hold_s`` seconds, over a horizon of ``K x hold_s`` seconds, by ``iters``
steps of Adam (optax) on the summed cost of a rollout of the jitted,
differentiable plant; it applies the first action of the plan for ``hold_s``
seconds, then re-plans from the plan shifted by one action (the last action
repeated) as warm start. Batched over envs with ``vmap``; the whole optimizer
(every iteration) is one jitted call per batch size.

**Decision variables**: ``z`` of shape (K, n), unconstrained (bounded to
``|z| <= 3`` after each update); the normalized action is
``clip(1.05 tanh(z), -1, 1)`` (:func:`to_action`; the factor lets a plan sit
exactly at a range's end, and the clip passes gradients straight through),
which the env's own decoding (:func:`heatsync.envs._spaces.decode`) maps into
each actuator's physical range (linear, or log-uniform for the ramp limits),
so every planned and applied action is inside its range by construction. The
applied env action is that normalized action, i.e. :func:`encode` of the
physical action. The first plan starts from the scenario's fixed setpoints
(``params.control``) through :func:`encode` and :func:`from_action`, and gets
``iters_first`` iterations; later plans warm-start from the shifted previous
plan and get ``iters``. Switch actuators are not optimized (no gradient through a
switch): ``ln2_order`` orders LN2 when the tank is below ``ln2_order_below``
of its capacity, and in Facility the scheduling components start the first
visible job whenever it fits, half a period ahead of the largest running job.

**Cost** (per env step, in reward units, summed over the horizon): the task's
own reward terms with its weights (``params.reward``) computed by the same
function the env uses (:func:`heatsync.envs._terms.cost_terms`), so the cost is
``-reward`` of the model rollout, plus smooth penalties (:class:`Penalties`)
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
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax

from heatsync.agents.baseline_power import task_segments
from heatsync.envs import _queue as Q
from heatsync.envs._spaces import decode
from heatsync.envs._terms import BENEFITS, cost_terms, ramp_excess_w_per_s
from heatsync.envs.vector import make_task
from heatsync.physics import exogenous_at, replace
from heatsync.physics import step as plant_step

__all__ = ["MPCConfig", "Penalties", "GradientMPC", "MPC_FACTORIES", "encode", "segments_for",
           "shift_plan", "plan_cost", "make_mpc"]

#: reward terms that are means over an interval (not sums): scaled by the model's interval ratio
INTENSIVE_TERMS = ("band", "ramp")


@dataclasses.dataclass(frozen=True)
class Penalties:
    """Smooth constraint penalties, in reward units per env step (1 s).

    Each is ``weight x hinge(violation / scale) ** 2``; the scales are chosen
    so that a weight of 1 costs about as much as a bad step of the reward
    (0.5-1.5) at a violation of 1 K, 1e-3 of oxygen fraction, or a mean ramp
    excess of the contract limit per second (the reward's ramp scale); state of
    charge is in units of capacity: the UPS is held inside a band above an
    outage reserve with headroom to absorb swings (0.01 outside costs 1 per
    step), ultracapacitors inside a band, and a terminal charge
    ``w_soc_end x (SoC lost over the horizon)`` keeps a plan from borrowing
    stored energy it does not pay back (1 % of the UPS costs 2).
    """

    junction_margin_k: float = 2.0  #: keep the hottest junction below t_slowdown_c - this
    w_junction: float = 1.0  #: per K^2 above the margin, per step
    supply_margin_k: float = 1.0  #: keep the supply above condensation_floor_c + this
    w_overcool: float = 1.0  #: per K^2 below the margin, per step
    supply_max_c: float = 45.0  #: warmest allowed supply (W45 coolant class), degC
    w_supply_high: float = 0.01  #: per K^2 above supply_max_c, per step
    ups_soc_band: tuple = (0.85, 0.95)  #: keep UPS SoC inside (outage reserve; starts at 0.9)
    w_ups_soc: float = 1.0e4  #: per (UPS SoC outside its band)^2, per step
    uc_soc_band: tuple = (0.05, 0.95)  #: keep ultracapacitor SoC inside this band
    w_uc_soc: float = 10.0  #: per (mean over racks of SoC outside the band)^2, per step
    w_soc_end: float = 200.0  #: per unit of SoC lost over the horizon (UPS; mean of UCs), once
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

#: the trailing scheduling components of a Facility action
N_SCHEDULING = 3
#: normalized action = clip(SAT x tanh(z), -1, 1): SAT > 1 lets a plan reach a range's ends
SAT = 1.05
#: |z| bound after each update (tanh(3) x SAT = 1.045: just past the ends, slope kept)
Z_MAX = 3.0


# ---- action layout --------------------------------------------------------------------------


def segments_for(task, params):
    """The plant segments of a task's action (without Facility's scheduling components)."""
    name = make_task(task).name
    segs = task_segments(name, params.plant)
    if not segs:
        raise ValueError(f"GradientMPC: task {name!r} is not supported; supported: "
                         f"{sorted(DEFAULTS)}")
    return segs


def encode(values: dict, segments) -> jnp.ndarray:
    """Physical values by segment to a normalized [-1, 1] vector: the inverse of
    :func:`heatsync.envs._spaces.decode` (values are clipped to range). The JAX twin of
    the host-side NumPy :func:`heatsync.envs._spaces.encode`, for use under ``jit``
    (the first plan is built inside the compiled planner).

    **Arguments**: ``values`` name -> scalar or ``(size,)`` array for every
    segment; ``segments`` the layout. **Returns**: ``(total size,)`` array;
    ``step`` segments encode to +1 above the middle of their range, else -1.
    """
    parts = []
    for seg in segments:
        v = jnp.broadcast_to(jnp.asarray(values[seg.name]), (seg.size,))
        lo = jnp.broadcast_to(jnp.asarray(seg.lo, v.dtype), (seg.size,))
        hi = jnp.broadcast_to(jnp.asarray(seg.hi, v.dtype), (seg.size,))
        v = jnp.clip(v, lo, hi)
        span = jnp.where(hi > lo, hi - lo, 1.0)
        if seg.scale == "lin":
            a = 2.0 * (v - lo) / span - 1.0
        elif seg.scale == "log":
            llo, lhi = jnp.log(lo), jnp.log(hi)
            a = 2.0 * (jnp.log(v) - llo) / jnp.where(lhi > llo, lhi - llo, 1.0) - 1.0
        elif seg.scale == "step":
            a = jnp.where(v > 0.5 * (lo + hi), 1.0, -1.0)
        else:  # pragma: no cover - layouts are fixed in code
            raise ValueError(f"unknown scale {seg.scale!r}")
        parts.append(a)
    return jnp.clip(jnp.concatenate(parts), -1.0, 1.0)


def _step_mask(segments) -> np.ndarray:
    """True for the components of switch (``step``) segments, which are not optimized."""
    return np.concatenate([np.full(s.size, s.scale == "step") for s in segments])


def to_action(z):
    """Normalized actions in [-1, 1] from plan variables: ``clip(SAT tanh(z), -1, 1)``,
    with a straight-through gradient at the clip (so a plan at a range's end can leave it)."""
    a = SAT * jnp.tanh(z)
    return a + jax.lax.stop_gradient(jnp.clip(a, -1.0, 1.0) - a)


def from_action(a):
    """Plan variables for normalized actions ``a`` (the inverse of :func:`to_action`)."""
    return jnp.arctanh(jnp.clip(jnp.asarray(a) / SAT, -1.0 / SAT, 1.0 / SAT))


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


def _model_params(st: _Static, params):
    p = params.plant
    if st.ratio == 1 and st.n_sub == p.n_sub:
        return p
    return replace(p, dt_s=p.dt_s * st.ratio, n_sub=st.n_sub)


def _forecast(st: _Static, params, env_state, t_s, dt_s):
    """Exogenous inputs of the model interval starting at ``t_s``."""
    if st.cfg.forecast == "perfect":
        return exogenous_at(params.exo, env_state.exo_key, t_s, dt_s)
    e = env_state.exo
    return replace(e, t_s=jnp.asarray(t_s, e.t_s.dtype),
                   ln2_delivery_kg=jnp.zeros_like(e.ln2_delivery_kg))


def _hinge2(x):
    return jnp.square(jnp.maximum(x, 0.0))


def _penalty(pen: Penalties, mp, norm, s1, out, s0):
    """Constraint penalties of one model interval, per env step (see :class:`Penalties`)."""
    g, c = mp.gpu, mp.cdu
    f = s1.t_s.dtype
    j = _hinge2(out["t_junction_max_c"] - (g.t_slowdown_c - pen.junction_margin_k))
    oc = _hinge2(c.condensation_floor_c + pen.supply_margin_k - out["t_supply_min_c"])
    hot = _hinge2(out["t_supply_max_c"] - pen.supply_max_c)
    ups_soc = s1.ups.e_j / jnp.maximum(mp.ups.e_max_j, 1e-9)
    uc_soc = s1.uc_e_j / jnp.maximum(mp.ultracap.e_max_j * jnp.ones_like(s1.uc_e_j), 1e-9)
    lo, hi = pen.uc_soc_band
    ups = (_hinge2(jnp.maximum(pen.ups_soc_band[0], mp.ups.e_min_frac) - ups_soc)
           + _hinge2(ups_soc - pen.ups_soc_band[1]))
    uc = jnp.mean(_hinge2(lo - uc_soc) + _hinge2(uc_soc - hi))
    ramp = _hinge2(ramp_excess_w_per_s(mp, s0, out["p_grid_sub_w"]) / norm.ramp_ref_w_per_s)
    o2 = _hinge2((mp.ln2.o2_alarm_frac + pen.o2_margin - out["o2_min_frac"]) / 1e-3)
    return (pen.w_junction * j + pen.w_overcool * oc + pen.w_supply_high * hot
            + pen.w_ups_soc * ups + pen.w_uc_soc * uc + pen.w_ramp * ramp + pen.w_o2 * o2).astype(f)


def _soc(mp, s):
    ups = s.ups.e_j / jnp.maximum(mp.ups.e_max_j, 1e-9)
    uc = jnp.mean(s.uc_e_j / jnp.maximum(mp.ultracap.e_max_j * jnp.ones_like(s.uc_e_j), 1e-9))
    return ups, uc


def _interval_cost(st: _Static, params, mp, s0, s1, out, exo, queue, remaining):
    """Weighted reward terms of one model interval (``-reward``), as the env computes them."""
    task = st.task
    p = params.plant
    f = s1.t_s.dtype
    d_prog = Q.slot_progress_rack_s(s1.work) - Q.slot_progress_rack_s(s0.work)
    flags = {"trip": out["trips"] > 0.0,
             "hazard": out["o2_min_frac"] < p.ln2.o2_alarm_frac,
             "unserved": out["e_unserved_j"] > 0.0}
    terms = cost_terms(mp, params.norm, s0, s1, out, exo, d_prog, remaining, flags,
                       task.terminal)
    if queue is not None:
        terms["work_value"] = jnp.sum(d_prog * Q.slot_value(queue)) / params.norm.work_ref_rack_s
        terms["deadline"] = jnp.zeros((), f)  # not affected by the plant actions
    terms.update(task._adjust_terms(params, s0, s1, out, exo, terms))
    cost = jnp.zeros((), f)
    scale = dict(st.cfg.term_scale)
    for name in task.terms:
        v = terms[name] * (st.ratio if name in INTENSIVE_TERMS else 1.0) * scale.get(name, 1.0)
        sign = -1.0 if name in BENEFITS else 1.0
        cost = cost + sign * getattr(params.reward, name) * v
    return cost


def plan_cost(st: _Static, z, env_state, params):
    """Cost of the plan ``z`` (K, n) from one env's state: the model rollout's
    summed weighted reward terms plus the penalties (scalar)."""
    segs = segments_for(st.task, params)
    mask = jnp.asarray(_step_mask(segs))
    mp = _model_params(st, params)
    pen = st.cfg.penalties
    ratio = st.ratio
    a_plan = jnp.where(mask, -1.0, to_action(z))  # switches stay off inside the model
    queue = env_state.queue
    steps0 = env_state.t

    def one(carry, i):
        s = carry
        a = a_plan[i // st.hold]
        act = replace(params.control, **decode(a, segs))
        exo = _forecast(st, params, env_state, s.t_s, mp.dt_s)
        s1, out = plant_step(mp, s, act, exo)
        remaining = jnp.maximum(params.episode_steps - steps0 - (i + 1) * ratio, 0)
        c = _interval_cost(st, params, mp, s, s1, out, exo, queue, remaining)
        c = c + ratio * _penalty(pen, mp, params.norm, s1, out, s)
        return s1, c

    body = jax.checkpoint(one) if st.cfg.checkpoint else one
    n_steps = st.knots * st.hold
    s_end, costs = jax.lax.scan(body, env_state.plant, jnp.arange(n_steps))
    ups0, uc0 = _soc(mp, env_state.plant)
    ups1, uc1 = _soc(mp, s_end)
    end = pen.w_soc_end * (jnp.maximum(ups0 - ups1, 0.0) + jnp.maximum(uc0 - uc1, 0.0))
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
    sched = jnp.asarray([1.0, -1.0, 0.0], s.t_s.dtype)
    return order, sched


@partial(jax.jit, static_argnums=0)
def _emit_batch(st: _Static, z_first, env_states, params):
    """Env actions (N, action dim) from the first planned action of each env."""
    segs = segments_for(st.task, params)
    mask = jnp.asarray(_step_mask(segs))

    def one(z, es):
        order, sched = _rules(st, st.cfg, es, params)
        a = jnp.where(mask, order, to_action(z))
        if st.task.name == "Facility":
            a = jnp.concatenate([a, sched.astype(a.dtype)])
        return a

    return jax.vmap(one)(z_first, env_states)


@partial(jax.jit, static_argnums=0)
def _init_plan(st: _Static, params):
    """The first plan: the scenario's fixed setpoints held over the horizon (K, n)."""
    segs = segments_for(st.task, params)
    c = params.control
    a = encode({s.name: getattr(c, s.name) for s in segs}, segs)
    z = from_action(a)
    return jnp.broadcast_to(z, (st.knots, z.shape[0]))


def _start_candidates(st: _Static, params, z_init):
    """Constant plans of :attr:`MPCConfig.start_grid` (C, K, n), ``z_init`` first."""
    segs = segments_for(st.task, params)
    cands = [np.asarray(z_init)]
    for name, values in st.cfg.start_grid:
        off = 0
        for seg in segs:
            if seg.name == name:
                break
            off += seg.size
        else:
            raise ValueError(f"start_grid: no action segment {name!r}; segments: "
                             f"{[s.name for s in segs]}")
        size = next(s.size for s in segs if s.name == name)
        for v in values:
            z = np.array(z_init, copy=True)
            z[:, off:off + size] = np.asarray(from_action(jnp.full((size,), float(v))))
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
