"""A whole benchmark run: plan the cells, run them, write the CSV, traces, tables and plots.

**Resume.** A run writes a manifest (``.benchmark-run.json``) of its cells at the
start, adds each cell as it finishes, and removes the manifest at a clean end. The next
run of the same cells, if it finds the manifest, resumes: cells the interrupted run
finished are read back from ``benchmark.csv``, not recomputed, and the log says so.
Without a manifest every selected cell is computed (rows of other selections stay in the
CSV). ``resume=True`` (``--resume``) skips any cell whose rows the CSV holds. A line of
the CSV that does not parse (a run killed mid-write of an older, non-atomic file, or a
truncated copy) is dropped with a warning.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable
from pathlib import Path

from heatsync._io import write_text_atomic
from heatsync.envs import make_task

from .cell import Prewarm, run_cell
from .plan import OPT_IN, BenchmarkConfig, default_registry, probe_policy, resolve
from .plots import write_plots
from .report import baseline_names, markdown
from .scores import all_scores
from .store import Manifest, read_csv, row_key, save_trace, sort_key, trace_path, write_csv

__all__ = ["BenchmarkReport", "run"]


@dataclasses.dataclass
class BenchmarkReport:
    """What :func:`run` did: cells computed and skipped (resumed), the rows of the
    selection, policies that fit no task, files written, wall time."""

    computed: list[tuple] = dataclasses.field(default_factory=list)
    skipped: list[tuple] = dataclasses.field(default_factory=list)
    not_fitting: list[str] = dataclasses.field(default_factory=list)
    rows: list[dict] = dataclasses.field(default_factory=list)
    files: list[Path] = dataclasses.field(default_factory=list)
    policy_calls: int = 0
    scores: dict = dataclasses.field(default_factory=dict)
    read_back: list[tuple] = dataclasses.field(default_factory=list)
    wall_s: float = 0.0
    markdown: str = ""
    ranked: str = ""


class _Scenarios:
    """Scenario names and episode lengths of (task, scenario) pairs, loaded once."""

    def __init__(self, steps: int | None):
        self.steps, self._cache = steps, {}

    def _load(self, task: str, scenario: str):
        if (task, scenario) not in self._cache:
            from heatsync.envs import episode_steps

            sc = make_task(task).load(scenario)
            self._cache[(task, scenario)] = (sc.name, episode_steps(sc))
        return self._cache[(task, scenario)]

    def name(self, task: str, scenario: str) -> str:
        """The scenario's own name (a YAML path resolves to the ``name`` inside)."""
        return self._load(task, scenario)[0]

    def length(self, task: str, scenario: str) -> int:
        return int(self.steps) if self.steps is not None else self._load(task, scenario)[1]


def _check_policies(plan, todo, report, skipped_cells) -> list:
    """Load every ``--policy`` and drop the cells of tasks whose spaces it does not fit
    (an error if it fits none, or not the task it was given for)."""
    from heatsync.agents import PolicyError

    for spec in plan.custom:
        for task in plan.tasks:
            mine = [c for c in todo if c[0][0] == spec and c[0][1] == task]
            if not mine:
                continue
            why = probe_policy(spec, task, mine[0][1], len(plan.seeds), plan.steps)
            if why is not None:
                msg = f"policy '{spec}' does not fit {task}: {why}"
                if plan.policy_task is not None:
                    raise PolicyError(msg)
                report.not_fitting.append(msg)
                todo = [c for c in todo if c not in mine]
        ran = [c for c in todo if c[0][0] == spec] + [c for c in skipped_cells if c[0] == spec]
        if not ran and report.not_fitting:
            raise PolicyError(f"policy '{spec}' fits none of the tasks "
                              f"({', '.join(plan.tasks)}): " + "; ".join(
                                  m for m in report.not_fitting if f"'{spec}'" in m))
    return todo


