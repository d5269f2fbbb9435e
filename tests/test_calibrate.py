"""Calibration: five parameters moved by +-20 % are recovered from a 1 h trace, to 3 % without
noise and to the noise level with it; bad traces fail before any tracing with clear errors.

The experiment is the one of ``scripts/calibrate_demo.py``: two 5-minute chiller trips at a
25 degC supply setpoint (the CDU exchanger limit binds between them the chiller runs below its
COP bound), a sinusoidal pump speed, rack ultracapacitors with gain 1 that empty and fill, and
no throttling. Both fits share one compiled residual-and-Jacobian function (same trace length,
fit list and series), so only the first pays the compile.
"""

from __future__ import annotations

import dataclasses
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from heatsync.physics import (
    CalibrationError,
    calibrate,
    fittable_params,
    load_scenario,
    replace,
    simulate,
)

calmod = importlib.import_module("heatsync.physics.calibrate")
#: the private halves of physics.calibrate, tested directly
inputs = importlib.import_module("heatsync.physics._calib_inputs")
lsq = importlib.import_module("heatsync.physics._least_squares")

STEPS = 3600
TRUE_FACTORS = {
    "coldplate.r_gpu_k_per_w": 1.2,
    "cdu.ua_w_per_k": 0.8,
    "cdu.pump_rated_w": 1.2,
    "ultracap.e_max_j": 0.8,
    "rejection.eta_ii": 1.2,
}
SERIES = ("p_grid_mean_w", "p_it_mean_w", "e_cool_j", "t_supply_c", "t_fw_c",
          "t_junction_max_c", "t_junction_mean_c", "uc_soc")
TEMP_NOISE_C = 0.2
POWER_NOISE_FRAC = 0.005  # of the series' mean magnitude
SOC_NOISE = 0.005


def _experiment(steps):
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
    actions = replace(held, pump_speed=jnp.asarray(0.85 + 0.15 * np.sin(2 * np.pi * t / 600.0)),
                      uc_gain=jnp.ones((steps, r)),
                      uc_target_w=jnp.asarray(np.repeat(uc_target[:, None], r, axis=1)))
    return sc, actions


def _value(params, name):
    group, field = name.split(".")
    return getattr(getattr(params, group), field)


def _perturbed(sc, factors):
    p = sc.params
    for name, f in factors.items():
        group, field = name.split(".")
        sub = getattr(p, group)
        p = replace(p, **{group: replace(sub, **{field: getattr(sub, field) * f})})
    return dataclasses.replace(sc, params=p)


@pytest.fixture(scope="module")
def hour():
    """Nominal scenario, actions, the true plant's noiseless 1 h trace and true values."""
    with jax.enable_x64(True):
        sc, actions = _experiment(STEPS)
        truth = _perturbed(sc, TRUE_FACTORS)
        s = simulate(truth, actions, steps=STEPS).series
    trace = {"t_s": s["t_s"], **{k: np.asarray(s[k], np.float64) for k in SERIES}}
    true = {k: float(_value(truth.params, k)) for k in TRUE_FACTORS}
    assert float(np.max(s["t_junction_max_c"])) < float(sc.params.gpu.t_slowdown_c)
    assert np.min(s["uc_soc_min"]) < 0.01 and np.max(s["uc_soc_max"]) > 0.99  # saturates
    return sc, actions, trace, true


def test_calibrate__recovers_five_parameters_within_3_percent_from_noiseless_hour(hour):
    sc, actions, trace, true = hour
    with jax.enable_x64(True):
        res = calibrate(sc, trace, list(TRUE_FACTORS), actions=actions)
    print(res.summary())
    for name, v in true.items():
        err = res.fitted[name] / v - 1.0
        print(f"{name}: true {v:.6g}, fitted {res.fitted[name]:.6g} ({err * 100:+.4f} %)")
        assert abs(err) < 0.03, name
        assert abs(res.nominal[name] / v - 1.0) > 0.15, name  # it really started 20 % off
    assert res.converged and res.iterations <= 30
    for k in SERIES:
        if res.rms_before[k] > 0:
            assert res.rms_after[k] < 1e-3 * res.rms_before[k], k


