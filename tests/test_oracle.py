"""The oracle (perfect-foresight bound) and the normalised scores built on it.

Small cases only: 2 seeds, short episodes, a few iterations; the committed plans of the
full test distributions are checked by the benchmark itself (their replay is what
``oracle`` reports).
"""

from __future__ import annotations

import dataclasses
from functools import partial

import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

import heatsync.benchmark as hb
from heatsync.agents import BASELINES
from heatsync.agents import oracle as O
from heatsync.benchmark import scores as S
from heatsync.envs import JaxVectorEnv

SEEDS = [0, 1]
PS, PS_TEST, STEPS = "PowerSmoothing", "PowerSmoothing-test", 300  # seed 0 breaks the spec
SCHED, SCHED_TEST, SCHED_STEPS = "PowerAwareScheduling", "PowerAwareScheduling-test", 120


@pytest.fixture(scope="module")
def ps_plans(tmp_path_factory):
    cfg = dataclasses.replace(O.DEFAULTS[PS], iters=4,
                              starts=("fixed", "best-constant", "lowpass_ups"))
    r = O.optimize(PS, PS_TEST, SEEDS, STEPS, cfg, log=None)
    folder = tmp_path_factory.mktemp("oracle")
    O.save(r, O.plan_path(PS_TEST, folder))
    return r, folder


def _env_returns(task, scenario, steps, actions):
    """Returns of a plain JaxVectorEnv loop over the given actions (N, T, d)."""
    env = JaxVectorEnv(task, len(SEEDS), scenario=scenario, episode__steps=steps,
                       autoreset_mode=AutoresetMode.DISABLED)
    env.reset(seed=SEEDS)
    ret, active = np.zeros(len(SEEDS)), np.ones(len(SEEDS), bool)
    for t in range(steps):
        _, r, term, trunc, _ = env.step(actions[:, t])
        ret += np.where(active, r, 0.0)
        active &= ~(term | trunc)
    return ret


def test_oracle__replayed_cost_equals_a_plain_env_rollout_of_its_actions(ps_plans):
    r, _ = ps_plans
    assert r.actions.shape == (2, STEPS, 8)
    np.testing.assert_allclose(_env_returns(PS, PS_TEST, STEPS, r.actions), r.ret,
                               rtol=1e-5, atol=1e-6)


def test_oracle__at_least_as_good_as_best_constant_and_the_best_baseline(ps_plans):
    r, _ = ps_plans
    for name in ("best-constant", "lowpass_ups", "fixed"):
        cell = hb.run_cell(PS, PS_TEST, BASELINES[PS][name], SEEDS, STEPS)
        for i, row in enumerate(cell.rows):
            assert O.better(r.spec_met[i], -r.ret[i], bool(row["spec_met"]),
                            -row["return"]) or (
                bool(r.spec_met[i]) == bool(row["spec_met"])
                and -r.ret[i] <= -row["return"] + 1e-6), (name, i)


def test_oracle__convergence_record_is_monotone_and_starts_recorded(ps_plans):
    r, _ = ps_plans
    assert r.start_names == ["fixed", "best-constant", "lowpass_ups"]
    assert r.start_j.shape == (3, 2)
    assert r.grad_j.shape == (2, 2, 5)  # 2 restarts, 2 seeds, iters + 1
    assert np.all(np.diff(r.grad_j, axis=-1) <= 1e-9)  # best-so-far never rises
    assert np.all(-r.ret <= r.start_j.min(axis=0) + 1e-6)


def test_oracle__plans_round_trip_and_bad_files_are_named(ps_plans, tmp_path):
    r, folder = ps_plans
    back = O.load(O.plan_path(PS_TEST, folder))
    np.testing.assert_array_equal(back.actions, r.actions)
    assert back.seeds == SEEDS and back.steps == STEPS
    assert O.covers(PS, PS_TEST, [1], STEPS, folder)
    assert not O.covers(PS, PS_TEST, [5], STEPS, folder)
    assert not O.covers(PS, PS_TEST, SEEDS, STEPS + 1, folder)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="bad.npz"):
        O.load(bad)


