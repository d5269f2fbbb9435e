"""Run the jitted plant over a scenario and compute its KPIs.

``simulate(scenario, actions=None, *, seed=0, steps=None)`` returns a
:class:`SimResult` with ``series`` (numpy arrays, one value per control
interval, SI units in the key) and ``kpis`` (floats). See README for every key.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .exogenous import exogenous_at
from .kpis import compute_kpis
from .plant import Action, Params, State, step
from .scenario import Scenario, load_scenario

__all__ = ["SimResult", "simulate", "rollout", "SERIES_STATE", "DEFAULT_RUN_S"]

#: simulated time of a :func:`simulate` call that names no ``steps`` (one hour)
DEFAULT_RUN_S = 3600.0

#: state snapshots recorded after each interval, with their meaning
SERIES_STATE = {
    "t_s": "time at the end of the interval, s",
    "t_supply_c": "coolant supply temperature, degC",
    "t_fw_c": "facility water temperature, degC",
    "t_junction_mean_c": "mean junction temperature over racks, degC",
    "uc_soc": "mean ultracapacitor state of charge, 1",
    "uc_soc_min": "lowest rack ultracapacitor state of charge, 1",
    "uc_soc_max": "highest rack ultracapacitor state of charge, 1",
    "ups_soc": "UPS state of charge, 1",
    "ln2_tank_kg": "LN2 in the tank, kg",
    "o2_frac": "room oxygen fraction, 1",
    "ambient_c": "ambient temperature, degC",
    "price_usd_per_kwh": "energy price, USD/kWh",
    "carbon_g_per_kwh": "grid carbon intensity, g/kWh",
    "grid_up": "grid present, 0/1",
    "racks_tripped": "racks down after a trip, 1",
}


def _snapshot(p: Params, s: State, exo) -> dict:
    soc = s.uc_e_j / jnp.maximum(p.ultracap.e_max_j, 1e-9)
    return {
        "t_s": s.t_s,
        "t_supply_c": s.t_supply_c,
        "t_fw_c": s.t_fw_c,
        "t_junction_mean_c": jnp.mean(s.t_junction_c),
        "uc_soc": jnp.mean(soc),
        "uc_soc_min": jnp.min(soc),
        "uc_soc_max": jnp.max(soc),
        "ups_soc": s.ups.e_j / p.ups.e_max_j,
        "ln2_tank_kg": s.ln2.tank_kg,
        "o2_frac": s.ln2.o2_frac,
        "ambient_c": exo.ambient_c,
        "price_usd_per_kwh": exo.price_usd_per_kwh,
        "carbon_g_per_kwh": exo.carbon_g_per_kwh,
        "grid_up": exo.grid_up,
        "racks_tripped": jnp.sum((s.trip_s > 0).astype(s.t_s.dtype)),
    }


PolicyFn = Callable[[Params, State, Any], Action]


@partial(jax.jit, static_argnames=("n_steps", "policy", "record"))
def rollout(params: Params, exo_params, state: State, key, actions, n_steps: int,
            policy: PolicyFn | None = None, record: bool = True):
    """Advance ``n_steps`` control intervals under ``lax.scan``.

    **Arguments**: ``actions`` is an :class:`Action` with a leading time axis
    (``n_steps``) or ``None`` when ``policy(params, state, exo) -> Action`` (a
    pure JAX function, static) chooses them; ``record`` keeps per-step series.

    **Returns**: ``(final_state, series)``; ``series`` maps output and state
    names to arrays with a leading time axis (empty dict if not ``record``).
    """

    def body(s, a_t):
        with jax.named_scope("exogenous"):
            exo = exogenous_at(exo_params, key, s.t_s, params.dt_s)
        a = policy(params, s, exo) if policy is not None else a_t
        s2, out = step(params, s, a, exo)
        if not record:
            return s2, None
        return s2, {**out, **_snapshot(params, s2, exo)}

    xs = actions if policy is None else None
    final, series = jax.lax.scan(body, state, xs, length=n_steps)
    return final, (series if record else {})


@dataclasses.dataclass
class SimResult:
    """Result of :func:`simulate`: ``series`` (per interval), ``kpis``, ``final_state``."""

    series: dict[str, np.ndarray]
    kpis: dict[str, float]
    final_state: Any
    initial_state: Any
    scenario: Scenario


def _actions_over_time(scenario: Scenario, actions, steps: int):
    if actions is None:
        actions = scenario.control
    if isinstance(actions, Action):
        lead = np.ndim(actions.pump_speed)
        if lead == 0:
            return jax.tree_util.tree_map(
                lambda x: jnp.broadcast_to(jnp.asarray(x), (steps,) + jnp.shape(x)), actions)
        if np.shape(actions.pump_speed)[0] != steps:
            raise ValueError(f"actions: leading time axis has {np.shape(actions.pump_speed)[0]}"
                             f" steps, expected steps = {steps}")
        return actions
    raise TypeError("actions must be None, an Action, an Action with a leading time axis, or a "
                    "policy function (params, state, exo) -> Action")


def simulate(scenario="default", actions=None, *, seed: int = 0, steps: int | None = None,
             record: bool = True, state: State | None = None) -> SimResult:
    """Simulate a scenario with fixed, given or policy-chosen actions.

    **Arguments**:

    - ``scenario``: a name, a YAML path or a :class:`Scenario`.
    - ``actions``: ``None`` (the scenario's fixed ``control`` setpoints), an
      :class:`Action` held constant, an :class:`Action` with a leading time
      axis of length ``steps``, or a pure function ``(params, state, exo) ->
      Action`` evaluated inside the jitted scan.
    - ``seed``: PRNG seed for the exogenous noise.
    - ``steps``: control intervals to run (default: :data:`DEFAULT_RUN_S` of
      simulated time; an env's episode length is the envs' ``episode`` section).
    - ``state``: continue from this plant state (e.g. a previous result's
      ``final_state``) instead of the scenario's initial state; energies, costs,
      balances and ageing then cover only this run, while peak demand, band share
      and the largest ramp are the plant state's running figures since its start.

    **Returns**: :class:`SimResult` with ``.series`` and ``.kpis``.
    """
    sc = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
    steps = int(round(DEFAULT_RUN_S / float(sc.params.dt_s)) if steps is None else steps)
    if steps < 1:
        raise ValueError(f"steps: must be >= 1, got {steps}")
    key = jax.random.PRNGKey(seed)
    s0 = sc.init_state() if state is None else state
    if callable(actions) and not isinstance(actions, Action):
        final, series = rollout(sc.params, sc.exo, s0, key, None, steps, policy=actions,
                                record=record)
    else:
        acts = _actions_over_time(sc, actions, steps)
        final, series = rollout(sc.params, sc.exo, s0, key, acts, steps, record=record)
    series = {k: np.asarray(v) for k, v in series.items()}
    kpis = compute_kpis(sc.params, s0, final, series) if record else {}
    return SimResult(series=series, kpis=kpis, final_state=final, initial_state=s0, scenario=sc)
