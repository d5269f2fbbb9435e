"""BENCHMARK.md: per task and scenario, a table ranked by the task's main KPI (from the
task registry, :class:`heatsync.envs.TaskSpec`), every KPI as mean ± std over seeds,
the tuned-on rows apart, and each non-baseline controller against the best baseline."""

from __future__ import annotations

import datetime
import math
import platform
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from heatsync.envs import task_spec
from heatsync.physics import KPI_DOC

from .cell import cores

__all__ = ["RETURN_DOC", "markdown", "fmt", "mean_std", "groups", "ranked", "versus_table",
           "unit", "doc", "cpu"]

RETURN_DOC = "episode return: the task's reward summed over the episode, -(cost + penalties), USD"
#: run columns that tables show beside the KPIs, with their meaning
RUN_DOC = {
    "return": RETURN_DOC,
    "cost_usd": "the episode's cost: the reward's cost terms less its benefits, USD",
    "violation_s": "time out of the task's specification, s",
    "spec_met": "episodes that met the specification (no violation, no early end), 1",
}


def doc(kpi: str) -> str:
    """What a KPI (or ``return``) means, with its unit after the last comma."""
    return RUN_DOC[kpi] if kpi in RUN_DOC else KPI_DOC[kpi]


def _md(text: str) -> str:
    """Text safe inside a markdown table cell (pipes escaped)."""
    return text.replace("|", "\\|")


def unit(kpi: str) -> str:
    """The unit at the end of a KPI_DOC entry (after the last comma), if it has one."""
    text = doc(kpi)
    if ", " in text:
        tail = text.rsplit(", ", 1)[1].strip()
        if len(tail) <= 8 and " " not in tail:
            return tail
    return ""


