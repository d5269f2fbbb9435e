"""Recover five perturbed plant parameters from a synthetic 1 h trace.

The "true" plant is the chiller-trip scenario with five parameters moved by
+-20 %; its trace (grid, IT and cooling power, supply, facility-water and
junction temperatures, ultracapacitor state of charge) is simulated, optionally
with Gaussian measurement noise, and :func:`heatsync.physics.calibrate` fits
the five parameters back from their nominal values.

The experiment excites every parameter:

* two 5-minute chiller trips (at 10 and 35 min) with the supply setpoint at
  25 degC: the facility water warms until the CDU exchanger limit binds and the
  supply rises above its setpoint (``cdu.ua_w_per_k``), while between trips the
  chiller runs at a lift where its COP stays below ``cop_max``
  (``rejection.eta_ii``); the junctions stay below the throttle onset, so the
  jobs' iteration phase does not depend on the parameters;
* the pump speed follows a 10-minute sine between 0.7 and 1.0
  (``cdu.pump_rated_w`` through ``speed^3`` in the cooling power, and the cold
  plates' flow dependence);
* rack ultracapacitors dispatch with gain 1 around a bus-draw setpoint that
  swings +-20 kW around 95 kW every 5 minutes, so they empty and fill up
  (``ultracap.e_max_j``);
* training jobs swing GPU power every 2-3 s (``coldplate.r_gpu_k_per_w``).

Run::

    python scripts/calibrate_demo.py            # noiseless
    python scripts/calibrate_demo.py --noise    # 0.2 degC, 0.5 % power, 0.005 SoC noise
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from heatsync.physics import Scenario, calibrate, load_scenario, replace, simulate

#: name -> factor applied to the nominal value in the "true" plant
TRUE_FACTORS = {
    "coldplate.r_gpu_k_per_w": 1.2,
    "cdu.ua_w_per_k": 0.8,
    "cdu.pump_rated_w": 1.2,
    "ultracap.e_max_j": 0.8,
    "rejection.eta_ii": 1.2,
}
#: measured series and their noise: ("abs", std in the series unit) or ("rel", share of
#: the series' mean magnitude)
NOISE = {
    "p_grid_mean_w": ("rel", 0.005),
    "p_it_mean_w": ("rel", 0.005),
    "e_cool_j": ("rel", 0.005),
    "t_supply_c": ("abs", 0.2),
    "t_fw_c": ("abs", 0.2),
    "t_junction_max_c": ("abs", 0.2),
    "t_junction_mean_c": ("abs", 0.2),
    "uc_soc": ("abs", 0.005),
}


def experiment(steps: int = 3600) -> tuple[Scenario, object]:
    """The nominal scenario and the actions (leading time axis ``steps``) of the demo."""
    sc = load_scenario(
        "chiller-trip",
        faults=[{"kind": "chiller-trip", "start_s": 600.0, "duration_s": 300.0},
                {"kind": "chiller-trip", "start_s": 2100.0, "duration_s": 300.0}],
        control={"supply_setpoint_c": 25.0},
    )
    t = np.arange(steps) * float(sc.params.dt_s)
    r = sc.params.n_racks
    held = jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (steps,) + jnp.shape(x)),
                                  sc.control)
    uc_target = 95e3 + 20e3 * np.sin(2 * np.pi * t / 300.0)
    actions = replace(
        held,
        pump_speed=jnp.asarray(0.85 + 0.15 * np.sin(2 * np.pi * t / 600.0)),
        uc_gain=jnp.ones((steps, r)),
        uc_target_w=jnp.asarray(np.repeat(uc_target[:, None], r, axis=1)),
    )
    return sc, actions


def perturbed(sc: Scenario, factors: dict[str, float]) -> Scenario:
    """The scenario with each named parameter multiplied by its factor."""
    p = sc.params
    for name, f in factors.items():
        group, field = name.split(".")
        sub = getattr(p, group)
        p = replace(p, **{group: replace(sub, **{field: getattr(sub, field) * f})})
    return dataclasses.replace(sc, params=p)


def make_trace(sc: Scenario, actions, steps: int, noise: bool, noise_seed: int) -> dict:
    """Simulate ``sc`` and return the measured series (with noise if asked)."""
    s = simulate(sc, actions, steps=steps).series
    trace = {"t_s": s["t_s"]}
    rng = np.random.default_rng(noise_seed)
    for name, (kind, level) in NOISE.items():
        x = np.asarray(s[name], dtype=np.float64)
        std = level * float(np.mean(np.abs(x))) if kind == "rel" else level
        trace[name] = x + (rng.normal(0.0, std, x.shape) if noise else 0.0)
    return trace


def nominal_value(sc: Scenario, name: str) -> float:
    group, field = name.split(".")
    return float(np.mean(getattr(getattr(sc.params, group), field)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="Noise (Gaussian std) with --noise: " + ", ".join(
                                     f"{k} {v[1] * 100:g} % of its mean" if v[0] == "rel"
                                     else f"{k} {v[1]:g}{' degC' if k.endswith('_c') else ''}"
                                     for k, v in NOISE.items()))
    ap.add_argument("--noise", action="store_true",
                    help="add Gaussian measurement noise to the trace")
    ap.add_argument("--noise-seed", type=int, default=0, help="seed of the measurement noise")
    ap.add_argument("--steps", type=int, default=3600,
                    help="trace length in control intervals of 1 s (default 3600 = 1 h)")
    ap.add_argument("--method", choices=("lm", "adam"), default="lm",
                    help="optimizer: Levenberg-Marquardt (default) or optax adam")
    ap.add_argument("--iters", type=int, default=None,
                    help="most iterations (default 30 for lm, 300 for adam)")
    ap.add_argument("--learning-rate", type=float, default=0.05,
                    help="adam step in the normalized parameter space")
    ap.add_argument("--save-trace", metavar="CSV", default=None,
                    help="also write the trace to this CSV (a valid calibrate() input)")
    ap.add_argument("--float32", action="store_true",
                    help="run in float32 (default float64, as calibration needs)")
    ap.add_argument("--quiet", action="store_true", help="no per-iteration progress")
    args = ap.parse_args(argv)
    jax.config.update("jax_enable_x64", not args.float32)

    t0 = time.perf_counter()
    sc, actions = experiment(args.steps)
    trace = make_trace(perturbed(sc, TRUE_FACTORS), actions, args.steps, args.noise,
                       args.noise_seed)
    if args.save_trace:
        names = list(trace)
        np.savetxt(args.save_trace, np.stack([trace[k] for k in names], axis=1),
                   delimiter=",", header=",".join(names), comments="", fmt="%.17g")
    t1 = time.perf_counter()
    res = calibrate(sc, trace, list(TRUE_FACTORS), actions=actions, method=args.method,
                    iters=args.iters, learning_rate=args.learning_rate, verbose=not args.quiet)
    t2 = time.perf_counter()

    print()
    print(res.summary())
    print()
    print(f"{'parameter':<24}  {'nominal':>10}  {'true':>10}  {'recovered':>10}  "
          f"{'error':>8}  {'std.err':>8}")
    worst = 0.0
    for name, f in TRUE_FACTORS.items():
        nom = nominal_value(sc, name)
        true = nom * f
        got = res.fitted[name]
        err = got / true - 1.0
        worst = max(worst, abs(err))
        print(f"{name:<24}  {nom:>10.5g}  {true:>10.5g}  {got:>10.5g}  {err * 100:>+7.3f}%  "
              f"{res.std_error[name] / true * 100:>7.3f}%")
    print(f"\nworst relative error {worst * 100:.3f} %; trace {args.steps} s "
          f"({'noisy' if args.noise else 'noiseless'}), trace simulation {t1 - t0:.1f} s, "
          f"calibration {t2 - t1:.1f} s ({res.iterations} iterations, {res.n_evals} "
          f"evaluations, compile included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