def test_oracle__refresh_restamps_unchanged_plans_and_refuses_changed_ones(ps_plans, tmp_path):
    r, _ = ps_plans
    path = O.plan_path(PS_TEST, tmp_path)
    O.save(dataclasses.replace(r, meta={**r.meta, "fingerprint": "stale"}), path)
    assert not O.covers(PS, PS_TEST, SEEDS, STEPS, tmp_path)
    O.refresh(PS, PS_TEST, tmp_path)
    assert O.covers(PS, PS_TEST, SEEDS, STEPS, tmp_path)
    O.save(dataclasses.replace(r, ret=r.ret + 1.0), path)  # as if the episodes had changed
    with pytest.raises(ValueError, match=r"differs on seeds \[0, 1\].*recompute"):
        O.refresh(PS, PS_TEST, tmp_path)


def test_oracle__continues_from_previous_plans_and_mutates_only_the_named_segments(ps_plans):
    r0, _ = ps_plans
    cfg = O.OracleConfig(starts=("fixed",), iters=0, generations=2, population=4,
                         search_segments=("ups_gain",), rng_seed=3)
    r = O.optimize(PS, PS_TEST, SEEDS, STEPS, cfg, log=None, previous=r0.actions)
    assert r.start_names == ["fixed", "previous"]
    np.testing.assert_allclose(r.start_j[1], -r0.ret, rtol=1e-6)  # the stored plans replayed
    assert np.all(-r.ret <= -r0.ret + 1e-6)  # continuing never ends worse
    env = JaxVectorEnv(PS, 1, scenario=PS_TEST, episode__steps=STEPS)
    names = env.task.layout(env.params).names()
    env.close()
    other = [i for i, n in enumerate(names) if n != "ups_gain"]
    np.testing.assert_array_equal(r.actions[..., other], r0.actions[..., other])


def test_oracle__search_segments_and_continue_errors_name_the_problem(tmp_path):
    cfg = O.OracleConfig(iters=0, generations=1, search_segments=("no_such_knob",))
    with pytest.raises(ValueError, match=r"search_segments.*no_such_knob.*ups_gain"):
        O.optimize(PS, PS_TEST, SEEDS, STEPS, cfg, log=None)
    with pytest.raises(ValueError, match="search_segments.*Box"):
        O.optimize(SCHED, SCHED_TEST, SEEDS, SCHED_STEPS, cfg, log=None)
    with pytest.raises(ValueError, match="--continue"):
        O.compute(PS, SEEDS, PS_TEST, tmp_path, cfg, log=None, resume=True)
    assert O.plan_path("some/dir/my-case.v2.yaml", tmp_path) == tmp_path / "my-case.v2.npz"
    assert O.plan_path("PowerSmoothing-test", tmp_path) == tmp_path / "PowerSmoothing-test.npz"


def test_oracle__config_errors_name_the_field():
    with pytest.raises(ValueError, match="iters"):
        O.OracleConfig(iters=-1)
    with pytest.raises(ValueError, match="window_steps"):
        O.OracleConfig(window_steps=(5, 2))
    with pytest.raises(ValueError, match="hold_steps"):
        O.OracleConfig(hold_steps=0)


def test_oracle__fixed_scores_0_and_oracle_100_through_the_benchmark(ps_plans, tmp_path):
    _, folder = ps_plans
    reg = {PS: {**{k: BASELINES[PS][k] for k in ("fixed", "best-constant", "lowpass_ups")},
                "oracle": partial(O.OraclePolicy, folder=folder, compute_missing=False)}}
    rep = hb.run(tasks=[PS], scenarios=[PS_TEST], seeds=SEEDS, steps=STEPS,
                 controllers=["fixed", "best-constant", "lowpass_ups", "oracle"],
                 registry=reg, out=tmp_path, progress=False, prewarm=False,
                 log=lambda m: None)
    per = {}
    for row in rep.rows:
        per.setdefault(row["controller"], []).append(row)
    sc = S.normalised(per)
    assert sc.seeds == SEEDS
    jf, jo = S.per_seed_j(per["fixed"]), S.per_seed_j(per["oracle"])
    assert sc.unscored == [s for s in SEEDS if jf[s] - jo[s] < S.MIN_GAP_USD]
    scored = np.isfinite(sc.scores["fixed"])
    assert scored.any()  # seed 0: fixed breaks the grid spec, the oracle does not
    np.testing.assert_array_equal(sc.scores["fixed"][scored], 0.0)
    np.testing.assert_allclose(sc.scores["oracle"][scored], 100.0, rtol=1e-12)
    assert np.all(sc.scores["lowpass_ups"][scored] <= 100.0 + 1e-9)
    text = (tmp_path / "BENCHMARK.md").read_text()
    assert "Normalised score" in text and "Headroom" in text
    assert (tmp_path / "plots" / f"{PS}_scores.png").stat().st_size > 1000


