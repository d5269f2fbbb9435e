"""Measure heatsync's speed on this machine and write results/PERF.md.

Figures, each beside its target (medians of repeats after a warm-up; compile time
excluded except where it is the figure):

1. batched plant throughput (env-steps/s; ``default`` scenario, dt = 1 s, 10 substeps)
   from a jitted, vmapped ``lax.scan`` rollout at batch 1, 64, 1024 and 4096;
2. a large hall: 800 racks (~100 MW) as one plant, simulated s per wall s;
3. single ``gymnasium.Env.step`` latency (median and p99) of each of the four tasks,
   and the steps per second of ``JaxVectorEnv`` (and stable-baselines3's
   ``SB3VecEnv`` when installed) at N = 64 and 1024;
4. compile time of each task's reset and step (first call minus a warm call), of the
   vector env's reset and step and of the plant's ``step`` (with its XLA cost model);
5. the reverse-mode gradient of a 1 h rollout (``jax.checkpoint`` on the per-step body)
   as a multiple of the forward rollout's time, with XLA's planned temporary memory.
6. where the time goes: the batched plant's floor from its operation count (XLA's cost
   model of one substep, and the rates this machine's XLA reaches in a fused loop), and
   kernel profiles (``scripts/_hlo_profile.py``) of the batch-4096 plant, the hall and
   Facility's vector step by plant stage and by function, in a subprocess under XLA's
   defaults;
7. what bounds each missed target, from the run's own figures.

Also the CPU model, core count, JAX backend and versions, and the load average (other
processes inflate wall times; the CPU-time columns much less).

Compiles come first (a warm-up phase: ``--jobs`` programs at a time), then every
timing runs alone, one after another. XLA compiles dominate a ``--quick`` run: it still
compiles 19 programs (each task's reset and step, two vector envs, three plant batches,
the hall, the plant step, the forward rollout and its gradient), which takes minutes on
2 cores.

Usage::

    python scripts/perf.py                 # full run, writes results/PERF.md
    python scripts/perf.py --quick         # smoke run: tiny step counts, same code paths
    python scripts/perf.py --out /tmp/PERF.md
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np

import heatsync  # noqa: F401  (registers the env ids)
from heatsync._io import write_text_atomic
from heatsync.envs import ENV_IDS, JaxVectorEnv, make_task
from heatsync.physics import exogenous_at, load_scenario, rollout, step

#: the four tasks, in registration order
TASKS = tuple(make_task(i).name for i in ENV_IDS)

#: targets of issue 8
TARGETS = {
    "batch4096": 1_000_000,  # env-steps/s at batch 4096
    "hall_x_realtime": 10_000,  # simulated s per wall s, 800 racks
    "env_step_median_us": 50.0,  # gymnasium.Env.step, median
    "vec1024": 200_000,  # JaxVectorEnv steps/s at N = 1024
    "compile_s": 10.0,  # per function
}

#: episode length of the vector envs (auto-resets happen inside the timing, as in training)
VEC_EPISODE_STEPS = 100


# ---- settings --------------------------------------------------------------------------------


def settings(quick: bool, repeats: int | None, jobs: int | None,
             grad_steps: int | None) -> dict:
    """Sizes of every measurement for a full or a ``--quick`` run."""
    if quick:
        # a smoke run of every code path in few compiles (XLA compiles dominate it)
        s = {"repeats": 3, "jobs": 2, "batches": (1, 64), "plant_steps": lambda b: 20,
             "hall_racks": 200, "hall_steps": 20, "latency_steps": 200, "latency_warmup": 20,
             "latency_tasks": (TASKS[0],), "vec_tasks": (TASKS[0],), "vec_n": (64,),
             "vec_block_steps": 5, "grad_steps": 0, "anatomy_calls": 200}
    else:
        s = {"repeats": 5, "jobs": 1, "batches": (1, 64, 1024, 4096),
             "plant_steps": lambda b: int(np.clip(100_000 // b, 50, 2000)),
             "hall_racks": 800, "hall_steps": 200, "latency_steps": 3000, "latency_warmup": 100,
             "latency_tasks": TASKS, "vec_tasks": TASKS, "vec_n": (64, 1024), "vec_block_steps": 20,
             "grad_steps": 3600, "anatomy_calls": 2000}
    if repeats is not None:
        s["repeats"] = repeats
    if jobs is not None:
        s["jobs"] = jobs
    if grad_steps is not None:
        s["grad_steps"] = grad_steps
    s["quick"] = quick
    return s


# ---- helpers ---------------------------------------------------------------------------------


def machine() -> dict:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    vers = {"python": platform.python_version(), "jax": jax.__version__}
    for mod in ("jaxlib", "numpy", "gymnasium", "stable_baselines3", "torch"):
        try:
            vers[mod] = __import__(mod).__version__
        except ImportError:
            pass
    from heatsync import _xla

    return {"cpu": cpu, "cores": cores, "backend": jax.default_backend(),
            "devices": str(jax.devices()), "versions": vers, "xla_settings": _xla.status()}


def loadavg() -> float | None:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


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


def _tile(tree, n):
    return jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (n,) + jnp.shape(x)), tree)


def _temp_bytes(compiled) -> int | None:
    try:
        return getattr(compiled.memory_analysis(), "temp_size_in_bytes", None)
    except Exception:  # noqa: BLE001 - not every backend reports it
        return None


# ---- 1. batched plant ------------------------------------------------------------------------


class PlantThroughput:
    """Env-steps/s of ``batch`` plants (``default``) in one jitted vmapped rollout."""

    weight = 4.0

    def __init__(self, batch: int, steps: int, repeats: int):
        self.batch, self.steps, self.repeats = batch, steps, repeats

    def jobs(self):
        return [(self.weight, f"plant rollout, batch {self.batch}", self.prepare)]

    def prepare(self):
        sc = load_scenario("default")
        s0 = sc.init_state()
        acts = _tile(sc.control, self.steps)
        self.keys = jax.random.split(jax.random.PRNGKey(0), self.batch)
        steps = self.steps
        self.fn, self.compile_s = aot(jax.vmap(
            lambda k: rollout(sc.params, sc.exo, s0, k, acts, steps, record=False)[0]),
            self.keys)
        jax.block_until_ready(self.fn(self.keys))

    def measure(self) -> dict:
        wall = timed(lambda: self.fn(self.keys), self.repeats)
        return {"batch": self.batch, "steps": self.steps, "wall_s": wall,
                "compile_s": self.compile_s, "env_steps_per_s": self.batch * self.steps / wall}


class ShardedThroughput:
    """Batch ``batch`` of :class:`PlantThroughput` split over one CPU device per core
    (``jax_num_cpu_devices``, ``shard_map``), in a subprocess: the device count is a
    process-wide setting that must precede JAX's backend. One XLA CPU program uses
    the cores poorly for this many small kernels; one program per core does not."""

    def __init__(self, batch: int, steps: int, repeats: int):
        self.batch, self.steps, self.repeats = batch, steps, repeats

    def measure(self) -> dict:
        return run_probe("--probe-sharded", self.batch, self.steps, self.repeats)


def run_probe(flag: str, *args, env: dict | None = None) -> dict:
    """Run this script with a hidden ``--probe-*`` flag in a subprocess and return the
    JSON line it prints (or ``{"error": ...}``)."""
    import json
    import subprocess

    cmd = [sys.executable, str(Path(__file__).resolve()), flag, *map(str, args)]
    try:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True,
                             timeout=600)
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, ValueError, IndexError) as e:
        return {"error": f"{type(e).__name__}: {e}"}


def probe_sharded(batch: int, steps: int, repeats: int) -> dict:
    """What :class:`ShardedThroughput` runs in its subprocess (before any JAX work)."""
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    jax.config.update("jax_num_cpu_devices", cores)
    devices = jax.devices()
    if batch % len(devices):
        devices = devices[:1]
    sc = load_scenario("default")
    s0 = sc.init_state()
    acts = _tile(sc.control, steps)
    mesh = Mesh(np.asarray(devices), ("b",))
    keys = jax.device_put(jax.random.split(jax.random.PRNGKey(0), batch),
                          NamedSharding(mesh, P("b")))
    one = jax.vmap(lambda k: rollout(sc.params, sc.exo, s0, k, acts, steps, record=False)[0])
    fn = jax.jit(jax.shard_map(one, mesh=mesh, in_specs=P("b"), out_specs=P("b"),
                               check_vma=False))
    jax.block_until_ready(fn(keys))
    wall = timed(lambda: fn(keys), repeats)
    return {"batch": batch, "steps": steps, "devices": len(devices), "wall_s": wall,
            "env_steps_per_s": batch * steps / wall}


# ---- 2. large hall ---------------------------------------------------------------------------


def hall_scenario(n_racks: int, racks_per_job: int = 50):
    """``default`` scaled to ``n_racks`` racks (jobs of ``racks_per_job`` racks; UPS,
    grid, CDU and heat rejection scaled with the rack count)."""
    per = racks_per_job
    n_jobs = max(n_racks // per, 1)
    f = n_racks / 8
    jobs = [{"racks": list(range(j * per, min((j + 1) * per, n_racks))),
             "period_s": 1.5 + 0.25 * (j % 8),
             "duty": 0.55, "phase_offset": (j * 0.37) % 1.0} for j in range(n_jobs)]
    return load_scenario("default", plant={
        "n_racks": n_racks, "n_jobs": n_jobs,
        "ups": {"e_max_j": 5.4e8 * f, "p_max_w": 1.5e6 * f},
        "grid": {"contract_limit_w": 1.5e6 * f},
        "cdu": {"flow_rated_kg_s": 26.0 * f, "pump_rated_w": 5000.0 * f,
                "ua_w_per_k": 2.5e5 * f, "fw_flow_w_per_k": 1.1e5 * f,
                "c_loop_j_per_k": 3e6 * f},
        "rejection": {"c_fw_j_per_k": 2e7 * f, "g_dry_w_per_k": 2.4e5 * f,
                      "q_dry_max_w": 1.5e6 * f, "q_chiller_max_w": 1.5e6 * f}}, jobs=jobs)


class Hall:
    """Simulated seconds per wall second of one ``n_racks`` plant."""

    weight = 4.0

    def __init__(self, n_racks: int, steps: int, repeats: int, racks_per_job: int = 50):
        self.n_racks, self.steps, self.repeats = n_racks, steps, repeats
        self.racks_per_job = racks_per_job

    def jobs(self):
        return [(self.weight, f"hall rollout, {self.n_racks} racks, jobs of "
                 f"{self.racks_per_job}", self.prepare)]

    def prepare(self):
        sc = hall_scenario(self.n_racks, self.racks_per_job)
        self.n_jobs = int(sc.params.n_jobs)
        s0 = sc.init_state()
        acts = _tile(sc.control, self.steps)
        steps = self.steps
        self.key = jax.random.PRNGKey(0)
        self.fn, self.compile_s = aot(
            lambda k: rollout(sc.params, sc.exo, s0, k, acts, steps, record=False)[0], self.key)
        jax.block_until_ready(self.fn(self.key))
        g = sc.params.gpu
        self.it_mw = float(self.n_racks * (g.n_gpu * g.p_max_w + g.p_other_w)) / 1e6
        self.dt_s = float(sc.params.dt_s)

    def measure(self) -> dict:
        wall = timed(lambda: self.fn(self.key), self.repeats)
        return {"racks": self.n_racks, "jobs": self.n_jobs, "rated_it_mw": self.it_mw,
                "steps": self.steps,
                "wall_s": wall, "x_realtime": self.steps * self.dt_s / wall,
                "compile_s": self.compile_s}


class PlantStepCost:
    """Compile time of the plant's ``step`` and XLA's cost model of one control step."""

    weight = 3.0

    def jobs(self):
        return [(self.weight, "plant step", self.prepare)]

    def prepare(self):
        sc = load_scenario("default")
        p, s = sc.params, sc.init_state()
        exo = exogenous_at(sc.exo, jax.random.PRNGKey(0), 0.0, p.dt_s)
        compiled, self.compile_s = aot(step, p, s, sc.control, exo)
        self.cost = _cost(compiled)

    def measure(self) -> dict:
        return {"compile_s": self.compile_s, **self.cost}


# ---- where the time goes: kernel profiles and the operation-count bound ----------------------


class Breakdown:
    """Kernel time of the batch-``batch`` plant rollout, the hall and one task's vector step
    by plant stage and by function (``scripts/_hlo_profile.py``), in a subprocess under
    XLA's defaults (``HEATSYNC_XLA_TUNING=0``): there every fusion runs as its own kernel,
    which the profiler times; with heatsync's setting a small loop is one kernel."""

    def __init__(self, batch: int, steps: int, hall_racks: int, hall_steps: int, task: str,
                 n: int):
        self.args = (batch, steps, hall_racks, hall_steps, task, n)

    def measure(self) -> dict:
        from heatsync import _xla

        return run_probe("--probe-breakdown", *self.args, env=_xla.untuned_environ())


