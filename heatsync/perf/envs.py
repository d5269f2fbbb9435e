"""Probes of the single Gymnasium env: ``Env.step`` latency and the compile time of
reset and step (sections 3 and 4), where a step's compile time goes, where its run time
goes (section 4b) and what heatsync's XLA settings are worth there.

Every probe reads the env through its public faces: ``env.entry`` (the static
arguments of :mod:`heatsync.envs.drive`'s entry points) and ``env.buffers`` (the
dynamic ones). Probes that call an entry point themselves do so on their own copies of
the buffers and never write them back into the env.
"""

from __future__ import annotations

import re
import statistics
import time
from functools import partial

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np

from heatsync import _xla
from heatsync.envs import JaxVectorEnv, check_action, make_task
from heatsync.envs.drive import (
    drive_step_flat,
    drive_vstep_flat,
    one_kernel,
    pack_output,
    step_body,
)

from .plant import PlantThroughput
from .runner import SubprocessProbe, interleaved_medians_us

__all__ = ["EnvLatency", "CompileSplit", "StepAnatomy", "Untuned", "kernel_counts"]


def _env(task: str, **overrides):
    """The unwrapped ``gymnasium.Env`` of ``task`` (none of the wrappers ``gymnasium.make``
    adds), action space seeded and reset with seed 0."""
    env = gymnasium.make(make_task(task).env_id, **overrides).unwrapped
    env.action_space.seed(0)
    env.reset(seed=0)
    return env


class EnvLatency:
    """``gymnasium.Env.step`` latency of one task (the env itself, without the wrappers
    ``gymnasium.make`` adds), and the compile time of its reset and step."""

    def __init__(self, task: str, steps: int, warmup: int):
        self.task, self.steps, self.warmup = task, steps, warmup
        self.weight = 10.0 + (2.0 if task == "Facility" else 0.0)
        self.label = f"{task} Env.reset + Env.step"

    def prepare(self):
        # long enough never to truncate inside the timing
        env = gymnasium.make(make_task(self.task).env_id,
                             episode__steps=self.steps + self.warmup + 10).unwrapped
        env.action_space.seed(0)
        self.actions = [env.action_space.sample() for _ in range(64)]
        t0 = time.perf_counter()
        env.reset(seed=0)
        self.first_reset_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        env.step(self.actions[0])
        self.first_step_s = time.perf_counter() - t0
        self.env = env

    def measure(self) -> dict:
        env, acts = self.env, self.actions
        resets = []
        for _ in range(3):
            t0 = time.perf_counter()
            env.reset(seed=0)
            resets.append(time.perf_counter() - t0)
        for i in range(self.warmup):
            env.step(acts[i % 64])
        times = np.empty(self.steps)
        cpu, n_resets = 0.0, 0
        for i in range(self.steps):
            c0, t0 = time.process_time(), time.perf_counter()
            _, _, term, trunc, _ = env.step(acts[i % 64])
            times[i] = time.perf_counter() - t0
            cpu += time.process_time() - c0
            if term or trunc:  # reset outside the timing
                env.reset()
                n_resets += 1
        med = float(np.median(times))
        env.close()
        return {"task": self.task, "steps": self.steps, "median_us": 1e6 * med,
                "p99_us": 1e6 * float(np.percentile(times, 99)),
                "cpu_us": 1e6 * cpu / self.steps, "resets": n_resets,
                "compile_reset_s": self.first_reset_s - statistics.median(resets),
                "compile_step_s": self.first_step_s - med}

    def summary(self, x: dict) -> str:
        return (f"{x['task']} Env.step: median {x['median_us']:,.1f} us, p99 "
                f"{x['p99_us']:,.1f} us; compile reset {x['compile_reset_s']:.1f} s, step "
                f"{x['compile_step_s']:.1f} s")


def _compile_split(fn, args, n_static: int) -> dict:
    """Trace, lower and XLA-compile seconds (and StableHLO ops) of ``fn(*args)`` on a
    fresh ``jax.jit`` (its first ``n_static`` arguments static)."""

    def fresh_fn(*a):  # a new function object: JAX's trace and compile caches miss
        return fn(*a)

    fresh = partial(jax.jit, static_argnums=tuple(range(n_static)))(fresh_fn)
    t0 = time.perf_counter()
    traced = fresh.trace(*args)
    t1 = time.perf_counter()
    lowered = traced.lower()
    t2 = time.perf_counter()
    lowered.compile()
    t3 = time.perf_counter()
    ops = sum(" = " in line and ("stablehlo." in line or "chlo." in line)
              for line in lowered.as_text().splitlines())
    return {"trace_s": t1 - t0, "lower_s": t2 - t1, "compile_s": t3 - t2, "ops": ops}


class CompileSplit:
    """Where a step's compile time goes: trace (Python to jaxpr), lower (to StableHLO)
    and XLA's compile, measured apart with the AOT API on a fresh ``jax.jit`` of the
    entry point (a new function object, so no trace or executable is reused), for one
    task's single-env and vector step."""

    weight = 8.0

    def __init__(self, task: str, n: int):
        self.task, self.n = task, n
        self.label = f"{task} compile split"

    def prepare(self):
        env = _env(self.task)
        a = check_action(env.action_space.sample(), env.action_space)
        rng, sbufs, pbufs = env.buffers
        static = env.entry.static
        self.single = _compile_split(drive_step_flat.__wrapped__,
                                     (*static, rng, sbufs, a, pbufs), len(static))
        vec = JaxVectorEnv(self.task, self.n)
        vec.action_space.seed(0)
        vec.reset(seed=0)
        acts = check_action(vec.action_space.sample(), vec.single_action_space, batch=self.n)
        rngs, sbufs, pbufs = vec.buffers
        static = (*vec.entry.static, vec.mode)
        self.vector = _compile_split(
            drive_vstep_flat.__wrapped__,
            (*static, rngs, sbufs, acts, pbufs, jnp.zeros(self.n, bool)), len(static))

    def measure(self) -> dict:
        return {"task": self.task, "n": self.n, "single": self.single, "vector": self.vector}

    def summary(self, r: dict) -> None:
        return None