def test_calibrate__noisy_hour_fits_to_the_noise_level(hour):
    """0.2 degC, 0.5 % power and 0.005 SoC Gaussian noise (seeded).

    Criterion: the model is exact, so at the optimum the residual is the noise minus its
    projection on 5 of 28,800 directions: each series' residual RMS estimates its noise
    std with relative sd 1/sqrt(2 * 3600) = 1.2 %; we require within 10 % (8 sd), which
    a parameter off by ~1 % already breaks (1 % of R moves junctions by ~0.35 K). Each
    parameter must lie within 4 standard errors (sandwich estimate from the Jacobian and
    the per-series residual variance) of its true value, and the standard error must be
    below 1 % of it, so the experiment pins every parameter (not a band that can only
    pass).
    """
    sc, actions, clean, true = hour
    rng = np.random.default_rng(20240607)
    std = {}
    for k in SERIES:
        if k.endswith("_c"):
            std[k] = TEMP_NOISE_C
        elif k == "uc_soc":
            std[k] = SOC_NOISE
        else:
            std[k] = POWER_NOISE_FRAC * float(np.mean(np.abs(clean[k])))
    trace = {"t_s": clean["t_s"], **{k: clean[k] + rng.normal(0.0, std[k], STEPS)
                                     for k in SERIES}}
    with jax.enable_x64(True):
        res = calibrate(sc, trace, list(TRUE_FACTORS), actions=actions)
    print(res.summary())
    for k in SERIES:
        print(f"{k}: residual rms {res.rms_after[k]:.4g}, noise std {std[k]:.4g}")
        assert res.rms_after[k] == pytest.approx(std[k], rel=0.10), k
    for name, v in true.items():
        err, se = res.fitted[name] - v, res.std_error[name]
        print(f"{name}: true {v:.6g}, fitted {res.fitted[name]:.6g} ({err / v * 100:+.3f} %), "
              f"std err {se / v * 100:.3f} %, {err / se:+.2f} sd")
        assert abs(err) <= 4.0 * se, name
        assert se < 0.01 * v, name


# ------------------------------------------------------------------ errors, before tracing


@pytest.fixture
def no_tracing(monkeypatch):
    """Fail the test if calibrate gets as far as the model."""

    def boom(*args, **kwargs):
        raise AssertionError("calibrate traced the model before rejecting its input")

    monkeypatch.setattr(calmod, "_simulate_with_jac", boom)


def _good(n=10, dt=1.0):
    t = dt * np.arange(1, n + 1)
    return {"t_s": t, "t_supply_c": 32.0 + 0 * t, "p_grid_mean_w": 8e5 + 0 * t}


def _with(**changes):
    tr = _good()
    tr.update(changes)
    return tr


BAD_TRACES = {
    "unknown column": (_with(p_grid_w=np.zeros(10)),
                       ["unknown column", "'p_grid_w'", "allowed:", "p_grid_mean_w", "uc_soc"]),
    "missing t_s": ({"t_supply_c": np.zeros(10)}, ["missing column 't_s'"]),
    "only t_s": ({"t_s": np.arange(1.0, 11.0)}, ["no measured series", "t_supply_c"]),
    "non-monotonic": (_with(t_s=np.array([1, 2, 3, 5, 4, 6, 7, 8, 9, 10.0])),
                      ["'t_s'", "strictly increasing", "index 4"]),
    "non-uniform": (_with(t_s=np.array([1, 2, 3, 4, 5, 6.5, 7, 8, 9, 10.0])),
                    ["'t_s'", "non-uniform", "index 5", "dt_s = 1 s"]),
    "wrong step": (_with(t_s=2.0 * np.arange(1, 11)), ["'t_s'", "dt_s = 1 s"]),
    "starts at 0": (_with(t_s=np.arange(10.0)), ["'t_s'", "first sample at 0 s"]),
    "NaN": (_with(t_supply_c=np.where(np.arange(10) == 5, np.nan, 32.0)),
            ["'t_supply_c'", "index 5", "NaN"]),
    "length mismatch": (_with(t_fw_c=np.zeros(9)), ["'t_fw_c'", "length 9", "'t_s' (10)"]),
    "2-D column": (_with(uc_soc=np.zeros((10, 8))), ["'uc_soc'", "1-D"]),
    "not a mapping": ([1, 2, 3], ["dict of series or a CSV path"]),
}


