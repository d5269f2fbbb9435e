"""Cost of differentiating a rollout: gradient wall time as a multiple of a forward rollout,
and the memory XLA plans for it, with and without rematerialization of the scan body
(section 5 of the report: the :class:`GradCost` probe; and a command line of its own).

Variants (all jitted, warmed up once, then the median of ``--repeats`` runs):

* ``forward``: the cost of one rollout (``heatsync.physics.rollout``);
* ``grad rollout``: reverse mode through ``rollout`` (every substep's residuals kept);
* ``grad scan``: reverse mode through our own ``lax.scan`` over ``heatsync.physics.step``
  (same computation, to compare with the next);
* ``grad scan+remat``: the same with ``jax.checkpoint`` on the per-step body: only the
  state carried between control intervals is stored; the backward pass recomputes each
  interval's substeps;
* ``jvp x5`` (with ``--jvp``): forward mode, five tangents at once (what
  :func:`heatsync.physics.calibrate` uses for its Jacobian).

The cost is the chiller-trip hour's energy cost plus small junction and supply temperature
terms; gradients are with respect to five plant parameters and the per-interval pump
speed and supply setpoint (2 x ``steps`` actions). Memory is XLA's compiled
``memory_analysis()``: the temporary buffers a call needs beyond its arguments and
outputs (its peak working set), for the given horizon and, with ``--scaling``, for shorter
ones to show how it grows.

Run::

    python -m heatsync.perf.grad                  # 1 h, float32, 5 repeats
    python -m heatsync.perf.grad --x64 --jvp --scaling
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from heatsync.physics import exogenous_at, init_state, load_scenario, replace, rollout, step

from .runner import aot, temp_bytes, timed

__all__ = ["PARAMS", "build", "GradCost", "main"]

#: the plant parameters the gradient is taken with respect to (besides the actions)
PARAMS = ("coldplate.r_gpu_k_per_w", "cdu.ua_w_per_k", "cdu.pump_rated_w", "ultracap.e_max_j",
          "rejection.eta_ii")


def _with_params(p, theta):
    for i, name in enumerate(PARAMS):
        group, field = name.split(".")
        p = replace(p, **{group: replace(getattr(p, group), **{field: theta[i]})})
    return p


def _cost(series):
    """Scalar cost of a rollout's series (USD plus 0.01 per degC-interval)."""
    return (jnp.sum(series["cost_energy_usd"]) + 0.01 * jnp.sum(series["t_junction_max_c"])
            + 0.01 * jnp.sum(series["t_supply_max_c"]))


def build(scenario: str, steps: int):
    """Cost functions of ``(theta (5,), pump (steps,), setpoint (steps,))`` and their inputs.

    **Returns**: ``(fns, args)``: a dict name -> function, and the argument tuple.
    """
    sc = load_scenario(scenario)
    p0, key = sc.params, jax.random.PRNGKey(0)
    setpoint0 = float(sc.control.supply_setpoint_c)
    held = jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (steps,) + jnp.shape(x)),
                                  sc.control)

    def inputs(theta, pump, setpoint):
        p = _with_params(p0, theta)
        acts = replace(held, pump_speed=pump, supply_setpoint_c=setpoint)
        return p, acts, init_state(p, sc.jobs, setpoint_c=setpoint0)

    def via_rollout(theta, pump, setpoint):
        p, acts, s0 = inputs(theta, pump, setpoint)
        _, series = rollout(p, sc.exo, s0, key, acts, steps)
        return _cost(series)

    def via_scan(theta, pump, setpoint, remat=False):
        p, acts, s0 = inputs(theta, pump, setpoint)

        def body(s, a):
            exo = exogenous_at(sc.exo, key, s.t_s, p.dt_s)
            s2, out = step(p, s, a, exo)
            return s2, {k: out[k] for k in ("cost_energy_usd", "t_junction_max_c",
                                            "t_supply_max_c")}

        if remat:
            body = jax.checkpoint(body)
        _, series = jax.lax.scan(body, s0, acts)
        return _cost(series)

    def jvp5(theta, pump, setpoint):
        f = lambda th: via_rollout(th, pump, setpoint)  # noqa: E731
        return jax.vmap(lambda t: jax.jvp(f, (theta,), (t,))[1])(jnp.eye(5, dtype=theta.dtype))

    argnums = (0, 1, 2)
    fns = {
        "forward": via_rollout,
        "grad rollout": jax.grad(via_rollout, argnums=argnums),
        "grad scan": jax.grad(via_scan, argnums=argnums),
        "grad scan+remat": jax.grad(lambda *a: via_scan(*a, remat=True), argnums=argnums),
        "jvp x5": jvp5,
    }
    f = jnp.result_type(float)
    theta = jnp.asarray([float(np.mean(getattr(getattr(p0, n.split(".")[0]), n.split(".")[1])))
                         for n in PARAMS], f)
    args = (theta, jnp.full((steps,), 0.8, f), jnp.full((steps,), setpoint0, f))
    return fns, args


