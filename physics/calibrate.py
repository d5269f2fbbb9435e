"""Fit continuous plant parameters to a measured trace by differentiating the rollout.

``calibrate(scenario, trace, fit=[...])`` returns a :class:`CalibrationResult`
with the fitted values, the nominal ones, per-series residuals before and after
and the loss history::

    import jax
    from heatsync.physics import calibrate
    with jax.enable_x64(True):
        res = calibrate("chiller-trip", "measured.csv",
                        fit=["coldplate.r_gpu_k_per_w", "cdu.ua_w_per_k"])
    print(res.summary())

Method
------
The model is the jitted :func:`heatsync.physics.rollout` of the scenario, from
the scenario's initial state (recomputed from the candidate parameters, so a
parameter that sets the initial state, such as ``ultracap.e_max_j``, is
consistent), under the actions that produced the trace and the same exogenous
PRNG ``seed``. Each fitted parameter ``v`` lives in bounds ``[lo, hi]`` and is
optimized through an unconstrained ``theta``:
``v = exp(log lo + (log hi - log lo) sigmoid(theta))`` when ``lo > 0`` (a
log-scale search, so a factor counts the same at any magnitude), else
``v = lo + (hi - lo) sigmoid(theta)``. Bounds default to the field's declared
range intersected with ``[0.5, 2] x nominal`` (``bound_factor``), so ``theta = 0``
is the nominal value and no iterate ever leaves the physical range.

Loss: a weighted, per-series-normalized mean squared error::

    L(theta) = sum_s w_s mean_t ((y_s(t; theta) - m_s(t)) / scale_s)^2 / sum_s w_s

where ``m_s`` is the measured series, ``y_s`` the simulated one, ``w_s`` the
series weight (default 1) and ``scale_s`` its scale in its own unit (default:
the measured series' standard deviation, so W, J and degC mix; pass
``scales`` with the measurement-noise standard deviations for a
maximum-likelihood fit). The first ``skip_steps`` samples may be left out of
the loss (an initial transient the scenario's initial state does not match).

The loss is a sum of squares of a few thousand residuals over a handful of
parameters, so the Jacobian of the residuals is computed in forward mode (one
JVP tangent per parameter, vectorized, one jitted function for the residuals
and their Jacobian, compiled once per trace length, fit list and series list
and reused across calls). On a 1 h, 10-substep rollout on CPU it costs 5-10x
a forward rollout for five parameters, a third to a half of one reverse-mode
gradient (15-30x a forward rollout; ``heatsync/perf/grad.py``), and needs no
memory growing with the horizon. Two optimizers use it:

* ``method="lm"`` (default): Levenberg-Marquardt with Marquardt's diagonal
  scaling in ``theta`` (Gauss-Newton steps, damping raised on a rejected step
  and lowered on an accepted one). It converges in ~5-15 iterations here.
* ``method="adam"``: ``optax.adam`` on the gradient ``2 J^T r``, ``iters``
  steps at ``learning_rate`` (in ``theta`` units); the best iterate is kept.
  It needs hundreds of iterations for the accuracy LM reaches in ten, so it is
  for comparison and for losses that are not sums of squares.

Standard errors: a sandwich estimate ``(J^T J)^-1 J^T S J (J^T J)^-1`` at the
fit, with ``S`` the per-series residual variance, assuming white measurement
noise and no model error. Real residuals are correlated in time, so they are a
lower bound on the uncertainty.

Identifiability
---------------
A parameter is identifiable only if the trace's series depend on it in the
window the trace covers; a ``theta`` with no effect keeps its nominal value
(zero gradient) and a large standard error. What excites what:

======================================  =============================================
parameter                               needs
======================================  =============================================
``coldplate.r_gpu_k_per_w``             junction temperatures (``t_junction_max_c``,
                                        ``t_junction_mean_c``) at varying GPU power,
                                        below the throttle onset (see below)
``cdu.ua_w_per_k``                      the exchanger limit binding (supply above its
                                        setpoint: warm facility water, e.g. a chiller
                                        trip) with ``t_supply_c`` and ``t_fw_c``; while
                                        the CDU valve holds the setpoint UA has no effect
``cdu.pump_rated_w``                    cooling or grid power (``e_cool_j``,
                                        ``p_grid_mean_w``); a time-varying pump speed
                                        separates ``P ~ speed^3`` from chiller power
``ultracap.e_max_j``                    ``uc_soc`` (or grid power) with the capacitor
                                        dispatching (``uc_gain > 0``); saturation at
                                        empty or full also shows it in the grid draw
``rejection.eta_ii``                    the chiller running below ``cop_max`` (enough
                                        lift: hot ambient, low supply setpoint) with
                                        ``e_cool_j`` or ``p_grid_mean_w``
flows, capacities (``c_*_j_per_k``)     transients (steps of load or setpoint), not
                                        steady states
======================================  =============================================

Keep the fitted window free of thermal throttling and trips. Throttling slows
the jobs' iteration clock, so once a rack throttles the phase of the 1-3 s
power swings depends on the parameters: the residual then oscillates with them
and a local optimizer stalls (in a trial on the bundled chiller-trip hour,
which throttles for most of its 40-minute trip, LM stopped with
``cdu.ua_w_per_k`` twice its true value and ``cdu.pump_rated_w`` on its lower
bound; with two 5-minute trips that stay below the onset it recovers all five
parameters, ``scripts/calibrate_demo.py``). Trips are discontinuous in the
parameters.

Parameters that enter only as a product (e.g. ``flow_rated_kg_s`` and
``cp_coolant_j_per_kg_k`` in the coolant capacity rate) cannot be separated
from any trace; fit one of them. Use float64 (``jax.enable_x64``): an hour is
36,000 substeps, and float32 round-off puts a floor under the loss that stops
LM early on clean data.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._calib_inputs import (
    CalibrationError,
    actions_for,
    check_fit,
    check_trace,
    fittable_params,
    get,
    set_param,
    trace_series,
)
from ._least_squares import adam, lm
from ._least_squares import std_error as least_squares_std_error
from .plant import Action, Params, init_state
from .scenario import Scenario, load_scenario
from .simulate import rollout

__all__ = ["CalibrationError", "CalibrationResult", "calibrate", "fittable_params",
           "trace_series"]

#: default bounds as factors of the nominal value, intersected with the declared range
BOUND_FACTOR = (0.5, 2.0)
_METHODS = ("lm", "adam")
_SUFFIX_UNITS = (("_w_per_s", "W/s"), ("_w", "W"), ("_j", "J"), ("_c", "degC"),
                 ("_kg", "kg"), ("_l", "L"), ("_usd", "USD"), ("_k_s", "K s"),
                 ("_rack_s", "rack s"), ("_gpu_s", "GPU s"), ("_s", "s"))


def _unit(series: str) -> str:
    if "soc" in series or series.endswith("_frac"):
        return "1"
    for suffix, unit in _SUFFIX_UNITS:
        if series.endswith(suffix):
            return unit
    return ""


@dataclasses.dataclass
class CalibrationResult:
    """Outcome of :func:`calibrate`. Values are in each field's declared unit.

    Attributes:

    - ``fitted`` / ``nominal``: name -> value (a per-rack field: its rack mean,
      all racks scaled by one factor);
    - ``std_error``: name -> approximate standard error of the fitted value
      (``inf`` where the trace does not excite the parameter at all);
    - ``bounds``: name -> ``(lo, hi)`` searched;
    - ``units``: name -> unit of the parameter;
    - ``rms_before`` / ``rms_after``: series -> residual RMS (series unit) at the
      nominal and the fitted values;
    - ``scales`` / ``weights``: series -> normalization scale (series unit) and weight;
    - ``loss_history``: loss of each accepted iterate (LM) or of every step (adam),
      the first at nominal;
    - ``iterations``: accepted LM steps or adam steps; ``n_evals``: rollouts with
      Jacobian evaluated; ``converged``: tolerance met before ``iters``;
    - ``method``; ``params``: the scenario's :class:`Params` with the fitted values;
    - ``predicted``: series -> simulated series at the fit (numpy).
    """

    fitted: dict[str, float]
    nominal: dict[str, float]
    std_error: dict[str, float]
    bounds: dict[str, tuple[float, float]]
    units: dict[str, str]
    rms_before: dict[str, float]
    rms_after: dict[str, float]
    scales: dict[str, float]
    weights: dict[str, float]
    loss_history: list[float]
    iterations: int
    n_evals: int
    converged: bool
    method: str
    params: Params
    predicted: dict[str, np.ndarray]

    @property
    def loss(self) -> float:
        """Final loss (dimensionless)."""
        return self.loss_history[-1] if self.loss_history else math.nan

    def summary(self) -> str:
        """A plain-text table of parameters and series residuals."""
        w = max(len(n) for n in (*self.fitted, "parameter"))
        lines = [f"calibration ({self.method}): {self.iterations} iterations, {self.n_evals} "
                 f"evaluations, loss {self.loss_history[0]:.4g} -> {self.loss:.4g}"
                 f"{'' if self.converged else ' (not converged)'}",
                 f"{'parameter':<{w}}  {'nominal':>11}  {'fitted':>11}  {'change':>8}  "
                 f"{'std.err':>9}  {'bounds':>23}  unit"]
        for n, v in self.fitted.items():
            nom = self.nominal[n]
            ch = f"{(v / nom - 1.0) * 100:+.2f}%" if nom != 0 else "-"
            lo, hi = self.bounds[n]
            se = self.std_error[n]
            lines.append(f"{n:<{w}}  {nom:>11.5g}  {v:>11.5g}  {ch:>8}  "
                         f"{se:>9.3g}  {f'[{lo:.4g}, {hi:.4g}]':>23}  {self.units[n]}"
                         f"{'  (not excited by this trace)' if math.isinf(se) else ''}")
        ws = max(len(s) for s in (*self.rms_after, "series"))
        lines.append(f"{'series':<{ws}}  {'unit':>5}  {'scale':>10}  {'weight':>6}  "
                     f"{'rms before':>11}  {'rms after':>11}")
        for s, after in self.rms_after.items():
            lines.append(f"{s:<{ws}}  {_unit(s):>5}  {self.scales[s]:>10.4g}  "
                         f"{self.weights[s]:>6.3g}  {self.rms_before[s]:>11.4g}  {after:>11.4g}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------- model


def _to_value(theta, lo, hi, logscale, xp=jnp):
    """Bounded value of an unconstrained ``theta`` (``xp``: ``jnp`` or ``np``)."""
    u = 1.0 / (1.0 + xp.exp(-theta))
    safe_lo = xp.where(logscale, lo, 1.0)
    span = xp.log(xp.where(logscale, hi, 1.0) / safe_lo)
    return xp.where(logscale, safe_lo * xp.exp(span * u), lo + (hi - lo) * u)


def _dvalue_dtheta(theta, lo, hi, logscale):
    """Derivative of :func:`_to_value` (numpy)."""
    u = 1.0 / (1.0 + np.exp(-theta))
    v = _to_value(theta, lo, hi, logscale, xp=np)
    span = np.log(np.where(logscale, hi, 1.0) / np.where(logscale, lo, 1.0))
    return np.where(logscale, v * span, hi - lo) * u * (1.0 - u)


def _from_value(v, lo, hi, logscale):
    """Inverse of :func:`_to_value` (numpy), clipped inside the bounds."""
    u = np.empty(len(v))
    for i in range(len(v)):
        if logscale[i]:
            u[i] = math.log(v[i] / lo[i]) / math.log(hi[i] / lo[i])
        else:
            u[i] = (v[i] - lo[i]) / (hi[i] - lo[i])
    u = np.clip(u, 1e-6, 1.0 - 1e-6)
    return np.log(u) - np.log1p(-u)


@partial(jax.jit, static_argnames=("names", "series", "n_steps", "policy"))
def _simulate_with_jac(theta, model, names, series, n_steps, policy):
    """Simulated series (S, N) at ``theta`` and their Jacobian (S, N, P) in ``theta``.

    ``model`` holds the base params, exogenous params, jobs, initial setpoint,
    PRNG key, actions and the bounds; everything static is in the other arguments.
    """

    def sim(th):
        v = _to_value(th, model["lo"], model["hi"], model["log"])
        p = model["params"]
        for i, name in enumerate(names):
            base = get(p, name)
            if jnp.ndim(base) == 0:
                new = v[i].astype(jnp.result_type(float))
            else:
                new = base * (v[i] / jnp.mean(base))
            p = set_param(p, name, new)
        s0 = init_state(p, model["jobs"], setpoint_c=model["setpoint_c"])
        _, out = rollout(p, model["exo"], s0, model["key"], model["actions"], n_steps,
                         policy=policy)
        return jnp.stack([out[k] for k in series])

    def jvp(t):
        return jax.jvp(sim, (theta,), (t,))

    eye = jnp.eye(theta.shape[0], dtype=theta.dtype)
    y, dy = jax.vmap(jvp, out_axes=(None, -1))(eye)
    return y, dy


# ---------------------------------------------------------------------------- public


def calibrate(
    scenario: str | Path | Scenario,
    trace: Mapping[str, Any] | str | Path,
    fit: Sequence[str],
    *,
    actions: Action | Callable | None = None,
    seed: int = 0,
    weights: Mapping[str, float] | None = None,
    scales: Mapping[str, float] | None = None,
    bounds: Mapping[str, tuple[float, float]] | None = None,
    bound_factor: tuple[float, float] = BOUND_FACTOR,
    init: Mapping[str, float] | None = None,
    method: str = "lm",
    iters: int | None = None,
    learning_rate: float = 0.05,
    tol: float = 1e-6,
    skip_steps: int = 0,
    verbose: bool = False,
) -> CalibrationResult:
    """Fit continuous :class:`Params` fields so a rollout reproduces a measured trace.

    **Arguments**:

    - ``scenario``: a bundled name, a YAML path or a :class:`Scenario`; its
      other parameters, exogenous series, jobs and initial state are taken as known.
    - ``trace``: dict of 1-D series, or a CSV path with a header: ``t_s`` (end of
      each control interval: ``dt_s, 2 dt_s, ...``) and any recorded series of
      :func:`heatsync.physics.simulate` (:func:`trace_series`), in their units.
    - ``fit``: dotted names of fields (:func:`fittable_params`), e.g.
      ``"cdu.ua_w_per_k"``. A per-rack field is fitted as one factor on all racks.
    - ``actions``: what produced the trace, as in ``simulate``: ``None`` (the
      scenario's fixed control), an :class:`Action` held or with a leading time
      axis of the trace's length, or a pure policy ``(params, state, exo) -> Action``.
    - ``seed``: PRNG seed of the exogenous noise (as in ``simulate``).
    - ``weights``: series -> weight >= 0 (default 1 for each trace series).
    - ``scales``: series -> normalization scale in the series' unit (default:
      the measured standard deviation; the noise standard deviation gives a
      maximum-likelihood fit).
    - ``bounds``: name -> ``(lo, hi)``; default: the declared range intersected
      with ``bound_factor`` x nominal.
    - ``init``: name -> starting value (default nominal).
    - ``method``: ``"lm"`` (Levenberg-Marquardt) or ``"adam"`` (optax).
    - ``iters``: most iterations (default 30 for LM, 300 for adam);
      ``learning_rate``: adam step in ``theta`` units; ``tol``: LM stops when its
      next step would move ``theta`` by less than ``tol`` or an accepted step
      lowers the loss by less than ``tol`` (relative).
    - ``skip_steps``: leading samples left out of the loss.
    - ``verbose``: print the loss at each iteration.

    **Returns**: :class:`CalibrationResult`. Raises :class:`CalibrationError`
    (a ``ValueError``) for bad inputs, before any JAX tracing.
    """
    sc = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
    p0 = sc.params
    dt_s = float(p0.dt_s)
    meas = check_trace(trace, dt_s)
    n = len(meas["t_s"])
    series = tuple(k for k in meas if k != "t_s")
    names, nominal, lo_hi, units = check_fit(fit, p0, bounds, bound_factor)
    if method not in _METHODS:
        raise CalibrationError(f"method: {method!r}; allowed: {', '.join(_METHODS)}")
    iters = int((30 if method == "lm" else 300) if iters is None else iters)
    if iters < 0:
        raise CalibrationError(f"iters: must be >= 0, got {iters}")
    if not 0 <= skip_steps < n:
        raise CalibrationError(f"skip_steps: must be in [0, {n - 1}] for a trace of {n} "
                               f"samples, got {skip_steps}")
    if not (learning_rate > 0 and math.isfinite(learning_rate)):
        raise CalibrationError(f"learning_rate: must be > 0, got {learning_rate}")
    w = {s: 1.0 for s in series}
    for k, v in (weights or {}).items():
        if k not in w:
            raise CalibrationError(f"weights: {k!r} is not a trace series ({', '.join(series)})")
        if not (v >= 0 and math.isfinite(v)):
            raise CalibrationError(f"weights[{k!r}]: must be finite and >= 0, got {v}")
        w[k] = float(v)
    if sum(w.values()) <= 0:
        raise CalibrationError("weights: all zero; nothing to fit")
    used = slice(skip_steps, n)
    scale = {}
    for s in series:
        x = meas[s][used]
        sd = float(np.std(x))
        scale[s] = sd if sd > 1e-9 * max(float(np.max(np.abs(x))), 1e-300) else \
            max(float(np.max(np.abs(x))), 1.0)
    for k, v in (scales or {}).items():
        if k not in scale:
            raise CalibrationError(f"scales: {k!r} is not a trace series ({', '.join(series)})")
        if not (v > 0 and math.isfinite(v)):
            raise CalibrationError(f"scales[{k!r}]: must be finite and > 0, got {v}")
        scale[k] = float(v)
    for k in init or {}:
        if k not in names:
            raise CalibrationError(f"init: {k!r} is not in fit ({', '.join(names)})")
    acts, policy = actions_for(sc, actions, n)

    f = jnp.result_type(float)
    lo = np.array([lo_hi[k][0] for k in names])
    hi = np.array([lo_hi[k][1] for k in names])
    logscale = lo > 0
    start = np.array([float(np.clip((init or {}).get(k, nominal[k]), lo[i], hi[i]))
                      for i, k in enumerate(names)])
    theta0 = _from_value(start, lo, hi, logscale)
    sw = np.array([w[s] for s in series]) / sum(w.values())
    # residual r = c_s (y - m) with c_s = sqrt(w_s / (sum w * N_used)) / scale_s; loss = r.r
    mask = np.zeros(n)
    mask[used] = 1.0
    coef = (np.sqrt(sw / (n - skip_steps)) / np.array([scale[s] for s in series]))[:, None] * mask
    m = np.stack([meas[s] for s in series])
    model = dict(
        params=p0, exo=sc.exo, jobs=sc.jobs,
        setpoint_c=jnp.asarray(float(sc.control.supply_setpoint_c), f),
        key=jax.random.PRNGKey(seed), actions=acts,
        lo=jnp.asarray(lo, f), hi=jnp.asarray(hi, f), log=jnp.asarray(logscale))

    def evaluate(theta):
        y, dy = _simulate_with_jac(jnp.asarray(theta, f), model, tuple(names), series, n,
                                   policy)
        y = np.asarray(y, dtype=np.float64)
        dy = np.asarray(dy, dtype=np.float64)
        r = (coef * (y - m)).reshape(-1)
        jac = (coef[:, :, None] * dy).reshape(-1, len(names))
        return float(r @ r), r, jac, y

    loss, r, jac, y = evaluate(theta0)
    if not (math.isfinite(loss) and np.all(np.isfinite(jac))):
        raise CalibrationError("the rollout or its Jacobian is not finite at the starting point "
                               "(check the scenario and actions)")
    y_nominal = y
    run = lm if method == "lm" else partial(adam, learning_rate=learning_rate)
    theta, (loss, r, jac, y), history, iterations, n_evals, converged = run(
        evaluate, theta0, (loss, r, jac, y), iters=iters, tol=tol, verbose=verbose)

    values = _to_value(theta, lo, hi, logscale, xp=np)
    dv = _dvalue_dtheta(theta, lo, hi, logscale)
    fitted = {k: float(values[i]) for i, k in enumerate(names)}
    p_fit = p0
    for i, k in enumerate(names):
        base = get(p0, k)
        p_fit = set_param(p_fit, k, float(values[i]) if np.ndim(base) == 0
                     else np.asarray(base, np.float64) * (values[i] / np.mean(base)))
    rms_after = {s: float(np.sqrt(np.mean((y[i] - m[i])[used] ** 2))) for i, s in
                 enumerate(series)}
    rms_before = {s: float(np.sqrt(np.mean((y_nominal[i] - m[i])[used] ** 2))) for i, s in
                  enumerate(series)}
    std_error = least_squares_std_error(jac, coef, rms_after, series, dv, names)
    return CalibrationResult(
        fitted=fitted, nominal=nominal, std_error=std_error, bounds=lo_hi, units=units,
        rms_before=rms_before, rms_after=rms_after, scales=scale, weights=w,
        loss_history=history, iterations=iterations, n_evals=n_evals, converged=converged,
        method=method, params=p_fit, predicted={s: y[i].copy() for i, s in enumerate(series)})


