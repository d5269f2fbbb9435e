"""The probe protocol, the run's settings, and how probes run: compiles first (the
warm-up, heaviest first, ``jobs`` at a time), then each measurement alone; subprocess
probes in a fresh Python process; and the timing helpers every probe shares.

A probe is one figure (or one row of figures) of the report::

    class MyProbe:
        label = "my figure"           # progress lines of the warm-up
        weight = 4.0                  # relative compile cost: the warm-up starts heaviest
        def prepare(self): ...        # compile and warm up (untimed; may share the CPU
                                      # with other prepares, so nothing timed here except
                                      # compile times, which are figures themselves)
        def measure(self) -> dict: ...  # the timed part, run alone; JSON-able results
        def summary(self, result) -> str | None: ...  # one progress line, or None

A probe that must run in its own process (a process-wide JAX setting, or XLA flags
that precede JAX's backend) subclasses :class:`SubprocessProbe`: it keeps its
constructor arguments, and its :meth:`~SubprocessProbe.run` is what the child process
calls; ``measure`` in the parent starts the child and returns the JSON line it prints.
"""

from __future__ import annotations

import concurrent.futures
import importlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import ClassVar, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np

import heatsync  # noqa: F401  (registers the env ids, applies heatsync's XLA settings)
from heatsync.envs import task_names

__all__ = ["Probe", "SubprocessProbe", "TASKS", "TARGETS", "VEC_EPISODE_STEPS", "settings",
           "warm_up", "measure", "run_child", "machine", "loadavg", "cores", "timed", "aot", "tile",
           "xla_cost", "temp_bytes", "block_rate", "interleaved_medians_us"]

#: the four tasks, in registry order
TASKS = tuple(task_names())

#: targets of issue 8
TARGETS = {
    "batch4096": 1_000_000,  # env-steps/s at batch 4096
    "hall_x_realtime": 10_000,  # simulated s per wall s, 800 racks
    "env_step_median_us": 50.0,  # gymnasium.Env.step, median
    "vec1024": 200_000,  # JaxVectorEnv steps/s at N = 1024
    "compile_s": 10.0,  # per function
    "train_steps_per_s": 50_000,  # ppo-jax on PowerSmoothing, learning included (issue 18)
    "train_vs_sb3": 15.0,  # ppo-jax / SB3 PPO env-steps/s, same run (issue 18)
}

#: episode length of the vector envs (auto-resets happen inside the timing, as in training)
VEC_EPISODE_STEPS = 100


@runtime_checkable
class Probe(Protocol):
    """One measurement of the report (see the module docstring)."""

    #: what the warm-up prints while this probe compiles
    label: str
    #: relative compile cost; the warm-up runs the heaviest first (0: nothing to compile)
    weight: float

    def prepare(self) -> None:
        """Compile and warm up (untimed, possibly beside other probes' prepares)."""

    def measure(self) -> dict:
        """The timed measurement (run alone, after every prepare): JSON-able results."""

    def summary(self, result: dict) -> str | None:
        """One progress line for ``result``, or ``None`` for none."""


class SubprocessProbe:
    """A :class:`Probe` whose measurement runs in a fresh Python process.

    Subclasses take JSON-able constructor arguments (kept as ``self.args``), implement
    :meth:`run` (called in the child: it may change process-wide JAX settings first)
    and may override :meth:`environ` (the child's environment; ``None`` inherits this
    one). Nothing compiles in this process (``weight = 0``, ``prepare`` does nothing)."""

    label: ClassVar[str] = "subprocess"
    weight: ClassVar[float] = 0.0
    timeout_s: ClassVar[float] = 600.0

    def __init__(self, *args):
        self.args = args

    def environ(self) -> dict | None:
        return None

    def run(self) -> dict:
        raise NotImplementedError

    def prepare(self) -> None:
        pass

    def measure(self) -> dict:
        """``run()`` in a child process (:func:`run_child`): its JSON result, or
        ``{"error": ...}``."""
        cls = type(self)
        cmd = [sys.executable, "-c", _CHILD, f"{cls.__module__}:{cls.__qualname__}",
               json.dumps(self.args)]
        try:
            out = subprocess.run(cmd, env=self.environ(), capture_output=True, text=True,
                                 check=True, timeout=self.timeout_s)
            return json.loads(out.stdout.strip().splitlines()[-1])
        except (subprocess.SubprocessError, ValueError, IndexError) as e:
            return {"error": f"{type(e).__name__}: {e}"}

    def summary(self, result: dict) -> str | None:
        return f"{self.label}: {result}"


#: the child's program: ``run_child(target, args)``
_CHILD = ("import sys; from heatsync.perf.runner import run_child; "
          "sys.exit(run_child(*sys.argv[1:]))")


def run_child(target: str, args: str) -> int:
    """What :meth:`SubprocessProbe.measure` runs: ``module:Class`` built from the JSON
    arguments, its ``run()`` printed as one JSON line."""
    mod, _, name = target.partition(":")
    probe = getattr(importlib.import_module(mod), name)(*json.loads(args))
    print(json.dumps(probe.run()))
    return 0


# ---- settings --------------------------------------------------------------------------------


