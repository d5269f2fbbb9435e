"""The oracle's two search phases (private to :mod:`heatsync.agents`): Adam on per-interval
plans through the exact env, and the (1 + P) local search over windows of actions."""

from __future__ import annotations

import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
from gymnasium import spaces

from ._planner import Z_MAX, _penalty, plan_actions, plan_of_actions


def better(met_a, j_a, met_b, j_b):
    """Elementwise: is (``met_a``, ``j_a``) better than (``met_b``, ``j_b``)? Meeting the
    specification first, then the lower ``j`` (``-return``, USD)."""
    met_a, met_b = np.asarray(met_a, bool), np.asarray(met_b, bool)
    return (met_a & ~met_b) | ((met_a == met_b) & (np.asarray(j_a) < np.asarray(j_b)))


# ---- the gradient phase -------------------------------------------------------------------


def _episode_loss(task, cfg, params, z, switches, state0):
    """Smooth loss and exact score of one episode's plan ``z`` (K, n): ``(loss, (j,
    violation_s, terminated))`` with ``j`` = ``-return`` of the exact episode."""
    layout = task.layout(params)
    mask = jnp.asarray(layout.switch_mask())
    acts = plan_actions(layout, z)  # (K, n)
    T = switches.shape[0]
    f = state0.plant.t_s.dtype

    def body(carry, i):
        s, active, j, viol, term_any = carry
        a = jnp.where(mask, switches[i], acts[i // cfg.hold_steps])
        _, s1, r, term, trunc, info = task.step(None, s, a, params)
        pen = _penalty(cfg.penalties, s.plant_params, s1.plant, info, s.plant, s.exo)
        w = active.astype(f)
        loss_t = w * (-r.astype(f) + pen)
        j = j - w * r.astype(f)
        viol = viol + w * info["violation"].astype(f) * s.plant_params.dt_s
        term_any = term_any | (term & active)
        active = active & ~(term | trunc)
        return (s1, active, j, viol, term_any), loss_t

    init = (state0, jnp.ones((), bool), jnp.zeros((), f), jnp.zeros((), f),
            jnp.zeros((), bool))
    (_, _, j, viol, term), losses = jax.lax.scan(jax.checkpoint(body), init, jnp.arange(T))
    return jnp.sum(losses), (j, viol, term)


@partial(jax.jit, static_argnums=(0, 1))
def _adam_step(task, cfg, params, z, opt_state, switches, states0):
    """One Adam iteration on a batch of plans (B, K, n): the new plans and optimiser state,
    and the exact score of the plans *before* the update."""
    vg = jax.vmap(jax.value_and_grad(partial(_episode_loss, task, cfg, params), has_aux=True))
    (loss, (j, viol, term)), g = vg(z, switches, states0)
    g = jnp.nan_to_num(g, nan=0.0, posinf=0.0, neginf=0.0)
    upd, opt_state = optax.adam(cfg.lr).update(g, opt_state, z)
    z_new = jnp.clip(optax.apply_updates(z, upd), -Z_MAX, Z_MAX)
    return z_new, opt_state, loss, j, viol, term


@partial(jax.jit, static_argnums=(0,))
def _reset_states(task, params, keys):
    return jax.vmap(lambda k: task.reset(k, params)[1])(keys)


def _to_plan(task, params, actions, hold: int):
    """Plan variables (B, K, n) of per-interval actions (B, T, n): each row the first
    interval's action of its hold."""
    layout = task.layout(params)
    return plan_of_actions(layout, jnp.asarray(actions)[:, ::hold])


@partial(jax.jit, static_argnums=(0, 3, 4))
def _expand(task, params, z, hold: int, T: int, switches):
    """Per-interval actions (B, T, n) of plans (B, K, n), switches from ``switches``."""
    layout = task.layout(params)
    mask = jnp.asarray(layout.switch_mask())
    a = jnp.repeat(plan_actions(layout, z), hold, axis=1)[:, :T]
    return jnp.clip(jnp.where(mask, switches, a), -1.0, 1.0)


def _gradient(task, params, keys, starts: np.ndarray, cfg, log):
    """Adam from each start (S, N, T, n): the best iterate of each (S, N, T, n), its score,
    and the history of the best ``-return`` after each iteration (S, N, iters + 1)."""
    S, N, T, n = starts.shape
    flat = starts.reshape(S * N, T, n)
    keys_b = jnp.tile(keys, (S, 1))
    states0 = _reset_states(task, params, keys_b)
    z = _to_plan(task, params, flat, cfg.hold_steps)
    switches = jnp.asarray(flat)
    opt_state = optax.adam(cfg.lr).init(z)
    best_z = np.asarray(z)
    best_j = np.full(S * N, np.inf)
    best_met = np.zeros(S * N, bool)
    hist = np.zeros((S * N, cfg.iters + 1))
    t0 = time.perf_counter()
    for it in range(cfg.iters + 1):
        z_cur = z
        z, opt_state, _, j, viol, term = _adam_step(task, cfg, params, z, opt_state, switches,
                                                    states0)
        j = np.asarray(j, np.float64)
        met = (np.asarray(viol) == 0.0) & ~np.asarray(term)
        take = better(met, j, best_met, best_j)
        if take.any():
            best_z = np.where(take[:, None, None], np.asarray(z_cur), best_z)
            best_j = np.where(take, j, best_j)
            best_met = np.where(take, met, best_met)
        hist[:, it] = best_j
        if log and (it % 25 == 0 or it == cfg.iters):
            log(f"  iter {it:4d}: mean best -return {best_j.mean():10.3f} USD, "
                f"spec met {int(best_met.sum())}/{S * N}, {time.perf_counter() - t0:6.1f} s")
    acts = np.asarray(_expand(task, params, jnp.asarray(best_z), cfg.hold_steps, T, switches))
    return (acts.reshape(S, N, T, n), best_j.reshape(S, N), best_met.reshape(S, N),
            hist.reshape(S, N, -1))


# ---- the local search ---------------------------------------------------------------------


def _random_values(space, rng, size):
    if isinstance(space, spaces.MultiDiscrete):
        return rng.integers(0, space.nvec, size=(size, len(space.nvec)))
    return rng.uniform(-0.9, 0.9, size=(size, space.shape[0])).astype(space.dtype)


def _search(task, params, space, keys, incumbent: np.ndarray, j: np.ndarray,
            met: np.ndarray, cfg, log, replay, components=None):
    """(1 + P) local search from the incumbents (N, T, d): the improved incumbents, their
    scores and the best ``-return`` after each generation (N, generations). A mutation
    changes one of ``components`` (indices; default: every component)."""
    rng = np.random.default_rng(cfg.rng_seed)
    N, T, d = incumbent.shape
    P = cfg.population
    keys_b = jnp.repeat(keys, P, axis=0)
    lo, hi = np.log(cfg.window_steps[0]), np.log(min(cfg.window_steps[1], T))
    best = incumbent.copy()
    hist = np.zeros((N, cfg.generations))
    t0 = time.perf_counter()
    for g in range(cfg.generations):
        cand = np.repeat(best[:, None], P, axis=1)  # (N, P, T, d)
        start = rng.integers(0, T, size=(N, P))
        width = np.exp(rng.uniform(lo, hi, size=(N, P))).astype(int).clip(1, T)
        allowed = np.arange(d) if components is None else np.asarray(components, int)
        comp = allowed[rng.integers(0, len(allowed), size=(N, P))]
        vals = _random_values(space, rng, N * P).reshape(N, P, d)
        tt = np.arange(T)
        win = (tt[None, None] >= start[..., None]) & (tt[None, None] < (start + width)[..., None])
        sel = win[..., None] & (np.arange(d)[None, None, None] == comp[..., None, None])
        cand = np.where(sel, vals[:, :, None, :], cand).astype(best.dtype)
        res = replay(task, params, keys_b, cand.reshape(N * P, T, d))
        cj = (-res["return"]).reshape(N, P)
        cm = res["spec_met"].reshape(N, P)
        # the best mutant of each episode: the cheapest within the specification if any
        k = np.where(cm.any(axis=1), np.argmin(np.where(cm, cj, np.inf), axis=1),
                     np.argmin(cj, axis=1))
        rows = np.arange(N)
        take = better(cm[rows, k], cj[rows, k], met, j)
        best[take] = cand[rows, k][take]
        j = np.where(take, cj[rows, k], j)
        met = np.where(take, cm[rows, k], met)
        hist[:, g] = j
        if log and (g % 10 == 0 or g == cfg.generations - 1):
            log(f"  generation {g:3d}: mean best -return {j.mean():10.3f} USD, spec met "
                f"{int(met.sum())}/{N}, {time.perf_counter() - t0:6.1f} s")
    return best, j, met, hist