def measure(fn, args, repeats: int) -> dict:
    """Compile (timed), warm up, then the median wall time of ``repeats`` calls."""
    compiled, t_compile = aot(fn, *args)
    jax.block_until_ready(compiled(*args))  # warm-up
    times, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {"compile_s": t_compile, "median_s": statistics.median(times),
            "cpu_s": statistics.median(cpu), "min_s": min(times),
            "temp_bytes": temp_bytes(compiled), "finite": _finite(out)}


def _finite(tree) -> bool:
    return all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree_util.tree_leaves(tree))


class GradCost:
    """Forward rollout vs its gradient (``chiller-trip``, ``steps`` intervals): wall time,
    compile time and XLA's planned temporary memory. The gradient is ``build``'s
    ``grad scan+remat``: reverse mode through a ``lax.scan`` whose per-step body is
    rematerialized (``jax.checkpoint``)."""

    scenario = "chiller-trip"
    weight = 14.0  # the gradient's compile (10) and the forward's (4)
    label = "forward rollout and its gradient"

    def __init__(self, steps: int, repeats: int):
        self.steps, self.repeats = steps, repeats
        fns, self.args = build(self.scenario, steps)
        self.fns = {"forward": fns["forward"], "grad": fns["grad scan+remat"]}
        self.compiled: dict = {}

    def prepare(self):
        for name, fn in self.fns.items():
            compiled, comp = aot(fn, *self.args)
            res = jax.block_until_ready(compiled(*self.args))
            self.compiled[name] = {"fn": compiled, "compile_s": comp,
                                   "temp_bytes": temp_bytes(compiled), "finite": _finite(res)}

    def measure(self) -> dict:
        out = {"scenario": self.scenario, "steps": self.steps,
               "dtype": str(jnp.result_type(float)), "n_params": len(PARAMS)}
        for name in ("forward", "grad"):
            c = self.compiled[name]
            wall = timed(lambda fn=c["fn"]: fn(*self.args), self.repeats)
            out[name] = {"run_s": wall, **{k: c[k] for k in ("compile_s", "temp_bytes",
                                                             "finite")}}
        out["multiple"] = out["grad"]["run_s"] / out["forward"]["run_s"]
        return out

    def summary(self, r: dict) -> str:
        return f"gradient: {r['multiple']:.1f}x the forward rollout"


def _mib(b) -> str:
    return "n/a" if b is None else f"{b / 2**20:9.1f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenario", default="chiller-trip", help="bundled scenario name or path")
    ap.add_argument("--steps", type=int, default=3600, help="control intervals (1 s each)")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per variant (median)")
    ap.add_argument("--x64", action="store_true", help="float64 (default float32)")
    ap.add_argument("--jvp", action="store_true", help="also time forward mode, 5 tangents")
    ap.add_argument("--no-plain", action="store_true",
                    help="skip 'grad scan' (it repeats 'grad rollout' without remat)")
    ap.add_argument("--scaling", action="store_true",
                    help="also compile the gradients at 1/4 and 1/2 of the horizon and report "
                         "their temporary memory")
    args = ap.parse_args(argv)
    jax.config.update("jax_enable_x64", args.x64)

    fns, fargs = build(args.scenario, args.steps)
    names = ["forward", "grad rollout", "grad scan", "grad scan+remat"]
    if args.no_plain:
        names.remove("grad scan")
    if args.jvp:
        names.append("jvp x5")
    print(f"{args.scenario}, {args.steps} steps x {fargs[0].dtype}, backend "
          f"{jax.default_backend()}, {jax.device_count()} device(s); median of "
          f"{args.repeats}")
    res = {}
    for name in names:
        res[name] = measure(fns[name], fargs, args.repeats)
        r = res[name]
        print(f"  {name:<16} compile {r['compile_s']:6.1f} s  run {r['median_s']:7.3f} s "
              f"(cpu {r['cpu_s']:7.3f} s)  temp {_mib(r['temp_bytes'])} MiB  "
              f"finite {r['finite']}", flush=True)
    fwd, fwd_cpu = res["forward"]["median_s"], res["forward"]["cpu_s"]
    print(f"\n{'variant':<16}  {'x forward':>9}  {'x fwd cpu':>9}  {'temp MiB':>9}  "
          f"{'bytes/step':>10}")
    for name in names:
        r = res[name]
        per = "n/a" if r["temp_bytes"] is None else f"{r['temp_bytes'] / args.steps:10.0f}"
        print(f"{name:<16}  {r['median_s'] / fwd:9.2f}  {r['cpu_s'] / fwd_cpu:9.2f}  "
              f"{_mib(r['temp_bytes'])}  {per:>10}")
    if hasattr(os, "getloadavg"):
        print(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} "
              f"cores (other processes inflate wall times; the cpu column is this process)")
    if args.scaling:
        print("\ntemporary memory (MiB) against horizon:")
        grads = [n for n in names if n.startswith("grad")] + ["forward"]
        print(f"{'steps':>7}  " + "  ".join(f"{n:>16}" for n in grads))
        for steps in (args.steps // 4, args.steps // 2, args.steps):
            fs, a = build(args.scenario, steps)
            row = [res[n]["temp_bytes"] if steps == args.steps else
                   temp_bytes(aot(fs[n], *a)[0]) for n in grads]
            print(f"{steps:>7}  " + "  ".join(f"{_mib(b):>16}" for b in row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
