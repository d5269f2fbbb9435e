"""Probes of the bare plant (no env around it): the batched rollout's throughput, the
same batch sharded over one CPU device per core, a large hall, the compile time and
cost model of ``step``, and the operation-count floor of one substep (sections 1, 2, 4
and 6 of the report)."""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from heatsync.physics import (
    clip_action,
    exogenous_at,
    load_scenario,
    rollout,
    step,
    substep,
)

from . import profile as hp
from .runner import SubprocessProbe, aot, cores, tile, timed, xla_cost

__all__ = ["PlantThroughput", "ShardedThroughput", "hall_scenario", "Hall", "PlantStepCost",
           "Roof"]


def _batched_rollout(steps: int):
    """``keys (B, 2) -> final states``: ``default`` rolled out ``steps`` intervals under
    fixed actions, vmapped over the keys, nothing recorded."""
    sc = load_scenario("default")
    s0 = sc.init_state()
    acts = tile(sc.control, steps)
    return jax.vmap(lambda k: rollout(sc.params, sc.exo, s0, k, acts, steps, record=False)[0])


class PlantThroughput:
    """Env-steps/s of ``batch`` plants (``default``) in one jitted vmapped rollout."""

    weight = 4.0

    def __init__(self, batch: int, steps: int, repeats: int):
        self.batch, self.steps, self.repeats = batch, steps, repeats
        self.label = f"plant rollout, batch {batch}"

    def prepare(self):
        self.keys = jax.random.split(jax.random.PRNGKey(0), self.batch)
        self.fn, self.compile_s = aot(_batched_rollout(self.steps), self.keys)
        jax.block_until_ready(self.fn(self.keys))

    def measure(self) -> dict:
        wall = timed(lambda: self.fn(self.keys), self.repeats)
        return {"batch": self.batch, "steps": self.steps, "wall_s": wall,
                "compile_s": self.compile_s, "env_steps_per_s": self.batch * self.steps / wall}

    def summary(self, r: dict) -> str:
        return f"batch {r['batch']}: {r['env_steps_per_s']:,.0f} env-steps/s"


class ShardedThroughput(SubprocessProbe):
    """Batch ``batch`` of :class:`PlantThroughput` split over one CPU device per core
    (``jax_num_cpu_devices``, ``shard_map``), in a subprocess: the device count is a
    process-wide setting that must precede JAX's backend. One XLA CPU program uses
    the cores poorly for this many small kernels; one program per core does not."""

    def __init__(self, batch: int, steps: int, repeats: int):
        super().__init__(batch, steps, repeats)
        self.label = f"batch {batch} sharded"

    def run(self) -> dict:
        from jax.sharding import Mesh, NamedSharding
        from jax.sharding import PartitionSpec as P

        batch, steps, repeats = self.args
        jax.config.update("jax_num_cpu_devices", cores())  # before any JAX work
        devices = jax.devices()
        if batch % len(devices):
            devices = devices[:1]
        mesh = Mesh(np.asarray(devices), ("b",))
        keys = jax.device_put(jax.random.split(jax.random.PRNGKey(0), batch),
                              NamedSharding(mesh, P("b")))
        fn = jax.jit(jax.shard_map(_batched_rollout(steps), mesh=mesh, in_specs=P("b"),
                                   out_specs=P("b"), check_vma=False))
        jax.block_until_ready(fn(keys))
        wall = timed(lambda: fn(keys), repeats)
        return {"batch": batch, "steps": steps, "devices": len(devices), "wall_s": wall,
                "env_steps_per_s": batch * steps / wall}


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
        self.label = f"hall rollout, {n_racks} racks, jobs of {racks_per_job}"

    def prepare(self):
        sc = hall_scenario(self.n_racks, self.racks_per_job)
        self.n_jobs = int(sc.params.n_jobs)
        s0 = sc.init_state()
        acts = tile(sc.control, self.steps)
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

    def summary(self, r: dict) -> str:
        return (f"hall {r['racks']} racks, {r['jobs']} jobs: {r['x_realtime']:,.0f}x "
                "real time")


def _step_inputs():
    """``(params, state, action, exogenous inputs)`` of ``default``'s first interval."""
    sc = load_scenario("default")
    p, s = sc.params, sc.init_state()
    return p, s, sc.control, exogenous_at(sc.exo, jax.random.PRNGKey(0), 0.0, p.dt_s)


class PlantStepCost:
    """Compile time of the plant's ``step`` and XLA's cost model of one control step."""

    weight = 3.0
    label = "plant step"

    def prepare(self):
        compiled, self.compile_s = aot(step, *_step_inputs())
        self.cost = xla_cost(compiled)

    def measure(self) -> dict:
        return {"compile_s": self.compile_s, **self.cost}

    def summary(self, r: dict) -> None:
        return None


class Roof:
    """The batched plant's operation-count bound on this machine: XLA's cost model of
    one substep (batch 1: flops, transcendentals and bytes per env; the transcendentals
    by function, from the compiled HLO) and the rates this machine's XLA reaches in a
    fused element-wise loop over a (4096, 8) array (arithmetic, and exp/log), one core."""

    weight = 2.0
    label = "operation-count roof"
    LOOP = 200

    def prepare(self):
        p, s, control, exo = _step_inputs()
        a = clip_action(p, control)
        # physics.substep: step's scan body, compiled alone
        sub, _ = aot(lambda a, exo, s, k: substep(p, a, exo, a.uc_target_w, a.ups_target_w,
                                                  s, k),
                     a, exo, s, jnp.zeros((), jnp.float32))
        self.n_sub = int(p.n_sub)
        self.cost = xla_cost(sub)
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
            per_iter = xla_cost(aot(body, 0, x)[0])
            fn, _ = aot(lambda y, body=body: jax.lax.fori_loop(0, self.LOOP, body, y), x)
            jax.block_until_ready(fn(x))
            self.loops[name] = (fn, per_iter)

    def measure(self) -> dict:
        size = self.x.size
        t = {}
        for name, (fn, c) in self.loops.items():
            c0, w0 = time.process_time(), time.perf_counter()
            wall = timed(lambda fn=fn: fn(self.x), 7)
            busy = (time.process_time() - c0) / (time.perf_counter() - w0)
            t[name] = (wall / (self.LOOP * size), c, busy)
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

    def summary(self, r: dict) -> str:
        return (f"operation-count floor: {r['bound_env_steps_per_s_per_core']:,.0f} "
                "env-steps/s per core")
