"""The tasks pose their problem: seeds give different episodes, storage cannot be drained
for free, the UPS keeps its ride-through reserve, PowerSmoothing's grid specification
binds, and the committed benchmark (``results/benchmark.csv``, each task's test
distribution) shows that no constant action wins.

The rollouts here are short (a few hundred intervals, a few episodes); the claims over
whole test episodes and 16 seeds are checked on the committed table, which
``python scripts/benchmark.py`` regenerates.
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from heatsync.envs import make_task, rollout, task_names, task_spec
from heatsync.physics import ScenarioError, load_scenario, ups
from heatsync.physics.units import J_PER_KWH

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "results" / "benchmark.csv"


@dataclasses.dataclass(frozen=True)
class Constant:
    """A JAX policy holding one action (a tuple, so the policy hashes)."""

    action: tuple

    def init(self, key, params, constants):
        return ()

    def act(self, pstate, obs, key, params, state):
        return jnp.asarray(self.action, jnp.float32), pstate


def _zeros(task, params):
    return Constant(tuple([0.0] * task.action_size(params)))


# --- seeds matter --------------------------------------------------------------------


def _first_obs(task, params, keys, n):
    def episode(key):
        obs, state = task.reset(key, params)

        space = task.action_space(params)
        a = jnp.zeros(space.shape, space.dtype)

        def body(carry, _):
            obs, state = carry
            obs2, state, *_ = task.step(key, state, a, params)
            return (obs2, state), obs

        _, seq = jax.lax.scan(body, (obs, state), None, length=n)
        return seq

    return jax.jit(jax.vmap(episode))(keys)


@pytest.mark.parametrize("name", ["PowerSmoothing", "CoolingDispatch", "PowerAwareScheduling",
                                  "Facility"])
def test_seeds__two_test_episodes_differ_in_their_first_100_observations(name):
    task = make_task(name)
    params = task.make_params(task.spec.test_scenario)
    seq = np.asarray(_first_obs(task, params, jax.random.split(jax.random.PRNGKey(0), 2), 100))
    assert np.isfinite(seq).all()
    diff = np.abs(seq[0] - seq[1])
    # not one component that happens to carry noise: many differ, already at reset
    assert (diff[0] > 1e-4).sum() >= 3, np.flatnonzero(diff[0] > 1e-4)
    assert (diff.max(axis=0) > 1e-3).mean() > 0.1


def test_seeds__the_same_key_replays_the_same_episode():
    task = make_task("PowerSmoothing")
    params = task.make_params(task.spec.test_scenario)
    keys = jnp.stack([jax.random.PRNGKey(3)] * 2)
    seq = np.asarray(_first_obs(task, params, keys, 20))
    np.testing.assert_array_equal(seq[0], seq[1])


def test_distribution__bad_randomize_entries_name_the_field_and_range():
    cases = [
        ({"randomize": {"plant": {"ups.e_max_jj": [1e8, 2e8]}}}, "randomize.plant.ups.e_max_jj",
         "not a randomizable field"),
        ({"randomize": {"plant": {"ups.e_max_j": [2e8, 1e8]}}}, "randomize.plant.ups.e_max_j",
         "inverted"),
        ({"randomize": {"jobs": {"period_s": [0.1, 5.0]}}}, "randomize.jobs.period_s[0]",
         "[0.5, 60.0]"),
        ({"randomize": {"jobs": {"count": [0, 3]}}}, "randomize.jobs.count[0]", "[1, 3]"),  # n_jobs
        ({"randomize": {"exogenous": {"ambient_mean_c": [10, 200]}}},
         "randomize.exogenous.ambient_mean_c[1]", "[-40.0, 50.0]"),
        ({"randomize": {"faults": [{"kind": "grid-outage", "probability": 1.5}]}},
         "randomize.faults[0].probability", "[0.0, 1.0]"),
    ]
    for overrides, field, words in cases:
        with pytest.raises(ScenarioError) as e:
            load_scenario("PowerSmoothing-train", **overrides)
        msg = str(e.value)
        assert field in msg and words in msg, (field, msg)


# --- storage is priced; the UPS keeps its reserve ------------------------------------


@pytest.fixture(scope="module")
def smoothing():
    """PowerSmoothing on sync-swings (no outage), 300 intervals: idle storage against a
    policy that holds the grid target as low as it can (the UPS carries the load)."""
    task = make_task("PowerSmoothing")
    params = task.make_params("sync-swings", episode__steps=300,
                              plant__ups__e_max_j=1.8e8, plant__ups__soc_init=0.9)
    layout = task.layout(params)
    drain = np.zeros(task.action_size(params), np.float32)
    drain[layout.slices["ups_ramp"]] = -1.0   # target down at the slew limit, every interval
    drain[layout.slices["ups_gain"]] = 1.0    # the UPS follows the target fully
    keys = jax.random.split(jax.random.PRNGKey(1), 2)
    idle = rollout(task, params, _zeros(task, params), keys, 300)
    drained = rollout(task, params, Constant(tuple(float(x) for x in drain)), keys, 300)
    return task, params, idle, drained


def _stored_j(res):
    """Energy in the UPS after each interval (N, T) (J)."""
    e_max = np.asarray(res.final.plant_params.ups.e_max_j).reshape(-1, 1)
    return np.asarray(res.series["ups_soc"]) * e_max


def test_storage__draining_the_ups_saves_grid_energy_but_costs_more_in_total(smoothing):
    task, params, idle, drained = smoothing
    e_ups = _stored_j(drained)
    assert (e_ups[:, -1] < 0.8 * e_ups[:, 0]).all()   # it did drain
    energy = lambda r: -np.asarray(r.series["reward_energy"]).sum(axis=1)  # noqa: E731
    value = lambda r: -np.asarray(r.series["reward_storage_value"]).sum(axis=1)  # noqa: E731
    # cheaper at the meter by the energy taken from storage...
    assert (energy(drained) < energy(idle) - 1.0).all()
    # ...which the storage-value term charges back at what restoring it costs
    assert (value(drained) > energy(idle) - energy(drained)).all()
    assert (np.asarray(drained.cost_usd) > np.asarray(idle.cost_usd)).all()


def test_storage__actions_cannot_draw_the_ups_below_its_ride_through_reserve(smoothing):
    task, params, idle, drained = smoothing
    p = jax.tree.map(lambda x: x[0], drained.final.plant_params)
    floor = float(ups.floor_j(p.ups, 1.0))   # with the grid up: the ride-through reserve
    assert floor == pytest.approx(float(ups.reserve_j(p.ups)))
    e_ups = _stored_j(drained)
    assert e_ups.min() >= floor * (1 - 1e-3), (e_ups.min(), floor)
    assert e_ups[:, -1].max() <= floor * 1.05   # and it got there: the reserve binds


def test_storage__an_outage_empties_the_ups_and_the_episode_pays_for_it():
    """The grid drops for 300 s and the generator does not start in that time: the UPS
    carries the pod down to empty (the case the reserve exists for), and the episode's
    storage-value cost is the energy it gave at what buying it back costs."""
    task = make_task("PowerSmoothing")
    params = task.make_params("grid-outage", episode__steps=900, plant__ups__e_max_j=2.4e8,
                              plant__ups__p_max_w=1.5e6, plant__ups__soc_init=0.95,
                              plant__grid__gen_start_s=900.0)
    res = rollout(task, params, _zeros(task, params), jax.random.PRNGKey(0)[None], 900,
                  record=("ups_soc", "price_usd_per_kwh"))
    e_ups = _stored_j(res)[0]
    p = jax.tree.map(lambda x: x[0], res.final.plant_params)
    empty = float(p.ups.e_min_frac * p.ups.e_max_j)
    reserve = float(ups.reserve_j(p.ups))
    assert reserve < 0.9 * float(p.ups.e_max_j)
    assert e_ups[:600].min() >= reserve * (1 - 1e-3)  # before the outage: the reserve holds
    assert e_ups.min() <= empty + 0.01 * float(p.ups.e_max_j)           # emptied by it
    charge_usd = -np.asarray(res.series["reward_storage_value"])[0][600:900].sum()
    given_kwh = (e_ups[599] - e_ups[600:900].min()) / J_PER_KWH
    cheapest = np.asarray(res.series["price_usd_per_kwh"])[0][599:900].min()
    assert given_kwh > 5.0
    assert charge_usd >= 0.95 * given_kwh * cheapest / float(p.ups.eta_charge), \
        (charge_usd, given_kwh, cheapest)


# --- the committed benchmark ---------------------------------------------------------


def _table():
    if not RESULTS.exists():
        pytest.skip("results/benchmark.csv not generated")
    with RESULTS.open() as f:
        rows = list(csv.DictReader(f))
    return rows


def _by_controller(rows, task):
    spec = task_spec(task)
    out: dict[str, list[dict]] = {}
    for r in rows:
        if r["task"] == task and r["scenario"].startswith(spec.test_scenario):
            out.setdefault(r["controller"], []).append(r)
    return out


def _mean_price(rs):
    """Mean of the episodes' cost plus specification penalties (USD, ``-return``): what the
    reward charges, so an episode that breaks the specification is not cheap."""
    return float(np.mean([-float(r["return"]) for r in rs]))


def _met(r) -> bool:
    return int(float(r["spec_met"])) == 1


@pytest.mark.parametrize("name", task_names())
def test_results__seeds_spread_the_main_kpi_by_more_than_1_percent(name):
    ctrls = _by_controller(_table(), name)
    assert ctrls, f"no {name} rows on its test distribution"
    spec = task_spec(name)
    kpi = spec.main_kpi[0]
    for ctrl, rs in ctrls.items():
        assert len(rs) >= 16, (ctrl, len(rs))
        v = np.array([float(r[kpi]) for r in rs])
        assert v.std(ddof=1) > 0.01 * abs(v.mean()), (ctrl, v.mean(), v.std(ddof=1))


@pytest.mark.parametrize("name", task_names())
def test_results__the_best_rule_meets_the_spec_and_beats_best_constant_by_25_percent(name):
    ctrls = _by_controller(_table(), name)
    fixed, const = _mean_price(ctrls["fixed"]), _mean_price(ctrls["best-constant"])
    rules = {c: rs for c, rs in ctrls.items()
             if c not in ("fixed", "best-constant") and not c.startswith(("mpc", "oracle"))
             and ":" not in c}
    met = {c: rs for c, rs in rules.items() if all(_met(r) for r in rs)}
    assert met, f"no rule meets {name}'s specification on every test seed"
    best = min(met, key=lambda c: _mean_price(met[c]))
    saving_rule, saving_const = fixed - _mean_price(met[best]), fixed - const
    assert saving_rule >= 1.25 * saving_const, (best, saving_rule, saving_const)


def test_results__doing_nothing_breaks_powersmoothings_grid_spec_on_every_test_seed():
    ctrls = _by_controller(_table(), "PowerSmoothing")
    assert not any(_met(r) for r in ctrls["fixed"])
    assert float(min(float(r["violation_s"]) for r in ctrls["fixed"])) > 0
    rules = [c for c in ctrls if c not in ("fixed", "best-constant")
             and not c.startswith(("mpc", "oracle")) and ":" not in c]
    best = min(rules, key=lambda c: _mean_price(ctrls[c]))
    assert all(_met(r) for r in ctrls[best]), best


@pytest.mark.parametrize("name", task_names())
def test_results__within_the_specification_the_return_is_minus_the_cost(name):
    """The ranking (specification, then cost) and the return cannot disagree: an episode
    inside the specification pays no penalty beyond the specification's tolerance."""
    rows = [r for rs in _by_controller(_table(), name).values() for r in rs if _met(r)]
    assert rows, f"no {name} episode meets its specification"
    for r in rows:
        cost, ret = float(r["cost_usd"]), float(r["return"])
        assert abs(ret + cost) <= 0.005 * max(abs(cost), 1.0), (r["controller"], r["seed"],
                                                               cost, ret)


