"""Normalised scores and their statistics (rliable).

**Score** of a controller on one test episode (seed), on the task's cost at the
specification, ``J = -return`` (USD: cost plus the specification's penalties)::

    score = 100 x (J_fixed - J) / (J_fixed - J_oracle)

so ``fixed`` (the scenario's setpoints, do-nothing) scores 0 and ``oracle`` (the best
sequence found with perfect foresight, :mod:`heatsync.agents.oracle`) 100 on every seed
by construction; a controller worse than ``fixed`` scores below 0. A seed where the
oracle does not beat ``fixed`` by at least :data:`MIN_GAP_USD` has no score (it is
counted in the table as unscored).

**Aggregates** (rliable, Agarwal et al. 2021, "Deep RL at the edge of the statistical
precipice"): the interquartile mean (IQM) of the per-seed scores, with a 95 % stratified
bootstrap confidence interval (percentile method); and the probability that a
controller beats the best baseline, **paired on seeds**: the mean over seeds of
``1[J < J_best] + 0.5 x 1[J == J_best]`` (the same episode for both), with its 95 %
bootstrap interval over seeds. (rliable's own ``probability_of_improvement`` compares
unpaired runs with a Mann-Whitney statistic; the benchmark's controllers run the very
same episodes, so the paired form is the sharper one.) The bootstrap's generator is
seeded (:data:`BOOTSTRAP_SEED`), so the tables are reproducible.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

__all__ = ["MIN_GAP_USD", "BOOTSTRAP_REPS", "BOOTSTRAP_SEED", "HEADROOM_MAX", "Scores",
           "per_seed_j", "normalised", "iqm_interval", "paired_improvement", "best_baseline",
           "score_table", "all_scores", "oracle_lines", "pooled"]

#: the oracle must beat ``fixed`` on a seed by at least this (USD) for the seed to be scored
MIN_GAP_USD = 0.01
#: bootstrap replications (rliable's default is 50000, its examples use 2000; with 16
#: seeds the interval's width dwarfs the Monte Carlo error of its ends at 2000)
BOOTSTRAP_REPS = 2000
BOOTSTRAP_SEED = 0
#: the best baseline's IQM score must stay at or below this (headroom for learning)
HEADROOM_MAX = 90.0
#: controllers that are references, not baselines, when picking the best baseline
REFERENCES = ("fixed", "best-constant", "oracle")


def per_seed_j(rows: list[dict]) -> dict[int, float]:
    """``-return`` (USD) by seed."""
    return {int(r["seed"]): -float(r["return"]) for r in rows}


@dataclasses.dataclass
class Scores:
    """Per-seed normalised scores of each controller on one (task, scenario, length)."""

    seeds: list[int]
    scores: dict[str, np.ndarray]  # controller -> (len(seeds),), NaN where unscored
    unscored: list[int]  # seeds where the oracle does not beat fixed by MIN_GAP_USD


def normalised(per_ctrl: dict[str, list[dict]]) -> Scores | None:
    """Scores of every controller (``per_ctrl``: controller -> rows of one task, scenario
    and length) on the seeds that ``fixed`` and ``oracle`` both ran; ``None`` without
    them."""
    if "fixed" not in per_ctrl or "oracle" not in per_ctrl:
        return None
    jf, jo = per_seed_j(per_ctrl["fixed"]), per_seed_j(per_ctrl["oracle"])
    seeds = sorted(set(jf) & set(jo))
    if not seeds:
        return None
    gap = np.array([jf[s] - jo[s] for s in seeds])
    ok = gap >= MIN_GAP_USD
    scores = {}
    for c, rs in per_ctrl.items():
        j = per_seed_j(rs)
        if not all(s in j for s in seeds):
            continue
        v = np.array([100.0 * (jf[s] - j[s]) / g if k else np.nan
                      for s, g, k in zip(seeds, gap, ok, strict=True)])
        scores[c] = v
    return Scores(seeds=seeds, scores=scores,
                  unscored=[s for s, k in zip(seeds, ok, strict=True) if not k])


def pooled(per_ctrl: dict[str, list[dict]], controller: str) -> float:
    """The score of the mean cost: ``100 x (mean J_fixed - mean J) / (mean J_fixed -
    mean J_oracle)`` over the scored seeds (NaN without any). Unlike the per-seed scores
    it does not blow up on seeds where ``fixed`` is already close to the oracle."""
    sc = normalised(per_ctrl)
    if sc is None or controller not in sc.scores:
        return math.nan
    seeds = [s for s in sc.seeds if s not in set(sc.unscored)]
    if not seeds:
        return math.nan
    jf, jo = per_seed_j(per_ctrl["fixed"]), per_seed_j(per_ctrl["oracle"])
    j = per_seed_j(per_ctrl[controller])
    mf, mo, m = (float(np.mean([d[s] for s in seeds])) for d in (jf, jo, j))
    return 100.0 * (mf - m) / (mf - mo)


def _bootstrap_ci(values: np.ndarray, func, reps: int, seed: int) -> tuple[float, float]:
    """95 % stratified-bootstrap interval of ``func`` over runs (rliable)."""
    from rliable import library as rly

    state = np.random.get_state()  # noqa: NPY002 - rliable's bootstrap uses the global state
    try:
        np.random.seed(seed)  # noqa: NPY002
        _, ci = rly.get_interval_estimates({"x": values.reshape(-1, 1)},
                                           lambda m: np.array([func(m)]), reps=reps)
    finally:
        np.random.set_state(state)  # noqa: NPY002
    lo, hi = np.asarray(ci["x"]).reshape(2)
    return float(lo), float(hi)


def iqm_interval(scores: np.ndarray, reps: int = BOOTSTRAP_REPS,
                 seed: int = BOOTSTRAP_SEED) -> tuple[float, float, float]:
    """``(IQM, CI low, CI high)`` of per-seed scores (NaN seeds dropped)."""
    from rliable import metrics

    v = np.asarray(scores, np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan, math.nan, math.nan
    point = float(metrics.aggregate_iqm(v.reshape(-1, 1)))
    if v.size < 2 or np.all(v == v[0]):
        return point, point, point
    lo, hi = _bootstrap_ci(v, metrics.aggregate_iqm, reps, seed)
    return point, lo, hi


def paired_improvement(j_x: Sequence[float], j_y: Sequence[float],
                       reps: int = BOOTSTRAP_REPS,
                       seed: int = BOOTSTRAP_SEED) -> tuple[float, float, float]:
    """``(P, CI low, CI high)``: the probability that X beats Y on the same episode
    (lower ``J``; ties count a half), paired on seeds, with a 95 % bootstrap interval."""
    jx, jy = np.asarray(j_x, np.float64), np.asarray(j_y, np.float64)
    if jx.shape != jy.shape or jx.size == 0:
        raise ValueError(f"paired_improvement: need two equal, non-empty arrays, got "
                         f"{jx.shape} and {jy.shape}")
    win = (jx < jy).astype(np.float64) + 0.5 * (jx == jy)
    point = float(win.mean())
    if np.all(win == win[0]):
        return point, point, point
    lo, hi = _bootstrap_ci(win, np.mean, reps, seed)
    return point, lo, hi


def best_baseline(task: str, per_ctrl: dict[str, list[dict]], baselines: set[str]) -> str | None:
    """The best-ranked rule-based baseline (not ``fixed``, ``best-constant`` or
    ``oracle``) among ``per_ctrl``, by the benchmark's ranking."""
    from .report import ranked

    cand = {c: rs for c, rs in per_ctrl.items() if c in baselines and c not in REFERENCES}
    return ranked(task, cand)[0] if cand else None


