"""Scenario loading and validation: every bad value names its field and the allowed range."""

from __future__ import annotations

import numpy as np
import pytest

import heatsync
from heatsync.envs import episode_steps
from heatsync.physics import ScenarioError, load_scenario


def test_bundled_scenarios__all_load_and_include_the_required_ones():
    names = heatsync.list_scenarios()
    for required in ("default", "sync-swings", "grid-outage", "checkpoint-storm", "heatwave",
                     "chiller-trip", "pump-failure", "vent-failure"):
        assert required in names
    for n in names:
        sc = load_scenario(n)
        assert sc.name == n
        assert episode_steps(sc) >= 1


def test_default__is_a_megawatt_pod_of_eight_nvl72_racks(scenarios):
    p = scenarios["default"].params
    assert p.n_racks == 8
    rack_kw = (p.gpu.n_gpu * p.gpu.p_max_w + p.gpu.p_other_w) / 1e3
    assert 120 <= rack_kw <= 140  # PHYSICS.md NVL72-class rack
    assert 0.9e6 <= 8 * rack_kw * 1e3 <= 1.2e6


@pytest.mark.parametrize(
    "overrides, field, words",
    [
        ({"plant": {"gpu": {"p_max_wat": 700}}}, "plant.gpu.p_max_wat", "unknown key"),
        ({"plant": {"gpu": {"p_max_w": "700"}}}, "plant.gpu.p_max_w", "expected a number"),
        ({"plant": {"gpu": {"p_max_w": 1e6}}}, "plant.gpu.p_max_w", "[100.0, 3000.0]"),
        ({"plant": {"ups": {"e_max_j": 0.0}}}, "plant.ups.e_max_j", "> 0"),
        ({"plant": {"ultracap": {"e_max_j": -1.0}}}, "plant.ultracap.e_max_j", "[0.0,"),
        ({"plant": {"n_sub": 0}}, "plant.n_sub", "[1, 1000]"),
        ({"plant": {"dt_s": 100.0}}, "plant.dt_s", "[0.01, 60.0]"),
        ({"plant": {"dt_s": 10.0, "n_sub": 2}}, "plant.n_sub", "exceeds 1 s"),
        ({"plant": {"gpu": {"t_slowdown_c": 95.0}}}, "plant.gpu.t_slowdown_c", "inverted range"),
        ({"plant": {"cdu": {"setpoint_min_c": 50.0}}}, "plant.cdu.setpoint_min_c", "inverted"),
        ({"jobs": [{"racks": [0, 9]}]}, "jobs[0].racks", "[0, 7]"),
        ({"jobs": [{"racks": "all", "dutyy": 0.5}]}, "jobs[0].dutyy", "unknown key"),
        ({"jobs": [{"racks": "all", "start_s": 10.0, "stop_s": 5.0}]}, "jobs[0].stop_s",
         "inverted"),
        ({"faults": [{"kind": "meteor"}]}, "faults[0].kind", "chiller-trip"),
        ({"faults": [{"kind": "heat-wave", "magnitude": 99}]}, "faults[0].magnitude",
         "[0.0, 30.0]"),
        ({"control": {"pump_sped": 1.0}}, "control.pump_sped", "unknown setpoint"),
        ({"control": {"supply_setpoint_c": 80.0}}, "control.supply_setpoint_c", "[10.0, 45.0]"),
        ({"episode": {"steps": 0}}, "episode.steps", "[1, 10000000]"),
        ({"reward": {"energy": 1.0}}, "reward.energy", "unknown price"),
        ({"reward": {"gpu_hour_usd": -1.0}}, "reward.gpu_hour_usd", "[0.0, 10000.0]"),
        ({"plantt": {}}, "plantt", "unknown section"),
    ],
)
def test_load_scenario__bad_value_names_field_and_range(overrides, field, words):
    with pytest.raises(ScenarioError) as e:
        load_scenario("default", **overrides)
    msg = str(e.value)
    assert f"'{field}'" in msg, msg
    assert words in msg, msg


def test_load_scenario__unknown_name_lists_bundled():
    with pytest.raises(ScenarioError, match="sync-swings"):
        load_scenario("no-such-scenario")


def test_load_scenario__double_underscore_overrides_and_per_rack_lists():
    sc = load_scenario("default", plant__ups__e_max_j=1e8, episode__steps=10,
                       plant={"gpu": {"n_gpu": [72.0] * 7 + [36.0]}})
    assert sc.params.ups.e_max_j == 1e8
    assert episode_steps(sc) == 10
    assert np.asarray(sc.params.gpu.n_gpu)[-1] == 36.0
    with pytest.raises(ScenarioError, match="expected n_racks = 8"):
        load_scenario("default", plant={"gpu": {"n_gpu": [72.0] * 3}})


def test_load_scenario__yaml_path_and_extends(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text("name: mine\nextends: sync-swings\nplant: {ups: {e_max_j: 2.0e+8}}\n")
    sc = load_scenario(str(f))
    assert sc.name == "mine"
    assert sc.params.ups.e_max_j == 2e8
    assert episode_steps(sc) == episode_steps(load_scenario("sync-swings"))


def test_load_scenario__trace_errors_name_column_and_row(tmp_path):
    def write(text):
        (tmp_path / "t.csv").write_text(text)
        f = tmp_path / "s.yaml"
        f.write_text("name: s\nexogenous: {trace: t.csv}\n")
        return str(f)

    cases = [
        ("ambient_c\n20\n", "missing column 't_s'"),
        ("t_s,ambient_k\n0,290\n", "wrong unit"),
        ("t_s,ambient_c\n0,20\n10,21\n5,22\n", "strictly increasing"),
        ("t_s,ambient_c\n0,293\n", "looks like kelvin"),
        ("t_s,ambient_c\n0,abc\n", "not a number"),
        ("t_s,humidity\n0,3\n", "unknown column 'humidity'"),
    ]
    for text, words in cases:
        with pytest.raises(ScenarioError, match="exogenous.trace") as e:
            load_scenario(write(text))
        assert words in str(e.value), str(e.value)
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario("default", exogenous={"trace": str(tmp_path / "missing.csv")})


def test_trace__overrides_generated_series(tmp_path):
    (tmp_path / "t.csv").write_text("t_s,ambient_c,price_usd_per_kwh\n0,10,0.5\n100,20,0.5\n")
    f = tmp_path / "s.yaml"
    f.write_text("name: s\nexogenous: {trace: t.csv}\n")
    res = heatsync.simulate(str(f), steps=50)
    # the interval starting at t = 50 s sees 15 degC
    assert res.series["ambient_c"][50 - 1 - 0] == pytest.approx(14.9, abs=0.2)
    assert np.allclose(res.series["price_usd_per_kwh"], 0.5)
