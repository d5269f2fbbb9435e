"""heatsync's XLA:CPU settings (heatsync/_xla.py) and ``one_kernel``: what import does
in a fresh process, how the flag joins a user's XLA_FLAGS, and that a wrapped function
computes the same values as one kernel."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from heatsync import _xla
from heatsync.envs.drive import one_kernel

OPTION = f"xla_cpu_small_while_loop_byte_threshold={_xla.SMALL_LOOP_BYTES}"

PROBE = """
import json, os, sys, warnings
warnings.simplefilter("error" if {strict} else "ignore", RuntimeWarning)
import jax
if {early}:
    jax.devices()
try:
    import heatsync
    from heatsync import _xla
    out = dict(_xla.APPLIED, warned=False)
except RuntimeWarning as w:
    out = {{"warned": True, "message": str(w)}}
out["xla_flags"] = os.environ.get("XLA_FLAGS", "")
out["async"] = bool(jax.config.values["jax_cpu_enable_async_dispatch"])
print(json.dumps(out))
"""


def _probe(early=False, strict=False, **env):
    full = {k: v for k, v in os.environ.items()
            if k not in ("XLA_FLAGS", "HEATSYNC_XLA_TUNING", "JAX_CPU_ENABLE_ASYNC_DISPATCH",
                         _xla._MARKER)}
    full.update(env)
    proc = subprocess.run([sys.executable, "-c", PROBE.format(early=early, strict=strict)],
                          env=full, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("flags, want", [
    ("", f"--xla_backend_extra_options={OPTION}"),
    ("--xla_cpu_enable_fast_math=false",
     f"--xla_cpu_enable_fast_math=false --xla_backend_extra_options={OPTION}"),
    ("--xla_backend_extra_options=foo=1 --xla_dump_to=/tmp/x",
     f"--xla_backend_extra_options=foo=1,{OPTION} --xla_dump_to=/tmp/x"),
])
def test_small_loop_option__joins_the_users_flags_and_comes_back_out(flags, want):
    assert _xla._with_small_loop_option(flags) == want
    assert _xla._without_small_loop_option(want) == flags


def test_import__in_a_child_of_a_heatsync_process_counts_as_applied_and_can_be_undone():
    parent = _xla._with_small_loop_option("--xla_dump_to=/tmp/x")
    child = _probe(strict=True, XLA_FLAGS=parent, **{_xla._MARKER: _xla._ENTRY})
    assert child["small_while_loop"] == "applied" and child["xla_flags"] == parent, child
    off = _probe(XLA_FLAGS=parent, HEATSYNC_XLA_TUNING="0", **{_xla._MARKER: _xla._ENTRY})
    assert off["small_while_loop"] == "off" and off["xla_flags"] == "--xla_dump_to=/tmp/x"


def test_import__applies_both_settings_in_a_fresh_process():
    out = _probe(strict=True)
    assert out["small_while_loop"] == "applied" and out["sync_dispatch"] == "applied", out
    assert OPTION in out["xla_flags"]
    assert out["async"] is False


def test_import__keeps_what_the_user_set_and_can_be_turned_off():
    user = _probe(XLA_FLAGS="--xla_backend_extra_options="
                            "xla_cpu_small_while_loop_byte_threshold=5",
                  JAX_CPU_ENABLE_ASYNC_DISPATCH="1")
    assert user["small_while_loop"] == "user" and user["sync_dispatch"] == "user", user
    assert user["xla_flags"].endswith("threshold=5") and user["async"] is True
    off = _probe(HEATSYNC_XLA_TUNING="0")
    assert off["small_while_loop"] == "off" and off["xla_flags"] == "" and off["async"] is True


def test_import__after_the_backend_exists_warns_and_changes_nothing():
    out = _probe(early=True, strict=True)
    assert out["warned"] and "after JAX created its backend" in out["message"], out
    assert out["xla_flags"] == "" and out["async"] is True


def _chain(x, ys):
    for i in range(20):
        x = jnp.sin(x) * ys["w"][i % 3] + jnp.cumsum(x)[::-1] * 0.01
    return {"x": x, "total": jnp.sum(x), "n": ys["n"] + 1}


def test_one_kernel__equals_the_plain_function_jitted_and_vmapped():
    x = jnp.linspace(-1.0, 1.0, 8)
    ys = {"w": jnp.asarray([0.5, 1.0, 1.5]), "n": jnp.asarray(3, jnp.int32)}
    want = jax.jit(_chain)(x, ys)
    got = jax.jit(lambda x, ys: one_kernel(_chain, x, ys))(x, ys)
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=2e-6, atol=1e-6)
    xs = jnp.stack([x, 2 * x, -x])
    got_v = jax.jit(jax.vmap(lambda x: one_kernel(_chain, x, ys)))(xs)
    for i in range(3):
        np.testing.assert_allclose(np.asarray(got_v["x"][i]),
                                   np.asarray(jax.jit(_chain)(xs[i], ys)["x"]),
                                   rtol=2e-6, atol=1e-6)


def test_one_kernel__compiles_to_a_single_call_when_the_setting_is_on():
    if _xla.APPLIED["small_while_loop"] not in ("applied", "user"):
        pytest.skip(f"heatsync's XLA setting is not in effect here ({_xla.status()})")
    x = jnp.linspace(-1.0, 1.0, 8)
    ys = {"w": jnp.asarray([0.5, 1.0, 1.5]), "n": jnp.asarray(3, jnp.int32)}

    def entry(fn):
        hlo = jax.jit(fn).lower(x, ys).compile().as_text()
        i = hlo.index("\nENTRY")
        return hlo[i:hlo.index("\n}\n", i)]

    wrapped = entry(lambda x, ys: one_kernel(_chain, x, ys))
    plain = entry(_chain)
    assert 'xla_cpu_small_call="true"' in wrapped and " while(" not in wrapped
    assert wrapped.count(" fusion(") < 5 < plain.count(" fusion(")


@pytest.mark.parametrize("state, flags, want", [
    ("applied", "", True),
    ("off", "", False),
    ("too late", "", False),
    ("user", "--xla_backend_extra_options=xla_cpu_small_while_loop_byte_threshold=5", False),
    ("user", "--xla_backend_extra_options=a=1,xla_cpu_small_while_loop_byte_threshold="
             "100000000 --xla_dump_to=/tmp/x", True),
])
def test_loops_as_one_kernel__reads_the_setting_and_the_users_threshold(monkeypatch, state,
                                                                          flags, want):
    monkeypatch.setitem(_xla.APPLIED, "small_while_loop", state)
    monkeypatch.setenv("XLA_FLAGS", flags)
    assert _xla.loops_as_one_kernel() is want


def test_one_kernel__calls_the_function_directly_without_the_setting(monkeypatch):
    monkeypatch.setitem(_xla.APPLIED, "small_while_loop", "off")
    x = jnp.linspace(-1.0, 1.0, 8)
    ys = {"w": jnp.asarray([0.5, 1.0, 1.5]), "n": jnp.asarray(3, jnp.int32)}
    hlo = jax.jit(lambda x, ys: one_kernel(_chain, x, ys)).lower(x, ys).as_text()
    assert "while" not in hlo


def test_untuned_environ__drops_heatsyncs_flag_and_turns_the_settings_off():
    env = _xla.untuned_environ()
    assert env["HEATSYNC_XLA_TUNING"] == "0"
    assert OPTION not in env.get("XLA_FLAGS", "") or OPTION in (_xla.ORIGINAL_XLA_FLAGS or "")
    out = _probe(**{k: v for k, v in env.items() if k in ("HEATSYNC_XLA_TUNING", "XLA_FLAGS")})
    assert out["small_while_loop"] == "off" and OPTION not in out["xla_flags"]