PROFILE_CALLS = 3  # calls profiled per program; the shares are of their summed kernel time


def _profile_shares(call: Callable[[], object], hlo: str, keys: dict) -> dict:
    """``kernel_s`` per ``call()`` (over :data:`PROFILE_CALLS` calls) and, for each
    ``keys`` entry ``name: key(op)``, the share of kernel time by key (largest first)."""
    import _hlo_profile as hp

    ns, mod = hp.kernel_ns(call, PROFILE_CALLS), hp.Module(hlo)
    total = sum(hp.attribute(ns, mod, lambda op: 0).values())
    out = {"kernel_s": total / 1e9 / PROFILE_CALLS}
    for name, key in keys.items():
        out[name] = {str(k): v / total for k, v in hp.attribute(ns, mod, key).most_common()}
    return out


def probe_breakdown(batch: int, steps: int, hall_racks: int, hall_steps: int, task: str,
                    n: int) -> dict:
    """What :class:`Breakdown` runs in its subprocess (prints one JSON line)."""
    import _hlo_profile as hp

    from heatsync import _xla
    from heatsync.envs._core import drive_vstep_flat
    from heatsync.envs._spaces import check_action

    if _xla.loops_as_one_kernel():
        return {"error": "loops run as one kernel here; the profile would see only the loop"}
    plant_keys = {"stages": lambda op: hp.stage(op.op_name),
                  "functions": lambda op: hp.function(op.stack),
                  "lockstep": lambda op: hp.is_lockstep(op.op_name)}
    out = {"settings": _xla.status()}
    b = PlantThroughput(batch, steps, 3)
    b.prepare()
    out["plant"] = {**b.measure(), **_profile_shares(lambda: b.fn(b.keys), b.fn.as_text(),
                                                     plant_keys)}
    h = Hall(hall_racks, hall_steps, 3)
    h.prepare()
    out["hall"] = {**h.measure(), **_profile_shares(lambda: h.fn(h.key), h.fn.as_text(),
                                                    plant_keys)}
    venv = JaxVectorEnv(task, n, episode__steps=VEC_EPISODE_STEPS)
    venv.action_space.seed(0)
    venv.reset(seed=0)
    acts = check_action(venv.action_space.sample(), venv.single_action_space, batch=n)
    hlo = drive_vstep_flat.lower(venv.task, venv._sid, venv._sflat, venv._pflat, venv._rngs,
                                 venv._sbufs, acts, venv._pbufs).compile().as_text()
    _, _, per_step = _block_rate(lambda: venv.step(acts), n, 10, 3)
    out["vector"] = {"task": task, "n": n, "wall_s": per_step,
                     **_profile_shares(lambda: venv.step(acts), hlo,
                                       {"parts": hp.part,
                                        "stages": lambda op: hp.stage(op.op_name)})}
    venv.close()
    return out


class Roof:
    """The batched plant's operation-count bound on this machine: XLA's cost model of
    one substep (batch 1: flops, transcendentals and bytes per env; the transcendentals
    by function, from the compiled HLO) and the rates this machine's XLA reaches in a
    fused element-wise loop over a (4096, 8) array (arithmetic, and exp/log), one core."""

    weight = 2.0
    LOOP = 200

    def jobs(self):
        return [(self.weight, "operation-count roof", self.prepare)]

    def prepare(self):
        import _hlo_profile as hp

        from heatsync.physics import plant

        sc = load_scenario("default")
        p, s = sc.params, sc.init_state()
        exo = exogenous_at(sc.exo, jax.random.PRNGKey(0), 0.0, p.dt_s)
        a = plant.clip_action(p, sc.control)
        sub, _ = aot(lambda a, exo, s, k: plant._substep(p, a, exo, a.uc_target_w,
                                                          a.ups_target_w, s, k),
                     a, exo, s, jnp.zeros((), jnp.float32))
        self.n_sub = int(p.n_sub)
        self.cost = _cost(sub)
        by_fn: dict[str, int] = {}
        for op in hp.Module(sub.as_text()).all_ops():
            if op.opcode in hp.TRANSCENDENTAL:
                name = hp.function(op.stack)
                by_fn[name] = by_fn.get(name, 0) + op.elements
        self.trans_by_fn = dict(sorted(by_fn.items(), key=lambda kv: -kv[1]))

        x = jax.random.uniform(jax.random.PRNGKey(0), (4096, 8), minval=0.2, maxval=1.0)
        self.x = x

        def arith(i, y):  # compare, select, min, max, mul, add: the plant's common ops
            return (jnp.minimum(jnp.maximum(y * 0.999 + 0.001, 0.1) * 1.0001 - 0.0001, 2.0)
                    + jnp.where(y > 5.0, 1.0, 0.0))

        def power(i, y):  # y ** 2.7 as the plant computes it: exp(2.7 log y)
            return jnp.exp(2.7 * jnp.log(y)) * 0.5 + 0.4

        self.loops = {}
        for name, body in (("arith", arith), ("power", power)):
            per_iter = _cost(aot(body, 0, x)[0])
            fn, _ = aot(lambda y, body=body: jax.lax.fori_loop(0, self.LOOP, body, y), x)
            jax.block_until_ready(fn(x))
            self.loops[name] = (fn, per_iter)

    def measure(self) -> dict:
        size = self.x.size
        t = {}
        for name, (fn, c) in self.loops.items():
            c0, w0 = time.process_time(), time.perf_counter()
            wall = timed(lambda fn=fn: fn(self.x), 7)
            cores = (time.process_time() - c0) / (time.perf_counter() - w0)
            t[name] = (wall / (self.LOOP * size), c, cores)
        t_arith = t["arith"][0] / (t["arith"][1]["flops"] / size)
        pw = t["power"]
        t_trans = ((pw[0] - t_arith * pw[1]["flops"] / size)
                   / (pw[1]["transcendentals"] / size))
        c = self.cost
        per_step = self.n_sub * (c["flops"] * t_arith + c["transcendentals"] * t_trans)
        return {"substep": c, "n_sub": self.n_sub, "trans_by_fn": self.trans_by_fn,
                "ns_per_op": t_arith * 1e9, "ns_per_transcendental": t_trans * 1e9,
                "loop_cores": max(t["arith"][2], pw[2]),
                "bound_us_per_env_step": per_step * 1e6,
                "bound_env_steps_per_s_per_core": 1.0 / per_step}


