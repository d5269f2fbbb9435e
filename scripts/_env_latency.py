"""Env latency and throughput (to be folded into scripts/perf.py).

Measures, per task:

- single ``gymnasium.Env.step`` latency: the median over ``--steps`` steps after
  a warm-up (episodes long enough never to reset inside the timing);
- batched steps per second (env-steps/s = N x batch steps / s) of the Gymnasium
  ``JaxVectorEnv`` and of the stable-baselines3 ``SB3VecEnv`` (with every info
  key, and with none), at each ``--n``;
- compile time of the first single step and the first batch step.

Wall-clock figures inflate when other processes share the cores; the CPU-time
figures (``time.process_time``, all threads) are printed beside them.

Usage::

    python scripts/_env_latency.py                       # all tasks, N = 64 and 1024
    python scripts/_env_latency.py --tasks PowerSmoothing --n 64 --steps 3000
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import gymnasium
import jax
import numpy as np

import heatsync  # noqa: F401  (registers the ids)
from heatsync.envs import ENV_IDS, JaxVectorEnv, make_task
from heatsync.envs.sb3 import SB3VecEnv

TASKS = [make_task(i).name for i in ENV_IDS]


def single_latency(task: str, steps: int, warmup: int = 100) -> dict:
    env = gymnasium.make(make_task(task).env_id, episode__steps=steps + warmup + 10).unwrapped
    env.action_space.seed(0)
    actions = [env.action_space.sample() for _ in range(64)]
    t0 = time.perf_counter()
    env.reset(seed=0)
    env.step(actions[0])
    compile_s = time.perf_counter() - t0
    for i in range(warmup):
        env.step(actions[i % 64])
    times = np.empty(steps)
    cpu0 = time.process_time()
    for i in range(steps):
        t = time.perf_counter()
        _, _, term, trunc, _ = env.step(actions[i % 64])
        times[i] = time.perf_counter() - t
        if term or trunc:
            env.reset()
    cpu_ms = 1e3 * (time.process_time() - cpu0) / steps
    return {"median_ms": 1e3 * float(np.median(times)), "p90_ms": 1e3 * float(
        np.percentile(times, 90)), "cpu_ms": cpu_ms, "compile_s": compile_s}


def batched_rate(task: str, n: int, batch_steps: int, sb3: bool, info_keys=None) -> dict:
    kw = dict(episode__steps=100)
    if sb3:
        venv = SB3VecEnv(task, n, info_keys=info_keys, **kw)
        space = venv.action_space
    else:
        venv = JaxVectorEnv(task, n, **kw)
        space = venv.single_action_space
    space.seed(0)
    acts = np.stack([space.sample() for _ in range(n)])
    t0 = time.perf_counter()
    if sb3:
        venv.seed(0)
        venv.reset()
        venv.step(acts)
    else:
        venv.reset(seed=0)
        venv.step(acts)
    compile_s = time.perf_counter() - t0
    for _ in range(3):
        venv.step(acts)
    t, c = time.perf_counter(), time.process_time()
    for _ in range(batch_steps):
        venv.step(acts)
    dt, dc = time.perf_counter() - t, time.process_time() - c
    return {"steps_per_s": n * batch_steps / dt, "steps_per_cpu_s": n * batch_steps / dc,
            "ms_per_batch": 1e3 * dt / batch_steps, "compile_s": compile_s}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", nargs="+", default=TASKS, choices=TASKS)
    ap.add_argument("--steps", type=int, default=3000, help="single-env steps timed")
    ap.add_argument("--n", nargs="+", type=int, default=[64, 1024], help="batch sizes")
    ap.add_argument("--batch-steps", type=int, default=30, help="batch steps timed")
    args = ap.parse_args()
    print(f"# env latency - {platform.processor() or platform.machine()}, "
          f"{jax.devices()[0].platform}, jax {jax.__version__}\n")
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores "
          "(wall figures inflate under load; CPU-time figures much less)\n")
    print("| task | single step median (ms) | p90 (ms) | CPU time per step (ms) | "
          "first step incl. compile (s) |")
    print("|---|---|---|---|---|")
    for task in args.tasks:
        r = single_latency(task, args.steps)
        print(f"| {task} | {r['median_ms']:.3f} | {r['p90_ms']:.3f} | {r['cpu_ms']:.3f} | "
              f"{r['compile_s']:.1f} |", flush=True)
    print("\n| task | N | JaxVectorEnv steps/s (per CPU-s) | SB3VecEnv all info | "
          "SB3VecEnv no info | first batch step incl. compile (s) |")
    print("|---|---|---|---|---|---|")
    for task in args.tasks:
        for n in args.n:
            g = batched_rate(task, n, args.batch_steps, sb3=False)
            s = batched_rate(task, n, args.batch_steps, sb3=True)
            s0 = batched_rate(task, n, args.batch_steps, sb3=True, info_keys=())
            cells = " | ".join(f"{x['steps_per_s']:,.0f} ({x['steps_per_cpu_s']:,.0f})"
                               for x in (g, s, s0))
            print(f"| {task} | {n} | {cells} | {g['compile_s']:.1f} |", flush=True)
    print(f"\nload average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