def test_oracle__without_a_stored_plan_it_says_how_to_make_one(tmp_path):
    env = JaxVectorEnv(PS, 1, scenario=PS_TEST, episode__steps=STEPS)
    pol = O.OraclePolicy(env, folder=tmp_path, compute_missing=False)
    with pytest.raises(ValueError, match="python -m heatsync.agents.oracle PowerSmoothing"):
        pol.reset_episodes([0])


def test_oracle__scheduling_local_search_beats_or_equals_every_rule():
    cfg = dataclasses.replace(O.DEFAULTS[SCHED], generations=3, population=4)
    r = O.optimize(SCHED, SCHED_TEST, SEEDS, SCHED_STEPS, cfg, log=None)
    assert r.actions.dtype.kind == "i" and r.actions.shape == (2, SCHED_STEPS, 2)
    np.testing.assert_allclose(_env_returns(SCHED, SCHED_TEST, SCHED_STEPS, r.actions), r.ret,
                               rtol=1e-5, atol=1e-6)
    assert np.all(-r.ret <= r.start_j.min(axis=0) + 1e-6)
    assert r.search_j.shape == (2, 3) and np.all(np.diff(r.search_j, axis=1) <= 1e-9)


# ---- the statistics -----------------------------------------------------------------------


def _rows(values):
    return [{"seed": i, "return": -v} for i, v in enumerate(values)]


def test_scores__normalisation_is_exact_and_unscored_seeds_are_reported():
    per = {"fixed": _rows([10.0, 20.0, 5.0]), "oracle": _rows([0.0, 10.0, 5.0]),
           "rule": _rows([5.0, 12.0, 4.0])}
    sc = S.normalised(per)
    np.testing.assert_allclose(sc.scores["rule"][:2], [50.0, 80.0])
    assert np.isnan(sc.scores["rule"][2]) and sc.unscored == [2]
    assert S.normalised({"fixed": per["fixed"]}) is None
    # the mean-J score over the scored seeds 0, 1: fixed 15, oracle 5, rule 8.5
    assert S.pooled(per, "rule") == pytest.approx(65.0)
    assert S.pooled(per, "fixed") == 0.0 and S.pooled(per, "oracle") == 100.0


def test_scores__paired_probability_and_iqm_intervals():
    jx, jy = np.array([1.0, 2.0, 3.0, 4.0]), np.array([2.0, 2.0, 1.0, 5.0])
    p, lo, hi = S.paired_improvement(jx, jy)
    assert p == pytest.approx((1 + 0.5 + 0 + 1) / 4)
    assert 0.0 <= lo <= p <= hi <= 1.0
    assert S.paired_improvement(jx, jx + 1.0) == (1.0, 1.0, 1.0)
    v = np.arange(16.0)
    iqm, lo, hi = S.iqm_interval(v)
    assert iqm == pytest.approx(v[4:12].mean())
    assert lo < iqm < hi
    assert S.iqm_interval(v) == (iqm, lo, hi)  # seeded: reproducible
    with pytest.raises(ValueError, match="paired_improvement"):
        S.paired_improvement(jx, jy[:2])


def test_oracle__local_search_never_mutates_components_outside_its_segments():
    """With a replay that scores every mutant better, each generation takes one: only the
    allowed components may have moved."""
    from gymnasium import spaces

    from heatsync.agents._oracle_search import _search

    N, T, d = 2, 50, 6
    space = spaces.Box(-1.0, 1.0, (d,), np.float32)
    inc = np.zeros((N, T, d), np.float32)
    calls = iter(range(10**6))

    def always_better(task, params, keys, actions):
        k = next(calls)
        return {"return": np.full(len(actions), float(k + 1)),
                "spec_met": np.ones(len(actions), bool)}

    cfg = O.OracleConfig(iters=0, generations=5, population=3, window_steps=(5, 20))
    keys = np.zeros((N, 2), np.uint32)
    best, *_ = _search(None, None, space, keys, inc, np.full(N, 1e9), np.ones(N, bool), cfg,
                       None, always_better, components=[1, 4])
    moved = np.any(best != inc, axis=(0, 1))
    assert moved[[1, 4]].any() and not moved[[0, 2, 3, 5]].any()