def _cost(compiled) -> dict:
    """XLA's cost model of a compiled program: flops, transcendentals, bytes accessed
    (NaN where the backend does not report one)."""
    ca = compiled.cost_analysis()
    ca = (ca[0] if isinstance(ca, list) else ca) or {}
    nan = float("nan")
    return {"flops": ca.get("flops", nan), "transcendentals": ca.get("transcendentals", nan),
            "bytes": ca.get("bytes accessed", nan)}


def _gpu_share(roof: dict) -> tuple[int, int]:
    """``(transcendentals per substep in gpu.py, all of them)`` from :class:`Roof`."""
    tr = roof["trans_by_fn"]
    return sum(v for k, v in tr.items() if k.startswith("gpu.")), sum(tr.values())


# ---- 3. env latency and vector throughput (and their compile times) --------------------------


class EnvLatency:
    """``gymnasium.Env.step`` latency of one task (the env itself, without the wrappers
    ``gymnasium.make`` adds), and the compile time of its reset and step."""

    weight = 10.0

    def __init__(self, task: str, steps: int, warmup: int):
        self.task, self.steps, self.warmup = task, steps, warmup

    def jobs(self):
        return [(self.weight + (2.0 if self.task == "Facility" else 0.0),
                 f"{self.task} Env.reset + Env.step", self.prepare)]

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


class CompileSplit:
    """Where a step's compile time goes: trace (Python to jaxpr), lower (to StableHLO)
    and XLA's compile, measured apart with the AOT API on a fresh ``jax.jit`` of the
    entry point (a new function object, so no trace or executable is reused), for one
    task's single-env and vector step."""

    weight = 8.0

    def __init__(self, task: str, n: int):
        self.task, self.n = task, n

    def jobs(self):
        return [(self.weight, f"{self.task} compile split", self.prepare)]

    @staticmethod
    def _split(fn, args) -> dict:
        from functools import partial

        def fresh_fn(*a):  # a new function object: JAX's trace and compile caches miss
            return fn(*a)

        fresh = partial(jax.jit, static_argnums=(0, 1, 2, 3))(fresh_fn)
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

    def prepare(self):
        from heatsync.envs._core import drive_step_flat, drive_vstep_flat
        from heatsync.envs._spaces import check_action

        env = gymnasium.make(make_task(self.task).env_id).unwrapped
        env.action_space.seed(0)
        env.reset(seed=0)
        a = check_action(env.action_space.sample(), env.action_space)
        self.single = self._split(drive_step_flat.__wrapped__,
                                  (env.task, env._sid, env._sflat, env._pflat, env._rng,
                                   env._sbufs, a, env._pbufs))
        vec = JaxVectorEnv(self.task, self.n)
        vec.action_space.seed(0)
        vec.reset(seed=0)
        acts = check_action(vec.action_space.sample(), vec.single_action_space, batch=self.n)
        self.vector = self._split(drive_vstep_flat.__wrapped__,
                                  (vec.task, vec._sid, vec._sflat, vec._pflat, vec._rngs,
                                   vec._sbufs, acts, vec._pbufs))

    def measure(self) -> dict:
        return {"task": self.task, "n": self.n, "single": self.single, "vector": self.vector}