class StepAnatomy:
    """Where one ``Env.step`` of a task goes: the host side (action check, unpacking),
    the jitted call's fixed cost (dispatch and transfers) and the step's compute, from
    the same step body compiled to run K = 1 and K = 10 times in one call (as one
    kernel, like the env's own entry point); plus the kernel (thunk) counts.

    The jitted calls run on a copy of the env's buffers (``env.buffers``), advancing
    their own key chain and state, so the env is only ever stepped by ``Env.step``."""

    weight = 9.0

    def __init__(self, task: str, calls: int):
        self.task, self.calls = task, calls
        self.label = f"{task} step anatomy"

    def prepare(self):
        env = _env(self.task, episode__steps=10**6)
        self.raw = env.action_space.sample()
        a = check_action(self.raw, env.action_space)
        task, sid, sflat, pflat = env.entry.static

        @partial(jax.jit, static_argnums=0)
        def ksteps(k, rng, sbufs, action, pbufs):
            def run(rng, sbufs, action, pbufs):
                params = pflat.unpack(pbufs)

                def body(carry, _):
                    rng, sb = carry
                    rng, st, host = step_body(task, rng, sflat.unpack(sb), action, params)
                    return (rng, sflat.pack(st)), pack_output("step", task, sid, host)

                (rng, sbufs), flat = jax.lax.scan(body, (rng, sbufs), None, length=k)
                return rng, sbufs, flat[-1]

            return one_kernel(run, rng, sbufs, action, pbufs)

        self.env, self.a, self.ksteps = env, a, ksteps
        rng, sbufs, pbufs = env.buffers
        for k in (1, 10):
            jax.block_until_ready(ksteps(k, rng, sbufs, a, pbufs))
        hlo = drive_step_flat.lower(*env.entry.static, rng, sbufs, a, pbufs).compile().as_text()
        self.kernels = kernel_counts(hlo)
        for _ in range(50):
            env.step(self.raw)

    def measure(self) -> dict:
        env, a, n = self.env, self.a, self.calls
        static = env.entry.static
        rng, sbufs, pbufs = env.buffers
        own = {"rng": rng, "sbufs": sbufs}  # this probe's copy of the key chain and state

        def call():
            own["rng"], own["sbufs"], flat = drive_step_flat(*static, own["rng"], own["sbufs"],
                                                             a, pbufs)
            np.asarray(flat)

        def steps(k):
            def run():
                own["rng"], own["sbufs"], flat = self.ksteps(k, own["rng"], own["sbufs"], a,
                                                             pbufs)
                np.asarray(flat)
            return run

        env_step, call_us = interleaved_medians_us([lambda: env.step(self.raw), call], n)
        k1, k10 = interleaved_medians_us([steps(1), steps(10)], max(n // 4, 20))
        per_step = (k10 - k1) / 9.0
        return {"task": self.task, "env_step_us": env_step, "call_us": call_us,
                "host_us": env_step - call_us, "k1_us": k1, "k10_us": k10,
                "in_loop_us": per_step, "fixed_us": k1 - per_step, **self.kernels,
                "settings": _xla.status()}

    def summary(self, x: dict) -> str:
        return (f"{x['task']} step anatomy: call {x['call_us']:,.0f} us = fixed "
                f"{x['fixed_us']:,.0f} + in-loop {x['in_loop_us']:,.0f}")


class Untuned(SubprocessProbe):
    """``Env.step`` and the batch-1 plant rollout in a subprocess with heatsync's XLA:CPU
    settings off (``HEATSYNC_XLA_TUNING=0``), to show what they are worth."""

    label = "without heatsync's XLA settings"

    def __init__(self, task: str, calls: int, steps: int):
        super().__init__(task, calls, steps)

    def environ(self) -> dict:
        # untuned_environ: not the XLA_FLAGS this process was given by heatsync
        return _xla.untuned_environ()

    def run(self) -> dict:
        task, calls, steps = self.args
        env = _env(task, episode__steps=10**6)
        raw = env.action_space.sample()
        for _ in range(50):
            env.step(raw)
        ts = []
        for _ in range(calls):
            t0 = time.perf_counter()
            env.step(raw)
            ts.append(time.perf_counter() - t0)
        b1 = PlantThroughput(1, steps, 5)
        b1.prepare()
        return {"settings": _xla.status(), "env_step_us": 1e6 * statistics.median(ts),
                "b1_env_steps_per_s": b1.measure()["env_steps_per_s"]}


def kernel_counts(hlo: str) -> dict:
    """Kernels (thunks) a compiled step launches per call: the instructions of its entry
    computation, loops and calls counting as one each."""
    i = hlo.index("\nENTRY")
    entry = hlo[i:hlo.index("\n}\n", i)]
    ops = re.findall(r"= \S+ ([a-z\-]+)\(", entry)
    return {"entry_kernels": sum(op not in ("get-tuple-element", "bitcast", "constant",
                                            "parameter", "tuple") for op in ops)}
