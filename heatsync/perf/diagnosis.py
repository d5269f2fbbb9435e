"""Sections 6 and 7 of the report, rendered from a run's results: where the time goes
(the batched plant's operation-count floor and the kernel profiles) and what bounds
each target. :func:`heatsync.perf.report.render` places them."""

from __future__ import annotations

from .runner import TARGETS

__all__ = ["STAGE_DOC", "render_breakdown", "render_bounds"]


def _gpu_share(roof: dict) -> tuple[int, int]:
    """``(transcendentals per substep in gpu.py, all of them)`` from :class:`Roof`."""
    tr = roof["trans_by_fn"]
    return sum(v for k, v in tr.items() if k.startswith("gpu.")), sum(tr.values())


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
                f"XLA's cost model of one substep (`plant.substep` compiled alone, batch 1): "
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
            f"{bd['calls']} calls of each program under `jax.profiler`, in a subprocess "
            "under XLA's "
            "defaults (`HEATSYNC_XLA_TUNING=0`), where every fusion runs as its own kernel "
            "that the profiler times (with heatsync's setting a small loop is one kernel). "
            "A kernel's time is split over its operations by count, and summed by the plant "
            "stage (`jax.named_scope` in `physics/plant.py`) or the function that emitted "
            "each (`heatsync/perf/profile.py`). Shares are of kernel time, summed over "
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
            "rest: `_queue` the job queue, `exogenous` the env's exogenous inputs, `drive` "
            "auto-reset and packing, `observations` the observation, `reward` the reward, "
            "`(no source)` XLA's copies)."]
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
