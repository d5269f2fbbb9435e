"""Probe of where the time goes (section 6): kernel profiles of the batched plant, the
hall and one task's vector step by plant stage and by function
(:mod:`heatsync.perf.profile`), in a subprocess under XLA's defaults."""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp

from heatsync import _xla
from heatsync.envs import JaxVectorEnv, check_action
from heatsync.envs.drive import drive_vstep_flat

from . import profile as hp
from .plant import Hall, PlantThroughput
from .runner import VEC_EPISODE_STEPS, SubprocessProbe, block_rate

__all__ = ["Breakdown", "PROFILE_CALLS"]

PROFILE_CALLS = 3  # calls profiled per program; the shares are of their summed kernel time


def _profile_shares(call: Callable[[], object], hlo: str, keys: dict) -> dict:
    """``kernel_s`` per ``call()`` (over :data:`PROFILE_CALLS` calls) and, for each
    ``keys`` entry ``name: key(op)``, the share of kernel time by key (largest first)."""
    ns, mod = hp.kernel_ns(call, PROFILE_CALLS), hp.Module(hlo)
    total = sum(hp.attribute(ns, mod, lambda op: 0).values())
    out = {"kernel_s": total / 1e9 / PROFILE_CALLS}
    for name, key in keys.items():
        out[name] = {str(k): v / total for k, v in hp.attribute(ns, mod, key).most_common()}
    return out


class Breakdown(SubprocessProbe):
    """Kernel time of the batch-``batch`` plant rollout, the hall and one task's vector step
    by plant stage and by function, in a subprocess under XLA's defaults
    (``HEATSYNC_XLA_TUNING=0``): there every fusion runs as its own kernel, which the
    profiler times; with heatsync's setting a small loop is one kernel."""

    label = "kernel profiles"

    def __init__(self, batch: int, steps: int, hall_racks: int, hall_steps: int, task: str,
                 n: int):
        super().__init__(batch, steps, hall_racks, hall_steps, task, n)

    def environ(self) -> dict:
        return _xla.untuned_environ()

    def run(self) -> dict:
        batch, steps, hall_racks, hall_steps, task, n = self.args
        if _xla.loops_as_one_kernel():
            return {"error": "loops run as one kernel here; the profile would see only the loop"}
        plant_keys = {"stages": lambda op: hp.stage(op.op_name),
                      "functions": lambda op: hp.function(op.stack),
                      "lockstep": lambda op: hp.is_lockstep(op.op_name)}
        out = {"settings": _xla.status(), "calls": PROFILE_CALLS}
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
        rngs, sbufs, pbufs = venv.buffers
        # the program venv.step runs (same static arguments and shapes, so the same
        # kernel names), compiled again for its HLO text
        hlo = drive_vstep_flat.lower(*venv.entry.static, venv.mode, rngs, sbufs, acts, pbufs,
                                     jnp.zeros(n, bool)).compile().as_text()
        _, _, per_step = block_rate(lambda: venv.step(acts), n, 10, 3)
        out["vector"] = {"task": task, "n": n, "wall_s": per_step,
                         **_profile_shares(lambda: venv.step(acts), hlo,
                                           {"parts": hp.part,
                                            "stages": lambda op: hp.stage(op.op_name)})}
        venv.close()
        return out

    def summary(self, r: dict) -> str:
        return "kernel profiles: " + ("done" if "error" not in r else r["error"])
