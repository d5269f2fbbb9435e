"""A small dashboard of the recent trace (matplotlib Agg, no pyplot state)."""

from __future__ import annotations

import numpy as np

__all__ = ["render_dashboard"]

WIDTH_IN, HEIGHT_IN, DPI = 4.8, 3.6, 80  # 384 x 288 pixels


def render_dashboard(history, title: str = "") -> np.ndarray:
    """Draw grid power, temperatures and storage over the recent steps.

    **Arguments**: a sequence of per-step dicts with ``t_s``, ``p_grid_sub_w``,
    ``p_it_mean_w``, ``t_junction_max_c``, ``t_supply_c``, ``ups_soc``,
    ``uc_soc_mean``, ``reward`` (missing keys are skipped).

    **Returns**: an ``(H, W, 3)`` uint8 image.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI)
    canvas = FigureCanvasAgg(fig)
    axes = fig.subplots(3, 1, sharex=True)
    fig.subplots_adjust(left=0.16, right=0.97, top=0.9, bottom=0.12, hspace=0.15)
    fig.suptitle(title, fontsize=8)
    h = list(history)
    if h:
        t = np.array([x["t_s"] for x in h], dtype=float)
        sub = np.stack([np.asarray(x["p_grid_sub_w"], dtype=float) for x in h])
        n_sub = sub.shape[1]
        dt = (t[1] - t[0]) if len(t) > 1 else 1.0
        t_fine = (t[:, None] - dt + dt * (np.arange(n_sub) + 1) / n_sub).reshape(-1)
        axes[0].plot(t_fine, sub.reshape(-1) / 1e3, lw=0.7, label="grid")
        axes[0].plot(t, [x["p_it_mean_w"] / 1e3 for x in h], lw=0.9, label="IT")
        axes[1].plot(t, [x["t_junction_max_c"] for x in h], lw=0.9, label="junction max")
        axes[1].plot(t, [x["t_supply_c"] for x in h], lw=0.9, label="supply")
        axes[2].plot(t, [x["ups_soc"] for x in h], lw=0.9, label="UPS")
        axes[2].plot(t, [x["uc_soc_mean"] for x in h], lw=0.9, label="ultracap")
    axes[0].set_ylabel("kW", fontsize=7)
    axes[1].set_ylabel("degC", fontsize=7)
    axes[2].set_ylabel("SoC", fontsize=7)
    axes[2].set_xlabel("t (s)", fontsize=7)
    for ax in axes:
        ax.tick_params(labelsize=6)
        if h:
            ax.legend(fontsize=5, loc="upper left", ncol=2, frameon=False)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