def settings(quick: bool, repeats: int | None = None, jobs: int | None = None,
             grad_steps: int | None = None) -> dict:
    """Sizes of every measurement for a full or a ``--quick`` run."""
    if quick:
        # a smoke run of every code path in few compiles (XLA compiles dominate it)
        s = {"repeats": 3, "jobs": 2, "batches": (1, 64), "plant_steps": lambda b: 20,
             "hall_racks": 200, "hall_steps": 20, "latency_steps": 200, "latency_warmup": 20,
             "latency_tasks": (TASKS[0],), "vec_tasks": (TASKS[0],), "vec_n": (64,),
             "vec_block_steps": 5, "grad_steps": 0, "anatomy_calls": 200,
             "train": {"n_envs": 64, "n_steps": 8, "updates_per_chunk": 2}, "sb3_updates": 1}
    else:
        s = {"repeats": 5, "jobs": 1, "batches": (1, 64, 1024, 4096),
             "plant_steps": lambda b: int(np.clip(100_000 // b, 50, 2000)),
             "hall_racks": 800, "hall_steps": 200, "latency_steps": 3000, "latency_warmup": 100,
             "latency_tasks": TASKS, "vec_tasks": TASKS, "vec_n": (64, 1024), "vec_block_steps": 20,
             "grad_steps": 3600, "anatomy_calls": 2000, "train": {}, "sb3_updates": 4}
    if repeats is not None:
        s["repeats"] = repeats
    if jobs is not None:
        s["jobs"] = jobs
    if grad_steps is not None:
        s["grad_steps"] = grad_steps
    s["quick"] = quick
    return s


# ---- running probes --------------------------------------------------------------------------


def warm_up(probes: Iterable[Probe], jobs: int) -> float:
    """Every probe's ``prepare`` (those of weight > 0, the heaviest first, ``jobs`` at
    a time); prints each one's seconds. **Returns** the warm-up's wall seconds."""
    t_start = time.perf_counter()
    todo = sorted((p for p in probes if p.weight > 0), key=lambda p: -p.weight)
    print(f"warm-up: {len(todo)} compile jobs, {jobs} at a time ...", flush=True)

    def prepare(p: Probe):
        t0 = time.perf_counter()
        p.prepare()
        print(f"  {p.label}: {time.perf_counter() - t0:.1f} s", flush=True)

    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        for fut in [pool.submit(prepare, p) for p in todo]:
            fut.result()
    t_warm = time.perf_counter() - t_start
    print(f"warm-up (compiles) done in {t_warm:.0f} s", flush=True)
    return t_warm


def measure(probe: Probe | None) -> dict | None:
    """``probe.measure()`` with its progress line (``None`` for no probe)."""
    if probe is None:
        return None
    result = probe.measure()
    line = probe.summary(result)
    if line:
        print(line, flush=True)
    return result


# ---- the machine -----------------------------------------------------------------------------


def cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def machine() -> dict:
    """CPU model, cores, JAX backend and devices, versions and heatsync's XLA settings."""
    from heatsync import _xla

    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    vers = {"python": platform.python_version(), "jax": jax.__version__}
    for mod in ("jaxlib", "numpy", "gymnasium", "stable_baselines3", "torch"):
        try:
            vers[mod] = __import__(mod).__version__
        except ImportError:
            pass
    return {"cpu": cpu, "cores": cores(), "backend": jax.default_backend(),
            "devices": str(jax.devices()), "versions": vers, "xla_settings": _xla.status(),
            "os_cpus": os.cpu_count()}


def loadavg() -> float | None:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


# ---- timing helpers --------------------------------------------------------------------------


def timed(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn()`` (blocked until ready) over ``repeats`` calls."""
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def aot(fn: Callable, *args):
    """``(compiled, seconds)``: ``jax.jit(fn)`` lowered and compiled for ``args``."""
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    return compiled, time.perf_counter() - t0


def tile(tree, n: int):
    """Every leaf of ``tree`` broadcast to a leading axis of ``n``."""
    return jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (n,) + jnp.shape(x)), tree)


def xla_cost(compiled) -> dict:
    """XLA's cost model of a compiled program: flops, transcendentals, bytes accessed
    (NaN where the backend does not report one)."""
    ca = compiled.cost_analysis()
    ca = (ca[0] if isinstance(ca, list) else ca) or {}
    nan = float("nan")
    return {"flops": ca.get("flops", nan), "transcendentals": ca.get("transcendentals", nan),
            "bytes": ca.get("bytes accessed", nan)}


def temp_bytes(compiled) -> int | None:
    """XLA's planned temporary memory of a compiled program (``None`` if unreported)."""
    try:
        return getattr(compiled.memory_analysis(), "temp_size_in_bytes", None)
    except Exception:  # noqa: BLE001 - not every backend reports it
        return None


def block_rate(step_fn: Callable[[], object], n: int, block_steps: int, blocks: int):
    """``(steps/s, steps per CPU-s, s per batch step)``, medians over ``blocks`` blocks."""
    for _ in range(3):
        step_fn()
    walls, cpus = [], []
    for _ in range(blocks):
        c0, t0 = time.process_time(), time.perf_counter()
        for _ in range(block_steps):
            step_fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    wall, cpu = statistics.median(walls), statistics.median(cpus)
    return n * block_steps / wall, n * block_steps / max(cpu, 1e-9), wall / block_steps


def interleaved_medians_us(fns: list[Callable[[], object]], n: int) -> list[float]:
    """Median time (us) of each function over ``n`` rounds, calls interleaved (so that
    drift in the machine's load biases none of them)."""
    times = np.empty((len(fns), n))
    for i in range(n):
        for j, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            times[j, i] = time.perf_counter() - t0
    return [1e6 * float(np.median(t)) for t in times]
