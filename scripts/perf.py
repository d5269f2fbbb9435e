"""Measure heatsync's speed on this machine and write results/PERF.md.

Figures (each the median of repeats after a warm-up; compile time excluded
except where it is the figure):

* batched plant throughput (env-steps/s, dt = 1 s, 10 substeps, ``default``)
  from a jitted, vmapped ``lax.scan`` rollout at several batch sizes;
* a large hall: 800 racks (~100 MW) as one plant, simulated s per wall s;
* compile time of the plant's ``step`` (and of each env's reset / step when
  the envs are installed);
* the XLA cost model of one substep (flops, transcendentals, bytes), which
  says where the time goes.

Usage::

    python scripts/perf.py            # full run, writes results/PERF.md
    python scripts/perf.py --quick    # < 1 min, smaller repeats
    python scripts/perf.py --out /tmp/PERF.md
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from heatsync.__main__ import write_atomic
from heatsync.physics import exogenous_at, load_scenario, rollout, step

TARGETS = {
    "batch4096": 1_000_000,  # env-steps/s
    "hall_x_realtime": 10_000,
    "gym_step_median_us": 50.0,
    "vec1024": 200_000,
    "compile_s": 10.0,
}


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
    vers = {"python": platform.python_version(), "jax": jax.__version__,
            "jaxlib": jax.lib.__version__ if hasattr(jax.lib, "__version__") else "?",
            "numpy": np.__version__}
    for mod in ("gymnasium", "stable_baselines3", "torch"):
        try:
            vers[mod] = __import__(mod).__version__
        except ImportError:
            pass
    return {"cpu": cpu, "cores": cores, "backend": jax.default_backend(),
            "devices": str(jax.devices()), "versions": vers}


def timed(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn()`` (blocked until ready) over ``repeats`` calls."""
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def _tile(tree, n):
    return jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (n,) + jnp.shape(x)), tree)


def plant_throughput(batch: int, steps: int, repeats: int) -> dict:
    sc = load_scenario("default")
    s0 = sc.init_state()
    acts = _tile(sc.control, steps)
    keys = jax.random.split(jax.random.PRNGKey(0), batch)
    fn = jax.jit(jax.vmap(lambda k: rollout(sc.params, sc.exo, s0, k, acts, steps,
                                            record=False)[0]))
    t0 = time.perf_counter()
    jax.block_until_ready(fn(keys))
    first = time.perf_counter() - t0
    wall = timed(lambda: fn(keys), repeats)
    return {"batch": batch, "steps": steps, "wall_s": wall, "compile_s": first - wall,
            "env_steps_per_s": batch * steps / wall}


def hall(n_racks: int, steps: int, repeats: int) -> dict:
    n_jobs = n_racks // 50
    jobs = [{"racks": list(range(j * 50, (j + 1) * 50)), "period_s": 1.5 + 0.25 * (j % 8),
             "duty": 0.55, "phase_offset": (j * 0.37) % 1.0} for j in range(n_jobs)]
    sc = load_scenario("default", plant={"n_racks": n_racks, "n_jobs": n_jobs,
                                         "ups": {"e_max_j": 5.4e8 * n_racks / 8,
                                                 "p_max_w": 1.5e6 * n_racks / 8},
                                         "grid": {"contract_limit_w": 1.5e6 * n_racks / 8},
                                         "cdu": {"flow_rated_kg_s": 26.0 * n_racks / 8,
                                                 "pump_rated_w": 5000.0 * n_racks / 8,
                                                 "ua_w_per_k": 2.5e5 * n_racks / 8,
                                                 "fw_flow_w_per_k": 1.1e5 * n_racks / 8,
                                                 "c_loop_j_per_k": 3e6 * n_racks / 8},
                                         "rejection": {"c_fw_j_per_k": 2e7 * n_racks / 8,
                                                       "g_dry_w_per_k": 2.4e5 * n_racks / 8,
                                                       "q_dry_max_w": 1.5e6 * n_racks / 8,
                                                       "q_chiller_max_w": 1.5e6 * n_racks / 8}},
                       jobs=jobs)
    s0 = sc.init_state()
    acts = _tile(sc.control, steps)
    fn = jax.jit(lambda k: rollout(sc.params, sc.exo, s0, k, acts, steps, record=False)[0])
    key = jax.random.PRNGKey(0)
    jax.block_until_ready(fn(key))
    wall = timed(lambda: fn(key), repeats)
    it_mw = float(n_racks * (sc.params.gpu.n_gpu * sc.params.gpu.p_max_w
                             + sc.params.gpu.p_other_w)) / 1e6
    return {"racks": n_racks, "rated_it_mw": it_mw, "steps": steps, "wall_s": wall,
            "x_realtime": steps * float(sc.params.dt_s) / wall}