def score_table(task: str, per_ctrl: dict[str, list[dict]], baselines: set[str],
                reps: int = BOOTSTRAP_REPS) -> tuple[list[str], dict]:
    """Markdown lines of the normalised-score table and the figures behind it
    (controller -> dict), or ``([], {})`` without ``fixed`` and ``oracle`` rows."""
    from .report import _md, fmt, mean_std, ranked

    sc = normalised(per_ctrl)
    if sc is None:
        return [], {}
    best = best_baseline(task, per_ctrl, baselines)
    jb = per_seed_j(per_ctrl[best]) if best else {}
    head = ["controller", "score IQM [95 % CI]", "score mean", "score of mean J", "P(beats " +
            (f"`{_md(best)}`" if best else "best baseline") + ") [95 % CI]",
            "-return (USD)", "`cost_usd` (USD)", "`violation_s` (s)", "meets spec"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    figures = {}
    for c in ranked(task, {c: per_ctrl[c] for c in sc.scores}):
        s = sc.scores[c]
        iqm, lo, hi = iqm_interval(s, reps)
        j = per_seed_j(per_ctrl[c])
        poi = (math.nan,) * 3
        if best and c != best:
            poi = paired_improvement([j[x] for x in sc.seeds], [jb[x] for x in sc.seeds],
                                     reps)
        rs = [r for r in per_ctrl[c] if int(r["seed"]) in set(sc.seeds)]
        figures[c] = {"iqm": iqm, "lo": lo, "hi": hi, "mean": float(np.nanmean(s)),
                      "pooled": pooled(per_ctrl, c), "poi": poi, "scores": s}
        poi_text = "—" if math.isnan(poi[0]) else f"{poi[0]:.2f} [{poi[1]:.2f}, {poi[2]:.2f}]"
        lines.append("| " + " | ".join([
            f"`{_md(c)}`" + (" (best baseline)" if c == best else ""),
            f"{iqm:.1f} [{lo:.1f}, {hi:.1f}]", f"{np.nanmean(s):.1f}",
            f"{figures[c]['pooled']:.1f}", poi_text,
            fmt(*mean_std([-r["return"] for r in rs])),
            fmt(*mean_std([r["cost_usd"] for r in rs])),
            fmt(*mean_std([r["violation_s"] for r in rs])),
            f"{sum(int(r['spec_met']) for r in rs)}/{len(rs)}"]) + " |")
    figures["_seeds"] = sc.seeds
    figures["_unscored"] = sc.unscored
    figures["_best"] = best
    return lines, figures


def all_scores(rows: list[dict], baselines_of) -> dict:
    """``{(task, scenario, T): (table lines, figures)}`` for every held-out cell group with
    ``fixed`` and ``oracle`` rows (``baselines_of(task)``: the task's baseline names)."""
    from .report import groups

    out = {}
    for task, cells in groups(rows).items():
        for (scen, T), splits in sorted(cells.items()):
            per = splits.get("held-out", {})
            lines, figs = score_table(task, per, baselines_of(task))
            if lines:
                out[(task, scen, T)] = (lines, figs)
    return out


def oracle_lines(task: str, scenario: str, T: int) -> list[str]:
    """How the stored oracle plans of (task, scenario, T) converged, as markdown bullets
    (empty without stored plans)."""
    from heatsync.agents.oracle import load, plan_path

    path = plan_path(scenario)
    if not path.exists():
        return []
    r = load(path)
    if r.steps != T:
        return []
    cfg = r.meta.get("config", {})
    sj = np.asarray(r.start_j)
    best_start = sj.min(axis=0)
    final = -np.asarray(r.ret)
    cont = " --continue" if r.meta.get("continues") else ""
    lines = [f"- Oracle plans: `{path.name}` (`python -m heatsync.agents.oracle {task}{cont}`, "
             f"{r.meta.get('wall_s', float('nan')):.0f} s on this machine), seeds "
             f"{min(r.seeds)}-{max(r.seeds)}; replayed through the exact env: mean -return "
             f"{final.mean():.2f} USD, specification met on {int(np.sum(r.spec_met))}/"
             f"{len(r.seeds)} seeds.",
             "- Starts (recorded sequences, replayed): " + ", ".join(
                 f"`{n}` {sj[i].mean():.2f}" for i, n in enumerate(r.start_names))
             + f" USD mean -return; the best start per seed averages {best_start.mean():.2f}."]
    g = np.asarray(r.grad_j)
    if g.size:
        names = ["best start", "`best-constant`"]
        parts = []
        for k in range(g.shape[0]):
            first, last = g[k, :, 0], g[k, :, -1]
            parts.append(f"from the {names[k] if k < 2 else k}: {first.mean():.2f} -> "
                         f"{last.mean():.2f} USD after {g.shape[2] - 1} iterations")
        gap = np.abs(g[0, :, -1] - g[-1, :, -1]) if g.shape[0] > 1 else np.zeros(1)
        half = g[0, :, g.shape[2] // 2]
        lines.append(f"- Adam (lr {cfg.get('lr')}, hold {cfg.get('hold_steps')} step): "
                     + "; ".join(parts) + f". In the last half of the iterations the best "
                     f"start's mean moved {half.mean() - g[0, :, -1].mean():.3f} USD. The two "
                     f"restarts end {gap.mean():.2f} USD apart on average (largest "
                     f"{gap.max():.2f}): the search finds local optima, the best of which is "
                     "kept.")
    prev = r.meta.get("continues")
    if prev:  # python -m heatsync.agents.oracle <task> --continue
        legs, wall, c = [], 0.0, prev
        while c:
            pc = c.get("config", {})
            legs.append(f"{pc.get('iters', 0)} Adam iterations and "
                        f"{pc.get('generations', 0)} generations "
                        f"({float(c.get('wall_s', 0.0)):.0f} s)")
            wall += float(c.get("wall_s", 0.0))
            c = c.get("continues")
        lines.append(f"- This search continues earlier ones (`--continue`; their plans are "
                     f"the start `previous`), latest first: {'; '.join(legs)}; "
                     f"{wall + float(r.meta.get('wall_s', 0.0)):.0f} s in all.")
    h = np.asarray(r.search_j)
    if h.size:
        seg = cfg.get("search_segments") or []
        lines.append(f"- Local search ({h.shape[1]} generations of {cfg.get('population')} "
                     "mutants" + (f" of {', '.join(f'`{x}`' for x in seg)}" if seg else "")
                     + f"): {best_start.mean():.2f} -> {h[:, -1].mean():.2f} USD; over "
                     f"the last third of the generations the mean moved "
                     f"{h[:, (2 * h.shape[1]) // 3].mean() - h[:, -1].mean():.3f} USD.")
    lines.append(f"- Improvement over the best start: {np.mean(best_start - final):.2f} USD "
                 f"per episode (largest {np.max(best_start - final):.2f}); the oracle is "
                 "the best sequence found, not a proven optimum.")
    return lines
