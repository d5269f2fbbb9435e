"""heatsync.perf.profile: what it reads from compiled HLO (the operations of each kernel,
their name scopes and Python call stacks) and how it shares kernel time out, on small
programs whose answer is known. The perf report's section 6 is built on it."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from heatsync.perf import profile as hp


def _inner(x):
    return jnp.sin(x) * 3.0


def _mid(x):
    with jax.named_scope("heat"):
        y = _inner(x)
    return y + jnp.cos(x)


def _outer(x):
    return jnp.exp(_mid(x)) + jnp.log(x + 2.0)


@pytest.fixture(scope="module")
def compiled():
    return jax.jit(_outer).lower(jnp.ones((5,), jnp.float32)).compile()


@pytest.fixture(scope="module")
def module(compiled):
    return hp.Module(compiled.as_text())


def _op(module, opcode):
    ops = [op for op in module.all_ops() if op.opcode == opcode]
    assert len(ops) == 1, [o.opcode for o in module.all_ops()]
    return ops[0]


def test_stack__innermost_frame_first_with_its_callers(module):
    funcs = [f for _, f, _ in _op(module, "sine").stack]
    assert funcs[:3] == ["_inner", "_mid", "_outer"]
    assert [f for _, f, _ in _op(module, "cosine").stack][:2] == ["_mid", "_outer"]
    assert _op(module, "sine").stack[0][0].endswith("test_hlo_profile.py")


def test_function__names_the_callee_of_within_else_the_innermost(module):
    sine, cosine = _op(module, "sine"), _op(module, "cosine")
    assert hp.function(sine.stack, within="_mid") == "test_hlo_profile._inner"
    assert hp.function(cosine.stack, within="_mid") == "test_hlo_profile._mid"
    assert hp.function(_op(module, "exponential").stack, within="_mid") == \
        "test_hlo_profile._outer"
    assert hp.function((), within="_mid") == "(no source)"


def test_stage__reads_the_named_scope(module):
    assert hp.stage(_op(module, "sine").op_name) == "heat"
    assert hp.stage(_op(module, "cosine").op_name) == "other"
    assert hp.stage("jit(f)/while/body/clocks/lockstep/min") == "clocks"
    assert hp.stage("jit(f)/heat/x/clocks/add") == "clocks"  # the innermost stage wins
    assert hp.is_lockstep("jit(f)/clocks/lockstep/min")
    assert not hp.is_lockstep("jit(f)/clocks/min")


def test_transcendentals__element_count_agrees_with_xla_cost_model(compiled, module):
    ca = compiled.cost_analysis()
    ca = ca[0] if isinstance(ca, list) else ca
    ours = sum(op.elements for op in module.all_ops() if op.opcode in hp.TRANSCENDENTAL)
    assert ours == ca["transcendentals"] == 5 * 4  # sin, cos, exp, log of 5 elements


def test_attribute__splits_each_kernel_by_operation_count(module):
    kernels = [k for k in module._kernels if not module.is_control(k)]
    fusion = next(k for k in kernels if module._kernels[k][0] == "fusion")
    n_ops = len(module.ops(fusion))
    assert n_ops >= 5  # sin, mul, cos, add, exp, log, ... fused into one loop
    ns = {fusion: 1000.0, "ThunkExecutor::Execute": 5e6, "not-a-kernel": 7.0}
    by_op = hp.attribute(ns, module, lambda op: op.opcode)
    assert sum(by_op.values()) == pytest.approx(1000.0)  # events that are not kernels dropped
    assert by_op["sine"] == pytest.approx(1000.0 / n_ops)
    by_stage = hp.attribute(ns, module, lambda op: hp.stage(op.op_name))
    assert 0 < by_stage["heat"] < by_stage["other"]


def test_kernel_ns__profiles_a_call_and_attributes_all_of_it():
    x = jnp.linspace(0.1, 1.0, 1 << 16)
    fn = jax.jit(_outer).lower(x).compile()
    ns = hp.kernel_ns(lambda: fn(x))
    mod = hp.Module(fn.as_text())
    by_stage = hp.attribute(ns, mod, lambda op: hp.stage(op.op_name))
    assert sum(by_stage.values()) > 0
    assert set(by_stage) <= {"heat", "other"}