def step_compile_and_cost() -> dict:
    sc = load_scenario("default")
    p, s = sc.params, sc.init_state()
    exo = exogenous_at(sc.exo, jax.random.PRNGKey(0), 0.0, p.dt_s)
    t0 = time.perf_counter()
    compiled = jax.jit(step).lower(p, s, sc.control, exo).compile()
    comp = time.perf_counter() - t0
    ca = compiled.cost_analysis()
    ca = ca[0] if isinstance(ca, list) else ca
    return {"compile_s": comp, "flops": ca.get("flops", float("nan")),
            "transcendentals": ca.get("transcendentals", float("nan")),
            "bytes": ca.get("bytes accessed", float("nan"))}


def env_figures(quick: bool) -> dict | None:
    """Env latency, VecEnv throughput and env compile times, when heatsync.envs provides
    a ``perf`` hook (added with the environments)."""
    try:
        from heatsync.envs import perf as env_perf  # type: ignore[attr-defined]
    except ImportError:
        return None
    return env_perf.measure(quick=quick)


def mark(value: float, target: float, higher_is_better: bool = True) -> str:
    ok = value >= target if higher_is_better else value <= target
    return "meets" if ok else f"{value / target:.2g}x of target" if higher_is_better else \
        f"{value / target:.2g}x the target"


def render(m: dict, plant: list[dict], hall_r: dict, comp: dict, env: dict | None,
           quick: bool, wall_s: float) -> str:
    v = m["versions"]
    out = ["# heatsync performance", "",
           f"Produced by `python scripts/perf.py{' --quick' if quick else ''}` in {wall_s:.0f} s. "
           "Medians of repeats after warm-up; compile excluded unless stated.", "",
           f"- CPU: {m['cpu']}, {m['cores']} cores available",
           f"- JAX backend: {m['backend']} ({m['devices']})",
           "- versions: " + ", ".join(f"{k} {val}" for k, val in v.items()), "",
           "## Batched plant (`default`, dt = 1 s, 10 substeps, jitted vmapped scan)", "",
           "| batch | steps | wall (s) | env-steps/s | target |", "|---:|---:|---:|---:|---|"]
    for r in plant:
        tgt = ""
        if r["batch"] == 4096:
            tgt = f"1,000,000 ({mark(r['env_steps_per_s'], TARGETS['batch4096'])})"
        out.append(f"| {r['batch']} | {r['steps']} | {r['wall_s']:.3f} | "
                   f"{r['env_steps_per_s']:,.0f} | {tgt} |")
    out += ["", "## Large hall", "",
            f"{hall_r['racks']} racks ({hall_r['rated_it_mw']:.0f} MW rated IT) as one plant, "
            f"full thermal chain: **{hall_r['x_realtime']:,.0f} x real time** "
            f"({hall_r['steps']} s simulated in {hall_r['wall_s']:.2f} s); target 10,000 x "
            f"({mark(hall_r['x_realtime'], TARGETS['hall_x_realtime'])}).", "",
            "## Compile and cost model", "",
            f"- plant `step` compile: {comp['compile_s']:.2f} s (target <= 10 s: "
            f"{mark(comp['compile_s'], TARGETS['compile_s'], higher_is_better=False)})",
            f"- XLA cost model of one control step at batch 1 (the substep scan body counted "
            f"once): {comp['flops']:,.0f} flops, {comp['transcendentals']:,.0f} "
            f"transcendentals, {comp['bytes']:,.0f} bytes accessed"]
    if env is not None:
        out += ["", "## Environments", "", env["markdown"]]
    else:
        out += ["", "## Environments", "", "heatsync.envs has no `perf` hook in this build: "
                "no env figures."]
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small repeats; under a minute")
    ap.add_argument("--out", type=Path, default=Path("results/PERF.md"),
                    help="where to write the markdown report")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    reps = 2 if args.quick else 5
    m = machine()
    batches = (1, 64, 1024) if args.quick else (1, 64, 256, 1024, 4096)
    plant = []
    for b in batches:
        steps = max(20, min(2000, 400_000 // (b * 10))) if not args.quick else 20
        plant.append(plant_throughput(b, steps, reps))
        print(f"batch {b}: {plant[-1]['env_steps_per_s']:,.0f} env-steps/s", flush=True)
    hall_r = hall(800 if not args.quick else 200, 200 if not args.quick else 20, reps)
    print(f"hall {hall_r['racks']} racks: {hall_r['x_realtime']:,.0f} x real time", flush=True)
    comp = step_compile_and_cost()
    env = env_figures(args.quick)
    text = render(m, plant, hall_r, comp, env, args.quick, time.perf_counter() - t0)
    write_atomic(args.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