def fmt(mean: float, std: float) -> str:
    """``mean ± std`` as the tables print it (4 and 2 significant digits)."""
    return f"{mean:.4g} ± {std:.2g}"


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof = 1; 0 for a single value)."""
    v = np.asarray(values, dtype=np.float64)
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def groups(rows: list[dict]) -> dict:
    """rows by task -> (scenario, T) -> split -> controller -> rows."""
    g: dict = {}
    for r in rows:
        g.setdefault(r["task"], {}).setdefault((r["scenario"], r["episode_steps"]), {}) \
            .setdefault(r["split"], {}).setdefault(r["controller"], []).append(r)
    return g


def ranked(task: str, per_ctrl: dict[str, list[dict]]) -> list[str]:
    """Controllers in rank order: more episodes within the specification first, then the
    main KPI."""
    kpi, how, _ = task_spec(task).main_kpi
    sign = 1.0 if how == "min" else -1.0

    def key(c):
        rs = per_ctrl[c]
        early = 1.0 - np.mean([r["spec_met"] for r in rs])
        m = mean_std([r[kpi] for r in rs])[0]
        return (early, sign * m if math.isfinite(m) else math.inf, c)

    return sorted(per_ctrl, key=key)


def _seeds_text(seeds: Iterable[int]) -> str:
    s = sorted(set(seeds))
    if s and s == list(range(s[0], s[-1] + 1)) and len(s) > 2:
        return f"{s[0]}-{s[-1]}"
    return ",".join(map(str, s))


def _ranked_table(task: str, per_ctrl: dict, tuned_marks: set[str]) -> list[str]:
    kpi, how, _ = task_spec(task).main_kpi
    cols = [kpi] + (["return"] if kpi != "return" else []) + list(task_spec(task).headline)
    head = ["rank", "controller"] + [f"`{c}`" + (f" ({unit(c)})" if unit(c) else "")
                                     for c in cols] + ["meets spec", "seeds"]
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join(["---:", "---"] + ["---:"] * len(cols) + ["---:", "---"]) + "|"]
    for i, c in enumerate(ranked(task, per_ctrl), start=1):
        rs = per_ctrl[c]
        cells = [fmt(*mean_std([r[k] for r in rs])) for k in cols]
        met = sum(r["spec_met"] for r in rs)
        name = f"`{_md(c)}`" + (" †" if c in tuned_marks else "")
        lines.append("| " + " | ".join([str(i), name, *cells, f"{met}/{len(rs)}",
                                        _seeds_text(r["seed"] for r in rs)]) + " |")
    return lines


def _all_kpi_table(task: str, per_ctrl: dict) -> list[str]:
    order = ranked(task, per_ctrl)
    lines = ["| KPI | " + " | ".join(f"`{_md(c)}`" for c in order) + " | meaning, unit |",
             "|---|" + "---:|" * len(order) + "---|"]
    for k in ["return", "cost_usd", "violation_s", *KPI_DOC]:
        cells = [fmt(*mean_std([r[k] for r in per_ctrl[c]])) for c in order]
        lines.append(f"| `{k}` | " + " | ".join(cells) + f" | {_md(doc(k))} |")
    return lines


def baseline_names(task: str) -> set[str]:
    from heatsync.agents import BASELINES

    return set(BASELINES.get(task, {}))


def versus_table(task: str, per_ctrl: dict[str, list[dict]]) -> list[str]:
    """Each controller that is not a rule-based baseline (MPC, trained agents, user
    policies) against the best-ranked baseline on the same seeds, with the verdict."""
    base = baseline_names(task)
    others = [c for c in per_ctrl if c not in base]
    bases = {c: rs for c, rs in per_ctrl.items() if c in base}
    if not others or not bases:
        return []
    kpi, how, _ = task_spec(task).main_kpi
    better = (lambda a, b: a < b) if how == "min" else (lambda a, b: a > b)
    head = ["controller", "seeds", f"`{kpi}`", "best baseline", f"its `{kpi}`",
            "meets spec (it / baseline)", "beats it?"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in ranked(task, per_ctrl):
        if c not in others:
            continue
        seeds = {r["seed"] for r in per_ctrl[c]}
        same = {b: [r for r in rs if r["seed"] in seeds] for b, rs in bases.items()}
        same = {b: rs for b, rs in same.items() if len(rs) == len(seeds)}
        if not same:
            continue
        best = ranked(task, same)[0]
        m_c = mean_std([r[kpi] for r in per_ctrl[c]])
        m_b = mean_std([r[kpi] for r in same[best]])
        met_c = sum(r["spec_met"] for r in per_ctrl[c])
        met_b = sum(r["spec_met"] for r in same[best])
        ok = better(m_c[0], m_b[0]) and met_c >= met_b
        cells = [f"{met_c} / {met_b} of {len(seeds)}"]
        lines.append("| " + " | ".join([f"`{_md(c)}`", _seeds_text(seeds), fmt(*m_c),
                                        f"`{_md(best)}`", fmt(*m_b), *cells,
                                        "**yes**" if ok else "no"]) + " |")
    return lines


def markdown(rows: list[dict], plan, cfg, report, plots: list[Path]) -> tuple[str, str]:
    """``(BENCHMARK.md text, the ranked tables alone)`` from the selection's rows
    (``plan``, ``cfg``, ``report``: the run's :class:`Plan`, config and report)."""
    import jax

    import heatsync

    steps_all = sorted({r["episode_steps"] for r in rows})
    cmd = cfg.command or "heatsync.benchmark.run(...)"
    head = [
        "# heatsync benchmark", "",
        f"Produced by `{cmd}` (heatsync {heatsync.__version__}, JAX {jax.__version__} on "
        f"{jax.default_backend()}, {cpu()}, {cores()} cores) on "
        f"{datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}: {len(report.computed)} "
        f"cell(s) computed and {len(report.skipped)} read back from `benchmark.csv`, "
        f"{report.wall_s:.0f} s wall for this invocation; the cells' own wall time (env build "
        f"and compile included) sums to {_cells_wall(rows):.0f} s.", "",
        f"Each cell (controller, task, scenario) runs seeds {_seeds_text(plan.seeds)} together "
        "as the envs of one `JaxVectorEnv`, one episode each of "
        f"{', '.join(map(str, steps_all)) or '-'} control intervals (timesteps) of "
        f"{_dt_text(rows)}; tables give mean ± sample std over seeds (KPIs from "
        "`heatsync.physics.compute_kpis`, units from `KPI_DOC`). Every row is in "
        "`benchmark.csv`.", "",
        "Ranking: controllers with more episodes inside the task's specification (no "
        "interval out of it, no trip, hazard or other early end) rank first, then by the "
        "task's main KPI:", "",
        "| task | main KPI | better | why |", "|---|---|---|---|",
    ]
    for t in plan.tasks:
        k, how, why = task_spec(t).main_kpi
        head.append(f"| {t} | `{k}` ({_md(doc(k))}) | {'lower' if how == 'min' else 'higher'} "
                    f"| {why} |")
    head += ["", "Held-out vs tuned-on: a controller that declares `tuned_on` (scenarios and "
             "seeds used to tune its constants) has its rows on those scenarios *and* seeds "
             "in a separate *tuned-on* table; † marks a controller tuned on the scenario "
             "(with other seeds). The other tables hold held-out rows only.", ""]
    if getattr(report, "read_back", None):
        head += ["Read back from `benchmark.csv`, not recomputed by this invocation (opt-in "
                 "controllers and `--policy` policies an earlier run computed on the same "
                 "cells and seeds): "
                 + ", ".join(f"`{c}` on {t}/{s}" for c, t, s, _ in report.read_back) + ".",
                 ""]
    if report.not_fitting:
        per: dict[str, list[str]] = {}
        for m in report.not_fitting:
            hit = re.match(r"policy '(.+)' does not fit (\w+): ", m)
            per.setdefault(hit.group(1) if hit else m, []).append(hit.group(2) if hit else "")
        head += ["Not run where the policy's spaces do not fit the task's:", ""]
        head += [f"- `{_md(p)}`: " + ", ".join(t for t in ts if t) if any(ts) else f"- {p}"
                 for p, ts in per.items()]
        head.append("")

    body, ranked = [], []
    grouped = groups(rows)
    for task in plan.tasks:
        if task not in grouped:
            continue
        kpi, how, _ = task_spec(task).main_kpi
        body += [f"## {task}", ""]
        ranked += [f"## {task} (ranked by `{kpi}`, {'lower' if how == 'min' else 'higher'} "
                   "is better)", ""]
        for (scen, T), splits in sorted(grouped[task].items()):
            tuned_marks = {r["controller"] for sp in splits.values() for rs in sp.values()
                           for r in rs if r["tuned_scenario"]}
            for split in ("held-out", "tuned-on"):
                if split not in splits:
                    continue
                label = "" if split == "held-out" else " — tuned-on (optimistic)"
                title = f"### {scen}, {T} steps{label}"
                table = _ranked_table(task, splits[split], tuned_marks)
                legend = [f"`{k}`: {doc(k)}" for k in
                          dict.fromkeys([kpi, "return", *task_spec(task).headline])]
                body += [title, "", *table, "", "; ".join(legend) + ".", ""]
                versus = versus_table(task, splits[split]) if split == "held-out" else []
                if versus:
                    body += [f"Versus the best rule-based baseline on the same held-out seeds "
                             f"(it beats it when `{kpi}` is better and it meets the "
                             "specification on at least as many seeds):", "", *versus, ""]
                sc = (report.scores or {}).get((task, scen, T)) \
                    if split == "held-out" else None
                if sc:
                    sec = _score_section(task, scen, T, *sc)
                    body += sec
                    ranked += sec
                body += [f"Every KPI, {scen}, {T} steps{label}:", "",
                         *_all_kpi_table(task, splits[split]), ""]
                ranked += [title, "", *table, ""]
                if versus:
                    ranked += ["Versus the best rule-based baseline (same seeds):", "",
                               *versus, ""]
        for p in plots:
            if p.name.startswith(f"{task}_"):
                body += [f"![{p.stem}]({p.as_posix()})", ""]
    text = "\n".join(head + body).rstrip() + "\n"
    return text, "\n".join(ranked).rstrip() + "\n"


def _score_section(task: str, scen: str, T: int, lines: list[str], figs: dict) -> list[str]:
    """The normalised-score table of a held-out cell group, its headroom line and how
    the oracle converged."""
    from .scores import HEADROOM_MAX, oracle_lines

    best = figs.get("_best")
    out = [f"Normalised score, {scen}, {T} steps: per seed 100 x (J_fixed - J) / (J_fixed "
           "- J_oracle) with J = -return (USD), so `fixed` is 0 and `oracle` 100; IQM over "
           f"seeds with a 95 % stratified-bootstrap interval (rliable); P(beats): the share "
           "of seeds (the same episodes) on which the controller's J is lower than the best "
           "baseline's, ties a half, with its 95 % bootstrap interval. Score of mean J: the "
           "same normalisation on the means over seeds (robust where `fixed` is already "
           "near the oracle on some seeds; the per-seed scores are then extreme).", "",
           *lines, ""]
    if figs.get("_unscored"):
        out += [f"Unscored seeds (the oracle beats `fixed` by less than 0.01 USD): "
                f"{figs['_unscored']}.", ""]
    if best and best in figs:
        iqm = figs[best]["iqm"]
        ok = iqm <= HEADROOM_MAX
        out += [f"Headroom: the best baseline `{_md(best)}` scores {iqm:.1f} (IQM), "
                f"{100.0 - iqm:.1f} points below the oracle "
                + ("(at least 10 points left for learning and planning)." if ok else
                   f"(**less than the {100.0 - HEADROOM_MAX:.0f} points the benchmark asks "
                   "for**)."), ""]
    conv = oracle_lines(task, scen, T)
    if conv:
        out += ["How the oracle was found:", "", *conv, ""]
    return out


def _cells_wall(rows) -> float:
    """Sum of the cells' wall times (a cell's rows share its ``wall_s``)."""
    cells = {(r["controller"], r["task"], r["scenario"], r["episode_steps"]): r["wall_s"]
             for r in rows}
    return float(sum(cells.values()))


def _dt_text(rows) -> str:
    dts = set()
    for r in rows:
        if r["steps"] > 0:
            dts.add(round(r["duration_s"] / r["steps"], 6))
    return ", ".join(f"{d:g} s" for d in sorted(dts)) or "-"


def cpu() -> str:
    """The CPU's model name."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