def run(cfg: BenchmarkConfig | None = None, *, registry: dict | None = None,
        progress: bool = True, log: Callable[[str], None] | None = None,
        **fields) -> BenchmarkReport:
    """Run (or resume) the benchmark of ``cfg`` and write its files.

    **Arguments**: the config (or its fields as keywords: ``run(tasks=["PowerSmoothing"],
    seeds=[0, 1], out="results")``); ``registry`` (default
    :func:`~heatsync.benchmark.default_registry`: ``{task: {controller: factory(env)}}``);
    ``progress`` (a tqdm bar on stderr); ``log`` (messages; default stderr).

    **Returns**: a :class:`BenchmarkReport`; ``report.rows`` is the selection's table
    (one dict per controller, task, scenario and seed, the CSV's columns).
    """
    cfg = BenchmarkConfig(**fields) if cfg is None else dataclasses.replace(cfg, **fields)
    log = log or (lambda msg: print(msg, file=sys.stderr))
    t_start = time.perf_counter()
    plan = resolve(cfg, registry)
    out = Path(cfg.out)
    csv_path = out / "benchmark.csv"
    rows, warnings = read_csv(csv_path)
    for w in warnings:
        log(f"warning: {w}")
    by_key = {row_key(r): r for r in rows}
    scen = _Scenarios(plan.steps)

    cells = [((ctrl, task, scen.name(task, s), scen.length(task, s)), s, factory)
             for task in plan.tasks for s in plan.scenarios[task]
             for ctrl, factory in plan.controllers[task].items()]
    manifest = Manifest(out, [c for c, _, _ in cells])
    resumed = manifest.start()
    report = BenchmarkReport()

    def finished(cell):
        have = all((*cell, s) in by_key for s in plan.seeds)
        return have and (cfg.resume or (resumed and manifest.is_done(cell)))

    todo = []
    for cell, s, factory in cells:
        if finished(cell):
            report.skipped.append(cell)
        else:
            todo.append((cell, s, factory))
    if report.skipped:
        why = "--resume" if cfg.resume else "an interrupted run's manifest"
        log(f"resume: {len(report.skipped)} finished cell(s) read from {csv_path} ({why}), "
            "not recomputed")
    if warnings:  # drop the bad lines from the file now
        write_csv(csv_path, sorted(by_key.values(), key=sort_key))
    todo = _check_policies(plan, todo, report, report.skipped)

    bar = None
    if progress and todo:
        from tqdm.auto import tqdm

        tty = sys.stderr.isatty()
        bar = tqdm(total=sum(c[0][3] for c in todo), unit="step", desc="benchmark",
                   dynamic_ncols=True, file=sys.stderr, mininterval=0.2 if tty else 15.0)
    warm = Prewarm([(c[0][1], c[1]) for c in todo], len(plan.seeds), plan.steps) \
        if cfg.prewarm and todo else None
    try:
        for (ctrl, task, name, T), s, factory in todo:
            if bar is not None:
                bar.set_description(f"{task}/{name} {ctrl}")
            if warm is not None:
                warm.wait(task, s)
            res = run_cell(task, s, factory, plan.seeds, plan.steps, controller=ctrl,
                           on_step=bar.update if bar is not None else None, jit=cfg.jit)
            report.policy_calls += res.policy_calls
            for r in res.rows:
                by_key[row_key(r)] = r
            # trace, then manifest, then CSV: rows in the CSV imply the other two, so a
            # kill between any two writes loses nothing the next run would skip
            save_trace(trace_path(out, task, name, T, ctrl), res.trace)
            manifest.finish_cell((ctrl, task, name, T))
            write_csv(csv_path, sorted(by_key.values(), key=sort_key))
            report.computed.append((ctrl, task, name, T))
    finally:
        if bar is not None:
            bar.close()

    report.rows = [by_key[(*cell, sd)] for cell, _, _ in cells for sd in plan.seeds
                   if (*cell, sd) in by_key]
    # opt-in controllers (the MPC) and --policy policies (trained agents: any name the
    # registry does not know) computed by an earlier run on the same cells and seeds are
    # reported beside them (read back, not recomputed)
    known = {n for per in (default_registry() if registry is None else registry).values()
             for n in per}
    chosen = {(c[0][1], c[0][2], c[0][3]) for c in cells}
    ran = {(c[0][0], c[0][1], c[0][2], c[0][3]) for c in cells}
    extra: dict = {}
    for r in by_key.values():
        cell = (r["controller"], r["task"], r["scenario"], r["episode_steps"])
        if cell[1:] in chosen and cell not in ran and r["seed"] in plan.seeds \
                and (r["controller"] in OPT_IN or r["controller"] not in known):
            extra.setdefault(cell, {})[r["seed"]] = r
    for cell, per_seed in sorted(extra.items()):
        if len(per_seed) == len(plan.seeds):
            report.rows += [per_seed[sd] for sd in plan.seeds]
            report.read_back.append(cell)
    report.scores = all_scores(report.rows, baseline_names)
    files = [csv_path]
    if cfg.plots:
        files += write_plots(out, report.rows, plan, report.scores)
    report.wall_s = time.perf_counter() - t_start
    md, ranked = markdown(report.rows, plan, cfg, report,
                          [p.relative_to(out) for p in files[1:]])
    write_text_atomic(out / "BENCHMARK.md", md)
    files.append(out / "BENCHMARK.md")
    report.files, report.markdown, report.ranked = files, md, ranked
    manifest.close()
    return report