# --- headroom: the oracle bounds the task and the baselines leave room below it --------------

#: tasks whose committed table shows no headroom yet (measured, see the issue's note)
NO_HEADROOM = {
    "PowerSmoothing": "measured: lowpass_ups scores IQM 100.0 (-return 68.95 USD, the "
                      "oracle's own 68.95): the UPS absorbs every swing inside the spec for "
                      "under 1 USD of storage cost, so no controller can gain; the task's knobs "
                      "(UPS share for smoothing, ramp spec) must change first",
    "Facility": "measured: rule scores IQM 93.1 (mean 90.6): four legs of search (Adam, "
                "40 generations over the scheduling segments, Adam, Adam) reach -811.55 USD "
                "against the rule's -707.3; the last leg moved 0.003 USD, so the search has "
                "converged under its operators, which leaves a weak bound, not a tight one",
}


@pytest.mark.parametrize("name", task_names())
def test_results__oracle_meets_the_spec_on_every_test_seed_and_beats_every_baseline(name):
    from heatsync.agents import BASELINES

    ctrls = _by_controller(_table(), name)
    if "oracle" not in ctrls:
        pytest.fail(f"no oracle rows for {name}: run python scripts/benchmark.py")
    oracle = {int(r["seed"]): r for r in ctrls["oracle"]}
    assert len(oracle) >= 16
    assert all(_met(r) for r in oracle.values()), \
        [s for s, r in oracle.items() if not _met(r)]
    for c in BASELINES[name]:  # fixed, best-constant and the rules
        for r in ctrls.get(c, []):
            s = int(r["seed"])
            if s in oracle:
                # the benchmark's order: within the specification first, then -return (to
                # float32 rounding: a replayed recorded plan differs from its closed loop)
                o, jr = oracle[s], -float(r["return"])
                assert (_met(o) and not _met(r)) or \
                    -float(o["return"]) <= jr + 1e-5 * max(abs(jr), 1.0), (c, s)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.xfail(
    strict=True, reason=NO_HEADROOM[n])) if n in NO_HEADROOM else n for n in task_names()])
def test_results__the_best_baseline_leaves_10_points_below_the_oracle(name):
    from heatsync.agents import BASELINES
    from heatsync.benchmark import read_csv
    from heatsync.benchmark.scores import HEADROOM_MAX, best_baseline, iqm_interval, normalised

    _table()  # skips without the committed table
    ctrls = _by_controller(read_csv(RESULTS)[0], name)
    sc = normalised(ctrls)
    assert sc is not None, f"no fixed and oracle rows for {name}"
    assert not sc.unscored, sc.unscored
    best = best_baseline(name, ctrls, set(BASELINES[name]))
    iqm = iqm_interval(sc.scores[best], reps=1)[0]
    assert iqm <= HEADROOM_MAX, (best, iqm)