@pytest.mark.parametrize("case", list(BAD_TRACES))
def test_calibrate__bad_trace_raises_naming_the_column(case, scenarios, no_tracing):
    trace, parts = BAD_TRACES[case]
    with pytest.raises(CalibrationError) as e:
        calibrate(scenarios["default"], trace, ["cdu.ua_w_per_k"])
    msg = str(e.value)
    for part in parts:
        assert part in msg, (case, part, msg)


def test_calibrate__bad_fit_names_actions_and_options_raise_clearly(scenarios, no_tracing):
    sc = scenarios["default"]
    with pytest.raises(CalibrationError, match=r"unknown or non-fittable .*'cdu.ua'.*fittable:.*"
                                               r"cdu\.ua_w_per_k"):
        calibrate(sc, _good(), ["cdu.ua"])
    with pytest.raises(CalibrationError, match="non-fittable parameter 'n_racks'"):
        calibrate(sc, _good(), ["n_racks"])
    with pytest.raises(CalibrationError, match="fit: empty"):
        calibrate(sc, _good(), [])
    with pytest.raises(CalibrationError, match="duplicate"):
        calibrate(sc, _good(), ["cdu.ua_w_per_k", "cdu.ua_w_per_k"])
    with pytest.raises(CalibrationError, match=r"is 0 at nominal.*bounds="):
        calibrate(sc, _good(), ["cdu.pump_speed_min"])
    with pytest.raises(CalibrationError, match=r"bounds\['cdu.ua_w_per_k'\].*declared"):
        calibrate(sc, _good(), ["cdu.ua_w_per_k"], bounds={"cdu.ua_w_per_k": (-1.0, 1e5)})
    with pytest.raises(CalibrationError, match="weights: 'e_cool_j' is not a trace series"):
        calibrate(sc, _good(), ["cdu.ua_w_per_k"], weights={"e_cool_j": 1.0})
    with pytest.raises(CalibrationError, match="method"):
        calibrate(sc, _good(), ["cdu.ua_w_per_k"], method="sgd")
    acts = jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (7,) + jnp.shape(x)),
                                  sc.control)
    with pytest.raises(CalibrationError, match="7 steps but the trace has 10 samples"):
        calibrate(sc, _good(), ["cdu.ua_w_per_k"], actions=acts)


def test_calibrate__csv_trace_reads_like_the_dict_and_names_bad_cells(tmp_path, scenarios,
                                                                      no_tracing):
    good = _good()
    path = tmp_path / "trace.csv"
    np.savetxt(path, np.stack(list(good.values()), axis=1), delimiter=",",
               header=",".join(good), comments="")
    read = inputs.check_trace(path, 1.0)
    assert list(read) == list(good)
    for k in good:
        np.testing.assert_array_equal(read[k], good[k])
    text = path.read_text().splitlines()
    text[3] = text[3].split(",")[0] + ",warm," + text[3].split(",")[2]
    path.write_text("\n".join(text))
    with pytest.raises(CalibrationError, match="row 4, column 't_supply_c': 'warm' is not a"):
        calibrate(scenarios["default"], path, ["cdu.ua_w_per_k"])
    path.write_text("t_s,supply_temp\n1,30\n")
    with pytest.raises(CalibrationError, match="unknown column.*'supply_temp'.*allowed"):
        calibrate(scenarios["default"], path, ["cdu.ua_w_per_k"])


def test_fittable_params__lists_continuous_plant_constants_only():
    names = fittable_params()
    for k in TRUE_FACTORS:
        assert k in names
    assert "dt_s" not in names and "n_racks" not in names and "n_sub" not in names
    assert all(f.metadata["lo"] is not None or f.metadata["hi"] is not None
               for f in names.values())


def test_std_error__unexcited_parameter_is_inf_and_white_noise_matches_least_squares():
    rng = np.random.default_rng(0)
    jac = np.zeros((200, 3))
    jac[:100, 0] = rng.normal(size=100)
    jac[100:, 1] = rng.normal(size=100)  # column 2 stays 0: the trace does not excite it
    coef = np.full((2, 100), 0.1)
    se = lsq.std_error(jac, coef, {"a": 2.0, "b": 2.0}, ("a", "b"), np.ones(3),
                           ("x", "y", "z"))
    assert np.isinf(se["z"])
    # one series, white noise of std 2 (residual units 0.1 * 2): sigma^2 (J^T J)^-1
    expect = 0.2 / np.linalg.norm(jac[:, :2], axis=0)
    assert [se["x"], se["y"]] == pytest.approx(list(expect), rel=1e-12)
