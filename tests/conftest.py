"""Shared fixtures: scenarios are loaded once per session; helpers for x64 and policies."""

from __future__ import annotations

import gc

import jax
import jax.numpy as jnp
import pytest

import heatsync
from heatsync.physics import default_action, replace


@pytest.fixture(scope="module", autouse=True)
def _drop_compiled_functions_after_each_module():
    """Free each test file's compiled executables when it ends: the suite compiles
    hundreds of functions and keeping them all would hold gigabytes."""
    yield
    jax.clear_caches()
    gc.collect()


@pytest.fixture(scope="session")
def scenarios():
    """Bundled scenarios by name, loaded once."""
    return {name: heatsync.load_scenario(name) for name in heatsync.list_scenarios()}


@pytest.fixture
def x64():
    """Run the test body with 64-bit floats."""
    with jax.enable_x64(True):
        yield


def lowpass_ultracap_policy(alpha=0.2, k_soc=0.5):
    """Rack ultracapacitors follow a low-pass of rack power (a baseline-like rule).

    The bus-draw setpoint relaxes toward the rack's present draw with factor
    ``alpha`` per interval, plus a state-of-charge correction.
    """

    def policy(p, s, exo):
        a = default_action(p)
        g = p.gpu
        p_rack = g.n_gpu * s.p_gpu_w + g.p_other_w
        prev = jnp.where(s.n_steps < 0.5, p_rack, s.uc_target_prev_w)
        soc = s.uc_e_j / p.ultracap.e_max_j
        target = prev + alpha * (p_rack - prev) + k_soc * (0.5 - soc) * p.ultracap.p_max_w * 0.2
        return replace(a, uc_target_w=target, uc_gain=jnp.ones_like(target))

    return policy


def _pad_faults(exo, n: int):
    """Append inactive fault slots (kind -1 matches no fault) up to ``n``."""
    import numpy as np

    k = int(np.shape(exo.fault_kind)[0])
    if k == n:
        return exo
    pad = n - k

    def ext(x, v):
        x = np.asarray(x)
        return np.concatenate([x, np.full((pad,), v, x.dtype)])

    return replace(exo, fault_kind=ext(exo.fault_kind, -1),
                   fault_start_s=ext(exo.fault_start_s, 0.0),
                   fault_duration_s=ext(exo.fault_duration_s, 0.0),
                   fault_magnitude=ext(exo.fault_magnitude, 0.0))


def simulate_many(names, steps: int, seed: int = 0):
    """Run several scenarios with their fixed setpoints as vmapped rollouts: scenarios
    sharing the plant's structure (racks, job slots; fault lists are padded with
    inactive slots) run as one batch, one compile, and on a CPU in about the wall time
    of one (a single plant is bound by per-op latency, not arithmetic). Returns
    ``{name: namespace(series, kpis, scenario)}`` like :func:`simulate`'s result.
    """
    import types

    import numpy as np

    from heatsync.physics import load_scenario, rollout
    from heatsync.physics.simulate import _actions_over_time, compute_kpis

    scs = {n: load_scenario(n) for n in names}
    n_faults = max(int(np.shape(sc.exo.fault_kind)[0]) for sc in scs.values())
    parts = {n: (sc.params, _pad_faults(sc.exo, n_faults), sc.init_state(),
                 jax.random.PRNGKey(seed), _actions_over_time(sc, None, steps))
             for n, sc in scs.items()}
    groups: dict = {}
    for n, part in parts.items():
        sig = (jax.tree_util.tree_structure(part),
               tuple(np.shape(x) for x in jax.tree_util.tree_leaves(part)))
        groups.setdefault(sig, []).append(n)
    run = jax.jit(jax.vmap(lambda p, e, s, k, a: rollout(p, e, s, k, a, steps)))
    out = {}
    for group in groups.values():
        stacked = jax.tree_util.tree_map(lambda *xs: np.stack([np.asarray(x) for x in xs]),
                                         *[parts[n] for n in group])
        finals, series = jax.device_get(run(*stacked))
        for i, name in enumerate(group):
            sc = scs[name]
            ser = {k: np.asarray(v[i]) for k, v in series.items()}
            fin = jax.tree_util.tree_map(lambda x, i=i: x[i], finals)
            s0 = jax.tree_util.tree_map(lambda x, i=i: x[i], stacked[2])
            out[name] = types.SimpleNamespace(series=ser, scenario=sc,
                                              kpis=compute_kpis(sc.params, s0, fin, ser))
    return out
