"""The benchmark's PNG plots, per task: one episode of each controller overlaid
(``plots/<Task>_episode.png``, from the cells' traces) and the headline KPIs as bars of
mean ± std over seeds (``plots/<Task>_kpis.png``)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from heatsync._io import write_bytes_atomic
from heatsync.envs import make_task, task_spec

from .report import groups, mean_std, unit
from .store import load_trace, trace_path

__all__ = ["write_plots", "write_score_plots", "ZOOM_S"]

#: the zoomed grid-power panel of the episode plots shows the last ZOOM_S seconds
ZOOM_S = 20.0


def _plot_cell(task: str, rows: list[dict]) -> tuple[str, int] | None:
    """The (scenario, T) a task's episode plot shows: its default scenario if run."""
    have = sorted({(r["scenario"], r["episode_steps"]) for r in rows if r["task"] == task})
    if not have:
        return None
    default = make_task(task).default_scenario
    for s, T in have:
        if s == default:
            return s, T
    return have[0]


def _save_fig(fig, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    write_bytes_atomic(path, buf.getvalue())


def write_score_plots(out: Path, scores: dict) -> list[Path]:
    """Per task with normalised scores: ``plots/<Task>_scores.png``, the IQM score of each
    controller with its 95 % bootstrap interval (rliable's interval plot)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from rliable import plot_utils

    written = []
    for (task, scen, T), (_, figs) in sorted(scores.items()):
        ctrls = [c for c in figs if not c.startswith("_")]
        if not ctrls:
            continue
        point = {c: np.array([figs[c]["iqm"]]) for c in ctrls}
        ci = {c: np.array([[figs[c]["lo"]], [figs[c]["hi"]]]) for c in ctrls}
        fig, axes = plot_utils.plot_interval_estimates(
            point, ci, metric_names=[f"IQM score, {scen}, {T} steps"], algorithms=ctrls[::-1],
            xlabel="normalised score (0 = fixed, 100 = oracle)", subfigure_width=6.0,
            row_height=0.45, xlabel_y_coordinate=-0.25 if len(ctrls) < 5 else -0.12)
        fig.suptitle(f"{task}: IQM over test seeds with 95 % stratified-bootstrap CIs",
                     fontsize=10, y=1.02)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        path = out / "plots" / f"{task}_scores.png"
        write_bytes_atomic(path, buf.getvalue())
        written.append(path)
    return written


def write_plots(out: Path, rows: list[dict], plan, scores: dict | None = None) -> list[Path]:
    """Per task: ``plots/<Task>_episode.png``, ``plots/<Task>_kpis.png`` and, with
    ``scores`` (:func:`heatsync.benchmark.scores.all_scores`), ``plots/<Task>_scores.png``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    written = write_score_plots(out, scores) if scores else []
    for task in plan.tasks:
        cell = _plot_cell(task, rows)
        if cell is None:
            continue
        scen, T = cell
        ctrls = list(plan.controllers[task])
        # one episode of each controller
        fig = Figure(figsize=(11, 11), layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(4, 2).ravel()
        titles = ["grid power, 1-s interval mean (kW)",
                  f"grid power, last {ZOOM_S:g} s at substep resolution (kW)",
                  "hottest junction (degC)", "coolant supply (degC)",
                  "state of charge (solid: ultracapacitor mean, dashed: UPS)",
                  "LN2 in the tank (kg)", "room oxygen (%)", None]
        seed = None
        for i, ctrl in enumerate(ctrls):
            tr = load_trace(trace_path(out, task, scen, T, ctrl))
            if tr is None or tr["t_s"].size == 0:
                continue
            seed = int(tr["seed"])
            # earlier controllers drawn wider, so identical curves stay visible
            style = {"color": f"C{i % 10}", "lw": max(2.4 - 0.5 * i, 0.7), "alpha": 0.85}
            t = tr["t_s"]
            h = float(tr["h_s"])
            fine = tr["p_grid_sub_w"]
            tf = t[0] - (fine.size // t.size) * h + h * np.arange(1, fine.size + 1)
            zoom = tf > tf[-1] - ZOOM_S
            axes[0].plot(t, tr["p_grid_mean_w"] / 1e3, label=ctrl, **style)
            axes[1].plot(tf[zoom], fine[zoom] / 1e3, **style)
            axes[2].plot(t, tr["t_junction_max_c"], **style)
            axes[3].plot(t, tr["t_supply_c"], **style)
            axes[4].plot(t, tr["uc_soc"], **style)
            axes[4].plot(t, tr["ups_soc"], ls="--", **style)
            axes[5].plot(t, tr["ln2_tank_kg"], **style)
            axes[6].plot(t, tr["o2_frac"] * 100.0, **style)
        for title, ax in zip(titles, axes, strict=True):
            if title is None:
                continue
            ax.set_title(title, fontsize=9)
            ax.grid(alpha=0.3)
            ax.set_xlabel("time (s)", fontsize=8)
        handles, labels = axes[0].get_legend_handles_labels()
        axes[7].axis("off")
        axes[7].legend(handles, labels, loc="center", fontsize=9, title="controller")
        fig.suptitle(f"{task} on {scen}: one episode (seed {seed}) of each controller, "
                     f"{T} steps", fontsize=11)
        path = out / "plots" / f"{task}_episode.png"
        _save_fig(fig, path)
        written.append(path)

        # KPI bars: mean ± std per controller, grouped by scenario
        spec = task_spec(task)
        kpis = list(dict.fromkeys([spec.main_kpi[0], *spec.headline]))[:6]
        grouped = groups([r for r in rows if r["task"] == task and r["split"] == "held-out"])
        cells = sorted(grouped.get(task, {}))
        if not cells:
            continue
        fig = Figure(figsize=(12, 6.5), layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(2, 3).ravel()
        width = 0.8 / max(len(ctrls), 1)
        x = np.arange(len(cells))
        for ax, k in zip(axes, kpis, strict=False):
            for i, ctrl in enumerate(ctrls):
                ms = [mean_std([r[k] for r in grouped[task][c]["held-out"].get(ctrl, [])])
                      if ctrl in grouped[task][c].get("held-out", {}) else (np.nan, 0.0)
                      for c in cells]
                ax.bar(x + (i - (len(ctrls) - 1) / 2) * width, [m for m, _ in ms], width,
                       yerr=[s for _, s in ms], color=f"C{i % 10}", label=ctrl, capsize=2)
            u = unit(k)
            ax.set_title(f"{k}" + (f" ({u})" if u else ""), fontsize=9)
            ax.set_xticks(x, [f"{s}\n{T}" for s, T in cells], fontsize=7)
            ax.grid(alpha=0.3, axis="y")
        for ax in axes[len(kpis):]:
            ax.set_visible(False)
        axes[0].legend(fontsize=7)
        fig.suptitle(f"{task}: KPIs, mean ± std over seeds (held-out rows; x: scenario, steps)",
                     fontsize=11)
        path = out / "plots" / f"{task}_kpis.png"
        _save_fig(fig, path)
        written.append(path)
    return written