class StepAnatomy:
    """Where one ``Env.step`` of a task goes: the host side (action check, unpacking),
    the jitted call's fixed cost (dispatch and transfers) and the step's compute, from
    the same step body compiled to run K = 1 and K = 10 times in one call (as one
    kernel, like the env's own entry point); plus the kernel (thunk) counts."""

    weight = 9.0

    def __init__(self, task: str, calls: int):
        self.task, self.calls = task, calls

    def jobs(self):
        return [(self.weight, f"{self.task} step anatomy", self.prepare)]

    def prepare(self):
        from functools import partial

        from heatsync.envs._core import _pack, _step_one, drive_step_flat, one_kernel
        from heatsync.envs._spaces import check_action

        env = gymnasium.make(make_task(self.task).env_id, episode__steps=10**6).unwrapped
        env.action_space.seed(0)
        env.reset(seed=0)
        self.raw = env.action_space.sample()
        a = check_action(self.raw, env.action_space)
        task, sid, sflat, pflat = env.task, env._sid, env._sflat, env._pflat

        @partial(jax.jit, static_argnums=0)
        def ksteps(k, rng, sbufs, action, pbufs):
            def run(rng, sbufs, action, pbufs):
                params = pflat.unpack(pbufs)

                def body(carry, _):
                    rng, sb = carry
                    rng, st, host = _step_one(task, rng, sflat.unpack(sb), action, params)
                    return (rng, sflat.pack(st)), _pack("step", task, sid, host)

                (rng, sbufs), flat = jax.lax.scan(body, (rng, sbufs), None, length=k)
                return rng, sbufs, flat[-1]

            return one_kernel(run, rng, sbufs, action, pbufs)

        self.env, self.a, self.ksteps = env, a, ksteps
        for k in (1, 10):
            jax.block_until_ready(ksteps(k, env._rng, env._sbufs, a, env._pbufs))
        hlo = drive_step_flat.lower(task, sid, sflat, pflat, env._rng, env._sbufs, a,
                                    env._pbufs).compile().as_text()
        self.kernels = kernel_counts(hlo)
        for _ in range(50):
            env.step(self.raw)

    @staticmethod
    def _medians_us(fns, n):
        """Median time of each function, calls interleaved (so that drift in the
        machine's load biases none of them)."""
        times = np.empty((len(fns), n))
        for i in range(n):
            for j, fn in enumerate(fns):
                t0 = time.perf_counter()
                fn()
                times[j, i] = time.perf_counter() - t0
        return [1e6 * float(np.median(t)) for t in times]

    def measure(self) -> dict:
        from heatsync.envs._core import drive_step_flat

        env, a, n = self.env, self.a, self.calls
        static = (env.task, env._sid, env._sflat, env._pflat)

        def call():
            env._rng, env._sbufs, flat = drive_step_flat(*static, env._rng, env._sbufs, a,
                                                         env._pbufs)
            np.asarray(flat)

        def steps(k):
            def run():
                env._rng, env._sbufs, flat = self.ksteps(k, env._rng, env._sbufs, a,
                                                         env._pbufs)
                np.asarray(flat)
            return run

        env_step, call_us = self._medians_us([lambda: env.step(self.raw), call], n)
        k1, k10 = self._medians_us([steps(1), steps(10)], max(n // 4, 20))
        per_step = (k10 - k1) / 9.0
        from heatsync import _xla

        return {"task": self.task, "env_step_us": env_step, "call_us": call_us,
                "host_us": env_step - call_us, "k1_us": k1, "k10_us": k10,
                "in_loop_us": per_step, "fixed_us": k1 - per_step, **self.kernels,
                "settings": _xla.status()}


class Untuned:
    """``Env.step`` and the batch-1 plant rollout in a subprocess with heatsync's XLA:CPU
    settings off (``HEATSYNC_XLA_TUNING=0``), to show what they are worth."""

    def __init__(self, task: str, calls: int, steps: int):
        self.task, self.calls, self.steps = task, calls, steps

    def measure(self) -> dict:
        from heatsync import _xla

        # untuned_environ: not the XLA_FLAGS this process was given by heatsync
        return run_probe("--probe-untuned", self.task, self.calls, self.steps,
                         env=_xla.untuned_environ())


def probe_untuned(task: str, calls: int, steps: int) -> dict:
    """What :class:`Untuned` runs in its subprocess (prints one JSON line)."""
    from heatsync import _xla

    env = gymnasium.make(make_task(task).env_id, episode__steps=10**6).unwrapped
    env.action_space.seed(0)
    env.reset(seed=0)
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
    import re

    i = hlo.index("\nENTRY")
    entry = hlo[i:hlo.index("\n}\n", i)]
    ops = re.findall(r"= \S+ ([a-z\-]+)\(", entry)
    return {"entry_kernels": sum(op not in ("get-tuple-element", "bitcast", "constant",
                                            "parameter", "tuple") for op in ops)}


def _sb3():
    try:
        from heatsync.envs.sb3 import SB3VecEnv
    except ImportError:
        return None
    return SB3VecEnv


def _block_rate(step_fn: Callable[[], object], n: int, block_steps: int, blocks: int):
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


class VecThroughput:
    """Steps/s of ``JaxVectorEnv`` (and ``SB3VecEnv``, all info keys and none) for one task
    at N envs, episodes of :data:`VEC_EPISODE_STEPS` (auto-resets inside the timing)."""

    weight = 12.0

    def __init__(self, task: str, n: int, block_steps: int, blocks: int):
        self.task, self.n, self.block_steps, self.blocks = task, n, block_steps, blocks

    def jobs(self):
        return [(self.weight, f"{self.task} JaxVectorEnv N = {self.n}", self.prepare)]

    def prepare(self):
        venv = JaxVectorEnv(self.task, self.n, episode__steps=VEC_EPISODE_STEPS)
        venv.single_action_space.seed(0)
        self.acts = np.stack([venv.single_action_space.sample() for _ in range(self.n)])
        t0 = time.perf_counter()
        venv.reset(seed=0)
        self.first_reset_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        venv.step(self.acts)
        self.first_step_s = time.perf_counter() - t0
        self.venv = venv

    def measure(self) -> dict:
        venv, acts, n = self.venv, self.acts, self.n
        t0 = time.perf_counter()
        venv.reset(seed=0)
        warm_reset = time.perf_counter() - t0
        rate, rate_cpu, per_step = _block_rate(lambda: venv.step(acts), n, self.block_steps,
                                               self.blocks)
        venv.close()
        out = {"task": self.task, "n": n, "steps_per_s": rate, "steps_per_cpu_s": rate_cpu,
               "compile_reset_s": self.first_reset_s - warm_reset,
               "compile_step_s": self.first_step_s - per_step, "sb3_all": None, "sb3_none": None}
        sb3 = _sb3()
        if sb3 is not None:  # shares the compiled batch step: no compile
            for key, info_keys in (("sb3_all", None), ("sb3_none", ())):
                senv = sb3(self.task, n, info_keys=info_keys, episode__steps=VEC_EPISODE_STEPS)
                senv.seed(0)
                senv.reset()
                out[key] = _block_rate(lambda e=senv: e.step(acts), n, self.block_steps,
                                       self.blocks)[0]
                senv.close()
        return out


# ---- 5. gradient of a rollout ----------------------------------------------------------------

# the gradient problem of scripts/_grad_cost.py (this folder is on sys.path when run as a
# script): the five plant parameters, the scalar cost and its forward and rematerialized
# reverse-mode variants
from _grad_cost import PARAMS as GRAD_PARAMS  # noqa: E402
from _grad_cost import build as _grad_build  # noqa: E402


def grad_problem(scenario: str, steps: int):
    """``(forward, grad, args)`` of ``scripts/_grad_cost.py``: the cost of a
    ``steps``-interval rollout as a function of ``(theta (5,), pump (steps,), setpoint
    (steps,))``, and its reverse-mode gradient with respect to all three through a
    ``lax.scan`` whose per-step body is rematerialized (``jax.checkpoint``)."""
    fns, args = _grad_build(scenario, steps)
    return fns["forward"], fns["grad scan+remat"], args


class GradCost:
    """Forward rollout vs its gradient (``chiller-trip``): wall time, compile time and
    XLA's planned temporary memory."""

    scenario = "chiller-trip"

    def __init__(self, steps: int, repeats: int):
        self.steps, self.repeats = steps, repeats
        forward, grad, self.args = grad_problem(self.scenario, steps)
        self.fns = {"forward": forward, "grad": grad}
        self.compiled: dict = {}

    def jobs(self):
        return [(4.0, "forward rollout", lambda: self._prepare("forward")),
                (10.0, "gradient", lambda: self._prepare("grad"))]

    def _prepare(self, name):
        compiled, comp = aot(self.fns[name], *self.args)
        res = jax.block_until_ready(compiled(*self.args))
        finite = all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree_util.tree_leaves(res))
        self.compiled[name] = {"fn": compiled, "compile_s": comp,
                               "temp_bytes": _temp_bytes(compiled), "finite": finite}

    def measure(self) -> dict:
        out = {"scenario": self.scenario, "steps": self.steps,
               "dtype": str(jnp.result_type(float))}
        for name in ("forward", "grad"):
            c = self.compiled[name]
            wall = timed(lambda fn=c["fn"]: fn(*self.args), self.repeats)
            out[name] = {"run_s": wall, **{k: c[k] for k in ("compile_s", "temp_bytes",
                                                             "finite")}}
        out["multiple"] = out["grad"]["run_s"] / out["forward"]["run_s"]
        return out


# ---- report ----------------------------------------------------------------------------------


def verdict(value: float, target: float, higher_is_better: bool = True) -> str:
    ok = value >= target if higher_is_better else value <= target
    return "meets" if ok else f"misses ({value / target:.2g}x the target)"


def _mib(b) -> str:
    return "n/a" if b is None else f"{b / 2**20:,.1f}"


def render_anatomy(x: dict, plant: list, untuned: dict | None) -> list[str]:
    """Section "where a single step's time goes" (placed after the compile times)."""
    b1 = {row["batch"]: row for row in plant}.get(1)
    rollout_us = f"{1e6 / b1['env_steps_per_s']:,.0f} us" if b1 else "not measured"
    out = [
        "", f"## 4b. Where a single step's time goes ({x['task']})", "",
        "Medians over repeated calls, interleaved. The jitted call is the env's own "
        "`drive_step_flat` (flat state and params buffers, one host transfer), which runs "
        "the whole step as one XLA kernel (`envs._core.one_kernel`). The same step body "
        "compiled to run K = 1 and K = 10 times per call splits the call into a fixed cost "
        "and the step's compute: fixed = T(1) - (T(10) - T(1)) / 9.", "",
        "| part | us | how |", "|---|---:|---|",
        f"| `Env.step` | {x['env_step_us']:,.0f} | the env, as users call it |",
        f"| host side | {x['host_us']:,.0f} | `Env.step` minus the jitted call: action "
        "check, unpacking obs/reward/info into Python objects |",
        f"| jitted call | {x['call_us']:,.0f} | `drive_step_flat` and the transfer of its "
        f"output; {x['entry_kernels']} kernels (thunks) per call |",
        f"| fixed cost per call | {x['fixed_us']:,.0f} | dispatch (argument checks, static "
        "argument hashing, buffer handling) and the transfers, paid once per call |",
        f"| step compute | {x['in_loop_us']:,.0f} | the step itself: plant (10 substeps), "
        "exogenous inputs, reward, observation, info |",
        "", f"For comparison, the plant alone (no reward, observation or info, nothing "
        f"recorded) takes {rollout_us} per step in the batch-1 rollout of section 1."]
    if untuned is not None and "error" not in untuned:
        ratio = untuned["env_step_us"] / max(x["env_step_us"], 1e-9)
        b1_ratio = (b1["env_steps_per_s"] / untuned["b1_env_steps_per_s"]) if b1 else None
        out += ["", "**heatsync's XLA:CPU settings** (`heatsync/_xla.py`; "
                f"{x['settings']}). The same measurements in a subprocess with "
                "`HEATSYNC_XLA_TUNING=0` (XLA's defaults: every small op its own thunk, "
                "asynchronous dispatch to a worker thread):", "",
                "| figure | XLA defaults | heatsync settings | ratio |", "|---|---:|---:|---:|",
                f"| `Env.step` median | {untuned['env_step_us']:,.0f} us | "
                f"{x['env_step_us']:,.0f} us | {ratio:.1f}x faster |"]
        if b1_ratio is not None:
            out.append(f"| plant rollout, batch 1 | {untuned['b1_env_steps_per_s']:,.0f} "
                       f"env-steps/s | {b1['env_steps_per_s']:,.0f} env-steps/s | "
                       f"{b1_ratio:.1f}x faster |")
    elif untuned is not None:
        out += ["", f"The run without heatsync's XLA settings failed: {untuned['error']}"]
    else:
        out += ["", f"heatsync's XLA:CPU settings: {x['settings']} (the comparison with "
                "XLA's defaults is skipped with --quick)."]
    out += ["", "What bounds the remaining time: the fixed cost per call is Python and "
            "PJRT dispatch (static argument hashing, putting the NumPy action on the device, "
            "output buffers) plus the transfer back, and the host side is NumPy and Python "
            "object creation for ~90 info values; the step's own compute is what one XLA "
            "kernel takes for 10 substeps of 8 racks. Reaching 50 us needs the host side and "
            "the fixed cost both several times smaller: a leaner info (or one computed on "
            "demand), and a dispatch path without per-call argument handling."]
    return out


STAGE_DOC = {
    "exogenous": "weather, prices, noise, faults",
    "sources": "storage setpoint ramps, grid and generator",
    "clocks": "workload phases, power-cap clocks, implicit throttle, lockstep minima",
    "gpu_power": "GPU demand, firmware floor and ramps",
    "shedding": "UPS limits, IT shedding",
    "ultracap": "rack ultracapacitors",
    "heat": "cold plates, CDU, LN2 exchanger, heat rejection",
    "ups_grid": "UPS dispatch, grid draw, power quality",
    "trips": "trips, throttled time",
    "ln2": "LN2 tank, room oxygen",
    "jobs": "job progress",
    "outputs": "per-substep outputs",
    "accumulate": "per-interval accumulators",
    "other": "in no stage: loop carries, XLA's copies, the interval's bookkeeping",
}


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %" if x < 0.095 else f"{100 * x:.0f} %"


def _top(shares: dict, k: int) -> str:
    return ", ".join(f"`{name}` {_pct(v)}" for name, v in list(shares.items())[:k])


def render_breakdown(r: dict) -> list[str]:
    """Section 6: the operation-count floor of the batched plant and the kernel profiles."""
    out = ["", "## 6. Where the time goes", ""]
    roof, bd = r.get("roof"), r.get("breakdown")
    plant = {row["batch"]: row for row in r["plant"]}
    if roof:
        c = roof["substep"]
        tr = roof["trans_by_fn"]
        gpu, n_trans = _gpu_share(roof)
        per_core = roof["bound_env_steps_per_s_per_core"]
        cores = r["machine"]["cores"]
        out += ["### Operation count: the batched plant's floor", "",
                f"XLA's cost model of one substep (`plant._substep` compiled alone, batch 1): "
                f"{c['flops']:,.0f} flops, {c['transcendentals']:,.0f} transcendentals and "
                f"{c['bytes']:,.0f} bytes accessed per env. The transcendentals by function "
                f"(from the compiled HLO): {', '.join(f'`{k}` {v:,}' for k, v in tr.items())}; "
                f"{gpu} of {n_trans} are the GPU power law P ~ f^gamma and its "
                "inverse, each a log and an exp.", "",
                f"This machine's XLA, in a fused element-wise loop over a (4096, 8) array "
                f"(one kernel, {roof['loop_cores']:.1f} cores busy), takes "
                f"{roof['ns_per_op']:.4f} ns per arithmetic operation and element and "
                f"{roof['ns_per_transcendental']:.2f} ns per exp or log. At those rates "
                f"{roof['n_sub']} substeps cost at least {roof['bound_us_per_env_step']:.2f} us "
                f"per env-step: at most {per_core:,.0f} env-steps/s per core, "
                f"{cores * per_core:,.0f} on {cores} cores, with every core busy at that rate "
                "and nothing else."]
        big = max(plant)
        if plant[big].get("env_steps_per_s"):
            line = (f"Batch {big} reached {plant[big]['env_steps_per_s']:,.0f} env-steps/s, "
                    f"{100 * plant[big]['env_steps_per_s'] / per_core:.0f} % of one core's "
                    "floor")
            sh = r.get("sharded")
            if sh and "error" not in sh:
                line += (f"; sharded over {sh['devices']} devices, "
                         f"{sh['env_steps_per_s']:,.0f}, "
                         f"{100 * sh['env_steps_per_s'] / (sh['devices'] * per_core):.0f} % "
                         f"of {sh['devices']} cores' floor")
            out += ["", line + "."]
    if not bd:
        out += ["", "Kernel profiles: skipped (--quick)." if r.get("quick") else
                "Kernel profiles: not run."]
        return out
    if "error" in bd:
        out += ["", f"Kernel profiles: the subprocess failed: {bd['error']}"]
        return out
    p, h, v = bd["plant"], bd["hall"], bd["vector"]
    out += ["", "### Kernel profiles", "",
            f"{PROFILE_CALLS} calls of each program under `jax.profiler`, in a subprocess "
            "under XLA's "
            "defaults (`HEATSYNC_XLA_TUNING=0`), where every fusion runs as its own kernel "
            "that the profiler times (with heatsync's setting a small loop is one kernel). "
            "A kernel's time is split over its operations by count, and summed by the plant "
            "stage (`jax.named_scope` in `physics/plant.py`) or the function that emitted "
            "each (`scripts/_hlo_profile.py`). Shares are of kernel time, summed over "
            "threads. In that process: batch "
            f"{p['batch']} ran {p['env_steps_per_s']:,.0f} env-steps/s "
            f"({p['kernel_s'] * 1e3:,.1f} ms of kernels per {p['wall_s'] * 1e3:,.1f} ms call, "
            f"{p['steps']} steps); the hall "
            f"({h['racks']} racks, {h['jobs']} jobs) {h['x_realtime']:,.0f}x real time.", "",
            f"| plant stage | batch {p['batch']} | hall, {h['racks']} racks |",
            "|---|---:|---:|"]
    for name in sorted(p["stages"], key=lambda k: -p["stages"][k]):
        out.append(f"| {name} ({STAGE_DOC.get(name, '?')}) | {_pct(p['stages'][name])} | "
                   f"{_pct(h['stages'].get(name, 0.0))} |")
    out.append(f"| of all stages, the jobs x racks terms (`workload.membership`, `rack_view`, "
               f"`job_min`) | {_pct(p['lockstep'].get('True', 0.0))} | "
               f"{_pct(h['lockstep'].get('True', 0.0))} |")
    out += ["", f"By function, batch {p['batch']}: {_top(p['functions'], 8)}.", "",
            f"By function, hall: {_top(h['functions'], 8)}.", "",
            f"{v['task']}'s vector step at N = {v['n']} ({v['kernel_s'] * 1e3:.1f} ms of "
            f"kernels per {v['wall_s'] * 1e3:.1f} ms step), by part: {_top(v['parts'], 7)} "
            "(`plant` is the plant's step; the others are the modules that emitted the "
            "rest: `_queue` the job queue, `exogenous` the env's exogenous inputs, `_core` "
            "auto-reset and packing, `_obs` the observation, `(no source)` XLA's copies)."]
    return out


def render_bounds(r: dict) -> list[str]:
    """Section 7: what bounds each missed target, from this run's figures."""
    plant = {row["batch"]: row for row in r["plant"]}
    out = ["", "## 7. What bounds each target", ""]
    big = max(plant)
    row = plant[big]
    ns = 1e9 / (row["env_steps_per_s"] * 10 * 8)
    sh = r.get("sharded")
    sh_txt = (f" Split over one CPU device per core it reaches {sh['env_steps_per_s']:,.0f} "
              f"env-steps/s ({sh['env_steps_per_s'] / row['env_steps_per_s']:.2f}x), so one "
              "XLA program leaves part of the second core idle."
              if sh and "error" not in sh else "")
    roof, bd = r.get("roof"), r.get("breakdown")
    bd = bd if bd and "error" not in bd else None
    floor = ""
    if roof:
        per_core = roof["bound_env_steps_per_s_per_core"]
        cores = r["machine"]["cores"]
        gpu, n_trans = _gpu_share(roof)
        floor = (f" Its operation count alone (section 6) allows at most {per_core:,.0f} "
                 f"env-steps/s per core, {cores * per_core:,.0f} on {cores} cores, at the rate "
                 "this machine's XLA reaches in a fused loop with nothing else to do; "
                 f"{gpu} of its {n_trans} transcendentals per substep are the GPU "
                 "power law f^gamma and its inverse (each a log and an exp).")
    prof = ""
    if bd:
        st, fn, lk = bd["plant"]["stages"], bd["plant"]["functions"], bd["plant"]["lockstep"]
        prof = (f" By the kernel profile, the clocks stage takes {_pct(st.get('clocks', 0))} "
                f"(the implicit throttle, 4 Newton iterations each with a power per rack, "
                f"{_pct(fn.get('gpu.throttle_implicit', 0))}) and the jobs x racks terms "
                f"{_pct(lk.get('True', 0))}.")
    out.append(
        f"- **Batched plant.** At batch {big}, {row['env_steps_per_s']:,.0f} env-steps/s is "
        f"{ns:.0f} ns per rack and substep.{floor}{sh_txt}{prof} What would change it: fewer "
        "transcendentals per substep (a throttle solve warm-started from the last substep "
        "with fewer iterations, or a cheaper power law), more cores per program (sharding), "
        "fewer substeps per control interval, or an accelerator backend.")
    hall, one = r["hall"], r.get("hall_one_job")
    hprof = ""
    if bd:
        hf, hs = bd["hall"]["functions"], bd["hall"]["stages"]
        wl = sum(x for k, x in hf.items() if k.startswith("workload."))
        hprof = (f" Its kernel profile (section 6) puts {_pct(wl)} in the workload functions "
                 f"(job phases, occupancy, job minima, gathers to racks, progress), "
                 f"{_pct(hs.get('clocks', 0))} in the clocks stage and "
                 f"{_pct(hs.get('other', 0))} outside any stage (loop carries, copies); "
                 "the profile splits a fusion's time by instruction count, which cannot "
                 "see per-job arithmetic that XLA re-evaluates for each rack inside a "
                 "gather, so the one-job comparison is the better measure of that cost.")
    if one:
        per_sub = 1e6 * hall["wall_s"] / (hall["steps"] * 10)
        per_sub1 = 1e6 * one["wall_s"] / (one["steps"] * 10)
        out.append(
            f"- **Large hall.** {per_sub:.0f} us per substep for {hall['racks']} racks in "
            f"{hall['jobs']} jobs, against {per_sub1:.0f} us as one job: "
            f"{100 * (1 - per_sub1 / per_sub):.0f} % of the hall's time goes to the jobs "
            "x racks terms (lockstep minima over a dense mask, and per-job quantities "
            "gathered to racks, into which XLA fuses the per-job arithmetic so that it is "
            f"redone for each of a job's racks). Even as one job, {per_sub1:.0f} us per "
            f"substep is {1e3 * per_sub1 / hall['racks']:.0f} ns per rack; 10,000x real time "
            f"needs {1e6 / (10_000 * 10):.0f} us per substep. What would change it: O(racks) "
            "segment reductions, per-job quantities computed once and gathered without "
            "fusion, and the batched plant's changes." + hprof)
    x = r.get("anatomy")
    if x:
        t = TARGETS["env_step_median_us"]
        parts = {"the host side": x["host_us"], "the fixed cost per call": x["fixed_us"],
                 "the step's compute": x["in_loop_us"]}
        over = [k for k, v in parts.items() if v > t]
        out.append(
            f"- **Env.step.** Section 4b: {x['host_us']:,.0f} us on the host, "
            f"{x['fixed_us']:,.0f} us fixed per jitted call and {x['in_loop_us']:,.0f} us of "
            "compute; " + (f"{' and '.join(over)} alone exceed{'s' if len(over) == 1 else ''} "
                           f"the {t:.0f} us target." if over else
                           f"each part is below the {t:.0f} us target."))
    vec = {(v["task"], v["n"]): v for v in r["vec"]}
    vprof = ""
    if bd:
        v = bd["vector"]
        rest = {k: x for k, x in v["parts"].items() if k != "plant"}
        vprof = (f" By the kernel profile of {v['task']}'s vector step at N = {v['n']} "
                 f"(section 6), the plant takes {_pct(v['parts'].get('plant', 0))} of the "
                 f"kernel time; the rest: {_top(rest, 4)}.")
    if 1024 in plant and vec:
        slow = min((v for v in r["vec"] if v["n"] == max(n for _, n in vec)),
                   key=lambda v: v["steps_per_s"])
        out.append(
            f"- **Vector env.** At N = {slow['n']}, {slow['task']} runs "
            f"{slow['steps_per_s']:,.0f} steps/s, against {plant[1024]['env_steps_per_s']:,.0f} "
            "env-steps/s for the bare plant at batch 1024 (section 1): the env adds the "
            "reward, observation, info (~90 values per env, packed and copied to the host "
            "every step), auto-reset and, for the scheduling tasks, the job queue. Its bound "
            "is the batched plant's, plus that overhead." + vprof)
    sp = r.get("split")
    where = ""
    if sp and sum(sp["vector"][k] for k in ("trace_s", "lower_s", "compile_s")) > 0:
        v = sp["vector"]
        tot = v["trace_s"] + v["lower_s"] + v["compile_s"]
        where = (f" For {sp['task']}'s vector step (N = {sp['n']}, {v['ops']:,} StableHLO "
                 f"ops), {100 * v['compile_s'] / tot:.0f} % of {tot:.1f} s is XLA's compile, "
                 f"{100 * v['trace_s'] / tot:.0f} % tracing and "
                 f"{100 * v['lower_s'] / tot:.0f} % lowering (section 4).")
    out.append(
        "- **Compile time.** XLA:CPU compiles each task's step (plant, queue, reward, "
        "observation and info) with LLVM; the vector steps of the scheduling tasks are the "
        f"largest.{where} What would change it: fewer distinct operations per step (the "
        "queue logic), or JAX's persistent compilation cache (`jax_compilation_cache_dir`), "
        "which makes every run after the first load its executables instead of compiling "
        "them.")
    return out


def render(r: dict, s: dict, wall_s: float) -> str:
    m, quick = r["machine"], s["quick"]
    cmd = "python scripts/perf.py" + (" --quick" if quick else "")
    la0, la1 = r["load"]
    out = ["# heatsync performance", "",
           f"Produced by `{cmd}` on {time.strftime('%Y-%m-%d %H:%M')} in {wall_s:.0f} s. "
           f"Medians of {s['repeats']} repeats after a warm-up; compile time excluded unless "
           "it is the figure. Compiles ran first, " +
           ("one at a time" if s["jobs"] == 1 else f"{s['jobs']} at a time") +
           "; every timing then ran alone."]
    if quick:
        out += ["", "**--quick** (a smoke run of every code path; the figures are not the "
                "report): tiny step counts; batches 1 and 64 only; a "
                f"{s['hall_racks']}-rack hall; env latency and the vector env at N = 64 for "
                f"{', '.join(s['latency_tasks'])} only (each task and N compiles its own reset "
                "and step); no gradient; compile times measured "
                f"{s['jobs']} compiles at a time (inflated when the cores are busy)."]

    # summary
    plant = {row["batch"]: row for row in r["plant"]}
    hall = r["hall"]
    lat = r["latency"]
    worst_lat = max(lat, key=lambda x: x["median_us"])
    vec1024 = [v for v in r["vec"] if v["n"] == 1024]
    comps = [(f"{x['task']} Env.reset", x["compile_reset_s"]) for x in lat] + \
            [(f"{x['task']} Env.step", x["compile_step_s"]) for x in lat] + \
            [(f"{v['task']} JaxVectorEnv.{fn} N = {v['n']}", v[f"compile_{fn}_s"])
             for v in r["vec"] for fn in ("reset", "step")]
    worst_comp = max(comps, key=lambda x: x[1])
    g = r["grad"]
    out += ["", "## Targets", "", "| figure | measured | target | verdict |",
            "|---|---:|---:|---|"]
    if 4096 in plant:
        v = plant[4096]["env_steps_per_s"]
        out.append(f"| batched plant, batch 4096 | {v:,.0f} env-steps/s | >= "
                   f"{TARGETS['batch4096']:,} env-steps/s | {verdict(v, TARGETS['batch4096'])} |")
        sh = r.get("sharded")
        if sh and "error" not in sh and sh["batch"] == 4096:
            v = sh["env_steps_per_s"]
            out.append(f"| batched plant, batch 4096, sharded over {sh['devices']} CPU devices "
                       f"| {v:,.0f} env-steps/s | >= {TARGETS['batch4096']:,} env-steps/s | "
                       f"{verdict(v, TARGETS['batch4096'])} |")
    else:
        out.append(f"| batched plant, batch 4096 | skipped (--quick) | >= "
                   f"{TARGETS['batch4096']:,} env-steps/s | not measured |")
    out.append(f"| large hall, {hall['racks']} racks | {hall['x_realtime']:,.0f}x real time | "
               f">= {TARGETS['hall_x_realtime']:,}x | "
               f"{verdict(hall['x_realtime'], TARGETS['hall_x_realtime'])} |")
    out.append(f"| Env.step median, slowest task ({worst_lat['task']}) | "
               f"{worst_lat['median_us']:,.1f} us | <= {TARGETS['env_step_median_us']:.0f} us | "
               f"{verdict(worst_lat['median_us'], TARGETS['env_step_median_us'], False)} |")
    if vec1024:
        w = min(vec1024, key=lambda x: x["steps_per_s"])
        out.append(f"| JaxVectorEnv at N = 1024, slowest task ({w['task']}) | "
                   f"{w['steps_per_s']:,.0f} steps/s | >= {TARGETS['vec1024']:,} steps/s | "
                   f"{verdict(w['steps_per_s'], TARGETS['vec1024'])} |")
    else:
        out.append(f"| JaxVectorEnv at N = 1024 | skipped (--quick) | >= {TARGETS['vec1024']:,} "
                   "steps/s | not measured |")
    out.append(f"| compile, slowest reset or step ({worst_comp[0]}) | {worst_comp[1]:.1f} s | "
               f"<= {TARGETS['compile_s']:.0f} s | "
               f"{verdict(worst_comp[1], TARGETS['compile_s'], False)} |")
    if g is not None:
        horizon = "1 h" if g["steps"] == 3600 else f"{g['steps']} s"
        out.append(f"| gradient of a {horizon} rollout | {g['multiple']:.1f}x the forward | "
                   "none set | - |")
    else:
        out.append("| gradient of a 1 h rollout | skipped (--quick) | none set | - |")

    # machine
    out += ["", "## Machine", "",
            f"- CPU: {m['cpu']}, {m['cores']} cores available",
            f"- JAX backend: {m['backend']} ({m['devices']})",
            f"- heatsync's XLA:CPU settings (`heatsync/_xla.py`): {m['xla_settings']}",
            "- versions: " + ", ".join(f"{k} {val}" for k, val in m["versions"].items())]
    if la0 is not None:
        out.append(f"- load average (1 min): {la0:.1f} at the start, {la1:.1f} at the end, on "
                   f"{os.cpu_count()} cores (other processes inflate wall times; the CPU-time "
                   "columns much less)")

    # 1. plant
    out += ["", "## 1. Batched plant throughput", "",
            "`default` scenario (8 racks), dt = 1 s, 10 substeps; a jitted, vmapped "
            "`lax.scan` rollout of fixed actions, no series recorded.", "",
            "| batch | steps | wall (s) | env-steps/s | target |", "|---:|---:|---:|---:|---|"]
    for b in (1, 64, 1024, 4096):
        if b not in plant:
            out.append(f"| {b} | - | - | skipped (--quick) | >= {TARGETS['batch4096']:,} |")
            continue
        row = plant[b]
        vd = verdict(row["env_steps_per_s"], TARGETS["batch4096"])
        tgt = f">= {TARGETS['batch4096']:,}: {vd}" if b == 4096 else "none (target at 4096)"
        out.append(f"| {b} | {row['steps']} | {row['wall_s']:.4f} | "
                   f"{row['env_steps_per_s']:,.0f} | {tgt} |")
    sh = r.get("sharded")
    if sh and "error" not in sh:
        vd = verdict(sh["env_steps_per_s"], TARGETS["batch4096"])
        out.append(f"| {sh['batch']}, sharded over {sh['devices']} CPU devices | {sh['steps']} | "
                   f"{sh['wall_s']:.4f} | {sh['env_steps_per_s']:,.0f} | "
                   f">= {TARGETS['batch4096']:,}: {vd} |")
        out += ["", "The sharded row runs the same rollout with one CPU device per core "
                "(`jax.config.update('jax_num_cpu_devices', cores)` before any JAX work, then "
                "`jax.shard_map` over the batch), in a subprocess: one program per core. "
                "heatsync does not set the device count itself, because it changes "
                "`jax.devices()` for the whole process."]
    elif sh:
        out += ["", f"The sharded run failed: {sh['error']}"]

    # 2. hall
    out += ["", "## 2. Large hall", "",
            f"{hall['racks']} racks ({hall['rated_it_mw']:.0f} MW rated IT) as one plant, full "
            f"thermal chain: **{hall['x_realtime']:,.0f}x real time** ({hall['steps']} s "
            f"simulated in {hall['wall_s']:.3f} s); target >= {TARGETS['hall_x_realtime']:,}x "
            f"({verdict(hall['x_realtime'], TARGETS['hall_x_realtime'])}). It runs "
            f"{hall['jobs']} jobs of {hall['racks'] // max(hall['jobs'], 1)} racks; the same "
            f"hall as one job of {hall['racks']} racks runs at "
            f"{r['hall_one_job']['x_realtime']:,.0f}x (see section 6)."]

    # 3. envs
    out += ["", "## 3. Environment step latency and vector throughput", "",
            "Single `gymnasium.Env.step` (the env itself, NumPy action in, NumPy/Python out; "
            "random actions), per step over the timed steps after a warm-up:", "",
            "| task | steps timed | median (us) | p99 (us) | CPU per step (us) | target |",
            "|---|---:|---:|---:|---:|---|"]
    for x in lat:
        out.append(f"| {x['task']} | {x['steps']} | {x['median_us']:,.1f} | {x['p99_us']:,.1f} | "
                   f"{x['cpu_us']:,.1f} | median <= {TARGETS['env_step_median_us']:.0f} us: "
                   f"{verdict(x['median_us'], TARGETS['env_step_median_us'], False)} |")
    sb3_note = ("" if any(v["sb3_all"] is not None for v in r["vec"])
                else " (stable-baselines3 not installed: no SB3VecEnv figures)")
    out += ["", f"Vector envs, env-steps/s (N x batch steps / s), episodes of "
            f"{VEC_EPISODE_STEPS} steps with auto-reset, median of {s['repeats']} blocks of "
            f"{s['vec_block_steps']} batch steps{sb3_note}:", "",
            "| task | N | JaxVectorEnv steps/s | per CPU-s | SB3VecEnv, all info | "
            "SB3VecEnv, no info | target |", "|---|---:|---:|---:|---:|---:|---|"]
    for v in r["vec"]:
        tgt = (f">= {TARGETS['vec1024']:,}: {verdict(v['steps_per_s'], TARGETS['vec1024'])}"
               if v["n"] == 1024 else "none (target at 1024)")
        sb = " | ".join("n/a" if v[k] is None else f"{v[k]:,.0f}" for k in ("sb3_all", "sb3_none"))
        out.append(f"| {v['task']} | {v['n']} | {v['steps_per_s']:,.0f} | "
                   f"{v['steps_per_cpu_s']:,.0f} | {sb} | {tgt} |")

    # 4. compile
    c = r["step_cost"]
    tc = TARGETS["compile_s"]
    out += ["", "## 4. Compile time", "",
            "First call minus a warm call (trace + lower + XLA compile) of each task's "
            "`Env.reset` / `Env.step` and of the vector env's; lower + compile for the plant's "
            "`step`.", "",
            "| task | function | compile (s) | target |", "|---|---|---:|---|"]
    for x in lat:
        for fn in ("reset", "step"):
            val = x[f"compile_{fn}_s"]
            out.append(f"| {x['task']} | Env.{fn} | {val:.2f} | <= {tc:.0f} s: "
                       f"{verdict(val, tc, False)} |")
    for v in r["vec"]:
        for fn in ("reset", "step"):
            val = v[f"compile_{fn}_s"]
            out.append(f"| {v['task']} | JaxVectorEnv.{fn}, N = {v['n']} | {val:.2f} | "
                       f"<= {tc:.0f} s: {verdict(val, tc, False)} |")
    out.append(f"| - | plant `step` (physics) | {c['compile_s']:.2f} | <= {tc:.0f} s: "
               f"{verdict(c['compile_s'], tc, False)} |")
    out += ["", f"XLA cost model of one plant control step at batch 1 (the substep scan body "
            f"counted once): {c['flops']:,.0f} flops, {c['transcendentals']:,.0f} "
            f"transcendentals, {c['bytes']:,.0f} bytes accessed."]

    sp = r.get("split")
    if sp:
        out += ["", f"Where the compile time goes ({sp['task']}, AOT on a fresh `jax.jit` of "
                "the entry point, so no cache is reused):", "",
                "| function | trace (s) | lower (s) | XLA compile (s) | StableHLO ops |",
                "|---|---:|---:|---:|---:|"]
        for label, x in (("`drive_step_flat` (Env.step)", sp["single"]),
                         (f"`drive_vstep_flat` (JaxVectorEnv.step, N = {sp['n']})",
                          sp["vector"])):
            out.append(f"| {label} | {x['trace_s']:.2f} | {x['lower_s']:.2f} | "
                       f"{x['compile_s']:.2f} | {x['ops']:,} |")
    out += render_anatomy(r["anatomy"], r["plant"], r.get("untuned"))

    # 5. gradient
    out += ["", "## 5. Gradient of a 1 h rollout", ""]
    if g is None:
        out.append("Skipped with --quick (its compile alone takes about a minute).")
        out += render_breakdown(r)
        out += render_bounds(r)
        return "\n".join(out) + "\n"
    out += [
            f"`{g['scenario']}`, {g['steps']} control intervals ({horizon}), {g['dtype']}: the "
            "energy cost plus junction and supply temperature terms, differentiated (reverse "
            f"mode) with respect to {len(GRAD_PARAMS)} plant parameters and the per-interval "
            "pump speed and supply setpoint, through a `lax.scan` whose per-step body is "
            "`jax.checkpoint`ed (remat). Temp memory is XLA's `memory_analysis()` "
            "`temp_size_in_bytes`.", "",
            "| variant | compile (s) | run (s) | x forward | temp memory (MiB) | finite |",
            "|---|---:|---:|---:|---:|---|"]
    for name, label in (("forward", "forward rollout"), ("grad", "gradient, remat per step")):
        x = g[name]
        out.append(f"| {label} | {x['compile_s']:.2f} | {x['run_s']:.4f} | "
                   f"{x['run_s'] / g['forward']['run_s']:.1f} | {_mib(x['temp_bytes'])} | "
                   f"{x['finite']} |")
    out += ["", f"**Gradient = {g['multiple']:.1f}x the forward rollout** ({horizon} "
            "horizon); target: none set."]
    out += render_breakdown(r)
    out += render_bounds(r)
    return "\n".join(out) + "\n"


# ---- main ------------------------------------------------------------------------------------


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: all four tasks but tiny step counts, 3 repeats, batch 4096 "
                         "skipped, vector envs for one task, gradient over 300 s, 2 compiles "
                         "at a time; figures are noisy (its 19 compiles still take minutes "
                         "on 2 cores)")
    ap.add_argument("--out", type=Path, default=Path("results/PERF.md"),
                    help="where to write the markdown report, written atomically (default: "
                         "results/PERF.md)")
    ap.add_argument("--repeats", type=int, default=None,
                    help="timed repeats (median) of each rollout and vector-env block "
                         "(default 5, or 3 with --quick)")
    ap.add_argument("--jobs", type=int, default=None,
                    help="programs compiled at a time in the warm-up phase (default 1, or 2 "
                         "with --quick); more than 1 is faster on several cores but inflates "
                         "the compile-time figures when the cores are busy")
    ap.add_argument("--probe-untuned", nargs=3, metavar=("TASK", "CALLS", "STEPS"),
                    help=argparse.SUPPRESS)  # what the Untuned subprocess runs
    ap.add_argument("--probe-sharded", nargs=3, metavar=("BATCH", "STEPS", "REPEATS"),
                    help=argparse.SUPPRESS)  # what the ShardedThroughput subprocess runs
    ap.add_argument("--probe-breakdown", nargs=6,
                    metavar=("BATCH", "STEPS", "RACKS", "HALL_STEPS", "TASK", "N"),
                    help=argparse.SUPPRESS)  # what the Breakdown subprocess runs
    ap.add_argument("--grad-steps", type=int, default=None,
                    help="control intervals (1 s each) of the differentiated rollout "
                         "(default 3600 = 1 h, or 300 with --quick)")
    args = ap.parse_args(argv)
    if args.probe_untuned or args.probe_sharded or args.probe_breakdown:
        import json

        if args.probe_untuned:
            task, calls, steps = args.probe_untuned
            print(json.dumps(probe_untuned(task, int(calls), int(steps))))
        elif args.probe_sharded:
            print(json.dumps(probe_sharded(*(int(x) for x in args.probe_sharded))))
        else:
            b, st, racks, hst, task, n = args.probe_breakdown
            print(json.dumps(probe_breakdown(int(b), int(st), int(racks), int(hst), task,
                                             int(n))))
        return 0
    for name in ("repeats", "jobs", "grad_steps"):
        val = getattr(args, name)
        if val is not None and val < 1:
            ap.error(f"--{name.replace('_', '-')}: expected a positive int, got {val}")
    s = settings(args.quick, args.repeats, args.jobs, args.grad_steps)

    t_start = time.perf_counter()
    load0 = loadavg()
    reps = s["repeats"]
    plant = [PlantThroughput(b, s["plant_steps"](b), reps) for b in s["batches"]]
    hall = Hall(s["hall_racks"], s["hall_steps"], reps)
    hall1 = Hall(s["hall_racks"], s["hall_steps"], reps, racks_per_job=s["hall_racks"])
    cost = PlantStepCost()
    lat = [EnvLatency(t, s["latency_steps"], s["latency_warmup"]) for t in s["latency_tasks"]]
    vec = [VecThroughput(t, n, s["vec_block_steps"], reps)
           for t in s["vec_tasks"] for n in s["vec_n"]]
    grad = GradCost(s["grad_steps"], reps) if s["grad_steps"] > 0 else None
    anatomy = StepAnatomy(TASKS[0], s["anatomy_calls"])
    split = None if s["quick"] else CompileSplit(TASKS[-1], max(s["vec_n"]))
    big = max(s["batches"])
    sharded = None if s["quick"] else ShardedThroughput(big, s["plant_steps"](big), reps)
    untuned = None if s["quick"] else Untuned(TASKS[0], s["anatomy_calls"],
                                              s["plant_steps"](1))
    roof = Roof()
    breakdown = None if s["quick"] else Breakdown(big, s["plant_steps"](big), s["hall_racks"],
                                                  s["hall_steps"], TASKS[-1], max(s["vec_n"]))
    benches = [*plant, hall, hall1, cost, roof, *lat, *vec, anatomy,
               *([grad] if grad is not None else []), *([split] if split is not None else [])]

    # warm-up phase: every compile, the longest first
    jobs = sorted((j for b in benches for j in b.jobs()), key=lambda j: -j[0])
    jobs.append((1.0, "import stable_baselines3", _sb3))  # seconds, alongside the compiles
    print(f"warm-up: {len(jobs) - 1} compile jobs, {s['jobs']} at a time ...", flush=True)

    def run(label, fn):
        t0 = time.perf_counter()
        fn()
        print(f"  {label}: {time.perf_counter() - t0:.1f} s", flush=True)

    with concurrent.futures.ThreadPoolExecutor(max_workers=s["jobs"]) as pool:
        for fut in [pool.submit(run, label, fn) for _, label, fn in jobs]:
            fut.result()
    t_warm = time.perf_counter() - t_start
    print(f"warm-up (compiles) done in {t_warm:.0f} s", flush=True)

    # timing phase: one measurement at a time
    r = {"machine": machine(), "plant": [], "latency": [], "vec": [], "quick": s["quick"]}
    for b in plant:
        r["plant"].append(b.measure())
        print(f"batch {b.batch}: {r['plant'][-1]['env_steps_per_s']:,.0f} env-steps/s",
              flush=True)
    r["sharded"] = sharded.measure() if sharded is not None else None
    if sharded is not None:
        print(f"batch {big} sharded: {r['sharded']}", flush=True)
    r["hall"] = hall.measure()
    r["hall_one_job"] = hall1.measure()
    print(f"hall {hall.n_racks} racks: {r['hall']['x_realtime']:,.0f}x real time", flush=True)
    r["step_cost"] = cost.measure()
    for b in lat:
        x = b.measure()
        r["latency"].append(x)
        print(f"{x['task']} Env.step: median {x['median_us']:,.1f} us, p99 "
              f"{x['p99_us']:,.1f} us; compile reset {x['compile_reset_s']:.1f} s, step "
              f"{x['compile_step_s']:.1f} s", flush=True)
    for b in vec:
        x = b.measure()
        r["vec"].append(x)
        print(f"{x['task']} JaxVectorEnv N = {x['n']}: {x['steps_per_s']:,.0f} steps/s",
              flush=True)
    r["anatomy"] = anatomy.measure()
    print(f"{TASKS[0]} step anatomy: call {r['anatomy']['call_us']:,.0f} us = fixed "
          f"{r['anatomy']['fixed_us']:,.0f} + in-loop {r['anatomy']['in_loop_us']:,.0f}",
          flush=True)
    r["split"] = split.measure() if split is not None else None
    r["untuned"] = untuned.measure() if untuned is not None else None
    if untuned is not None:
        print(f"without heatsync's XLA settings: {r['untuned']}", flush=True)
    r["roof"] = roof.measure()
    print(f"operation-count floor: {r['roof']['bound_env_steps_per_s_per_core']:,.0f} "
          "env-steps/s per core", flush=True)
    r["breakdown"] = breakdown.measure() if breakdown is not None else None
    if breakdown is not None:
        print("kernel profiles: " + ("done" if "error" not in r["breakdown"]
                                     else r["breakdown"]["error"]), flush=True)
    r["grad"] = grad.measure() if grad is not None else None
    if grad is not None:
        print(f"gradient: {r['grad']['multiple']:.1f}x the forward rollout", flush=True)
    r["load"] = (load0, loadavg())

    text = render(r, s, time.perf_counter() - t_start)
    write_text_atomic(args.out, text)
    print(text)
    print(f"wrote {args.out} (warm-up {t_warm:.0f} s, total "
          f"{time.perf_counter() - t_start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
