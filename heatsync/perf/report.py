"""The report: every line of markdown ``PERF.md`` holds, rendered from a run's results
(the dicts the probes' ``measure`` returned, keyed as :func:`heatsync.perf.cli.run`
collects them) and its settings. Sections 6 and 7 come from
:mod:`heatsync.perf.diagnosis`."""

from __future__ import annotations

import time

from .diagnosis import render_bounds, render_breakdown
from .runner import TARGETS, VEC_EPISODE_STEPS

__all__ = ["render", "render_anatomy", "verdict"]


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
        "the whole step as one XLA kernel (`envs.drive.one_kernel`). The same step body "
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



def training_targets(t: dict | None) -> list[str]:
    """The trainer's rows of the targets table (section 8)."""
    if not t:
        return []
    if "error" in t:
        return [f"| training, ppo-jax (learning included) | failed | >= "
                f"{TARGETS['train_steps_per_s']:,} env-steps/s | not measured |"]
    ps, sb3 = t["ppo_jax"], t["sb3_ppo"]
    if ps.get("skipped"):
        return []
    v, tgt = ps["steps_per_s"], TARGETS["train_steps_per_s"]
    rows = [f"| training, ppo-jax on {ps['task']} (learning included) | {v:,.0f} env-steps/s "
            f"| >= {tgt:,} env-steps/s | {verdict(v, tgt)} |"]
    if not sb3.get("skipped"):
        ratio, tr = v / sb3["steps_per_s"], TARGETS["train_vs_sb3"]
        rows.append(f"| training, ppo-jax / SB3 PPO on {ps['task']}, this run | {ratio:.1f}x | "
                    f">= {tr:.0f}x | {verdict(ratio, tr)} |")
    return rows


def render_training(t: dict | None) -> list[str]:
    """Section 8: training throughput (:mod:`heatsync.perf.train`)."""
    if not t:
        return []
    out = ["", "## 8. Training throughput", "",
           "Whole compiled chunks of PPO updates (rollout, GAE, epochs, minibatches: learning "
           "included; the run driver's held-out evaluation and logging excluded), median of "
           "repeats after a warm-up call. *In the env steps*: the same chunk's auto-resetting "
           "vmapped env steps alone (one fixed action, no policy: "
           "`heatsync.train.ppo_jax.PPO.env_chunk`) over the whole chunk's time; the rest is "
           "the policy's forward passes, GAE and the updates. SB3 PPO: `model.learn` over "
           "whole rollouts with the bundled `configs/hyperparams/ppo.yml` and "
           "`scripts/train.py`'s VecEnv stack; *in the env*: time inside the jitted vector "
           "env's steps (`StepTimer`).", "",
           "They run in a child process of their own (`heatsync.perf.train.TrainingThroughput`"
           ": with every probe's programs in one process XLA:CPU ran out of memory maps).", "",
           "| trainer | task | envs x steps | epochs x minibatches | network | env steps timed "
           "| env-steps/s | in the env steps | compile (s) |",
           "|---|---|---:|---:|---|---:|---:|---:|---:|"]
    if "error" in t:
        return out + ["", f"The child process failed: {t['error'][-2000:]}"]
    ps = t["ppo_jax"]
    for x in (ps, t["pendulum"]):
        if x.get("skipped"):
            out.append(f"| ppo-jax | {x['task']} | - | - | - | - | skipped: {x['skipped']} "
                       "| - | - |")
            continue
        out.append(f"| ppo-jax | {x['task']} | {x['n_envs']} x {x['n_steps']} | "
                   f"{x['n_epochs']} x {x['n_minibatches']} | "
                   f"{' x '.join(str(h) for h in x['net_arch'])} tanh | "
                   f"{x['steps_per_chunk']:,} | {x['steps_per_s']:,.0f} | "
                   f"{100 * x['plant_share']:.0f} % | {x['compile_s']:.1f} |")
    sb3 = t["sb3_ppo"]
    if sb3.get("skipped"):
        out.append(f"| SB3 PPO | {sb3['task']} | - | - | - | - | skipped: {sb3['skipped']} "
                   "| - | - |")
    else:
        out.append(f"| SB3 PPO | {sb3['task']} | {sb3['n_envs']} x {sb3['n_steps']} | "
                   "(ppo.yml) | 64 x 64 tanh | "
                   f"{sb3['steps']:,} | {sb3['steps_per_s']:,.0f} | "
                   f"{100 * sb3['env_share']:.0f} % | - |")
    if ps.get("skipped"):
        return out
    lines = []
    if not sb3.get("skipped"):
        ratio = ps["steps_per_s"] / sb3["steps_per_s"]
        lines.append(f"ppo-jax / SB3 PPO on {ps['task']}: **{ratio:.1f}x**")
    pen = t["pendulum"]
    if not pen.get("skipped"):
        lines.append(f"ppo-jax on {ps['task']} / the same trainer on gymnax Pendulum with "
                     f"PureJaxRL's settings: {ps['steps_per_s'] / pen['steps_per_s']:.2f}x "
                     "(Pendulum's network is 256 x 256 and its minibatches 32; its env "
                     "is almost free, so its figure is nearly all learning)")
    lines.append(f"ppo-jax on {ps['task']}: the env steps alone run at "
                 f"{ps['env_steps_per_s']:,.0f} env-steps/s, "
                 f"{100 * ps['plant_share']:.0f} % of the chunk's time")
    out += [""] + [f"- {x}." for x in lines]
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

    out += training_targets(r.get("train"))

    # machine
    out += ["", "## Machine", "",
            f"- CPU: {m['cpu']}, {m['cores']} cores available",
            f"- JAX backend: {m['backend']} ({m['devices']})",
            f"- heatsync's XLA:CPU settings (`heatsync/_xla.py`): {m['xla_settings']}",
            "- versions: " + ", ".join(f"{k} {val}" for k, val in m["versions"].items())]
    if la0 is not None:
        out.append(f"- load average (1 min): {la0:.1f} at the start, {la1:.1f} at the end, on "
                   f"{m['os_cpus']} cores (other processes inflate wall times; the CPU-time "
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
        out += render_training(r.get("train"))
        return "\n".join(out) + "\n"
    out += [
            f"`{g['scenario']}`, {g['steps']} control intervals ({horizon}), {g['dtype']}: the "
            "energy cost plus junction and supply temperature terms, differentiated (reverse "
            f"mode) with respect to {g['n_params']} plant parameters and the per-interval "
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
    out += render_training(r.get("train"))
    return "\n".join(out) + "\n"
