"""Probe of the batched faces: ``JaxVectorEnv`` (and stable-baselines3's ``SB3VecEnv``
when installed) steps/s and the vector env's compile times (sections 3 and 4)."""

from __future__ import annotations

import time

import numpy as np

from heatsync.envs import JaxVectorEnv

from .runner import VEC_EPISODE_STEPS, SubprocessProbe, block_rate

__all__ = ["VecThroughput", "sb3_vec_env"]


def sb3_vec_env():
    """``SB3VecEnv``, or ``None`` without stable-baselines3."""
    try:
        from heatsync.envs.sb3 import SB3VecEnv
    except ImportError:
        return None
    return SB3VecEnv


class VecThroughput(SubprocessProbe):
    """Steps/s of ``JaxVectorEnv`` (and ``SB3VecEnv``, all info keys and none) for one task
    at N envs, episodes of :data:`~heatsync.perf.runner.VEC_EPISODE_STEPS` (auto-resets
    inside the timing).

    Each runs in a child process: its six programs (three vector envs' reset and step)
    map about 5,000 memory regions, and with every probe in one process XLA:CPU's LLVM
    reached the kernel's ``vm.max_map_count`` (65,530 here) and failed with "LLVM
    compilation error: Cannot allocate memory" (a count of ``/proc/<pid>/maps`` during
    a full run: +5,000 per vector-env probe)."""

    timeout_s = 900.0

    def __init__(self, task: str, n: int, block_steps: int, blocks: int):
        super().__init__(task, n, block_steps, blocks)
        self.task, self.n, self.block_steps, self.blocks = task, n, block_steps, blocks
        self.label = f"{task} JaxVectorEnv N = {n}"

    def run(self) -> dict:
        self._compile()
        return self._time()

    def _compile(self):
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
        # SB3VecEnv runs the vector env in SAME_STEP mode, its own program: compiled here
        self.sb3 = {}
        sb3 = sb3_vec_env()
        if sb3 is not None:
            for key, info_keys in (("sb3_all", None), ("sb3_none", ())):
                senv = sb3(self.task, self.n, info_keys=info_keys,
                           episode__steps=VEC_EPISODE_STEPS)
                senv.seed(0)
                senv.reset()
                senv.step(self.acts)
                self.sb3[key] = senv

    def _time(self) -> dict:
        venv, acts, n = self.venv, self.acts, self.n
        t0 = time.perf_counter()
        venv.reset(seed=0)
        warm_reset = time.perf_counter() - t0
        rate, rate_cpu, per_step = block_rate(lambda: venv.step(acts), n, self.block_steps,
                                              self.blocks)
        venv.close()
        out = {"task": self.task, "n": n, "steps_per_s": rate, "steps_per_cpu_s": rate_cpu,
               "compile_reset_s": self.first_reset_s - warm_reset,
               "compile_step_s": self.first_step_s - per_step, "sb3_all": None, "sb3_none": None}
        for key, senv in self.sb3.items():
            senv.seed(0)
            senv.reset()
            out[key] = block_rate(lambda e=senv: e.step(acts), n, self.block_steps,
                                  self.blocks)[0]
            senv.close()
        return out

    def summary(self, x: dict) -> str:
        if "error" in x:
            return f"{self.label}: failed ({x['error'][-300:]})"
        return f"{x['task']} JaxVectorEnv N = {x['n']}: {x['steps_per_s']:,.0f} steps/s"
