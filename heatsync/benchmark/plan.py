"""What a benchmark run does: its configuration, the resolved plan, the controller
registry, and the ``module:attr`` policies checked before anything compiles."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from heatsync.envs import JaxVectorEnv, check_action, make_task, task_names
from heatsync.physics import list_scenarios

__all__ = ["BenchmarkConfig", "BenchmarkError", "Plan", "resolve", "parse_seeds",
           "default_registry", "OPT_IN", "ORACLE", "oracle_stored", "DEFAULT_STEPS",
           "QUICK_STEPS", "DEFAULT_SEEDS", "QUICK_SEEDS", "policy_factory", "fit_problem",
           "probe_policy"]

#: episode length of the default run: ``None``, each scenario's own (control intervals)
DEFAULT_STEPS = None
QUICK_STEPS = 60
#: test seeds of the default run (training and tuning use seeds >= 100)
DEFAULT_SEEDS = tuple(range(16))
QUICK_SEEDS = (0, 1)


class BenchmarkError(RuntimeError):
    """A benchmark that cannot run as asked (unknown names, an incompatible CSV)."""


# ---- configuration ---------------------------------------------------------------------------


@dataclasses.dataclass
class BenchmarkConfig:
    """What to run. ``None`` fields take the mode's default (see :func:`resolve`)."""

    controllers: list[str] | None = None
    """Baseline names from ``heatsync.agents.BASELINES`` (default: every baseline of each
    task); an empty list runs only ``policies``."""
    tasks: list[str] | None = None
    """Task names (default: all four)."""
    scenarios: list[str] | None = None
    """Scenario names or YAML paths for every task (default: each task's held-out test
    distribution; ``full``: that and every bundled fixed scenario)."""
    seeds: list[int] | None = None
    """Seeds, one env each (default 0-15; ``quick``: 0-1)."""
    steps: int | None = None
    """Episode length in control intervals (default: each scenario's own; ``quick``: 60)."""
    policies: list[str] = dataclasses.field(default_factory=list)
    """Extra policies as ``module:attr`` (see :func:`heatsync.agents.load_policy`)."""
    policy_task: str | None = None
    """The task of ``policies`` (default: every selected task whose spaces they fit)."""
    out: Path = Path("results")
    """Folder of ``benchmark.csv``, ``BENCHMARK.md``, ``plots/`` and ``traces/``."""
    quick: bool = False
    """Smoke run: 2 seeds, 60 steps, each task's test distribution."""
    full: bool = False
    """Everything: the test distribution and every bundled fixed scenario."""
    plots: bool = True
    """Write the PNG plots."""
    prewarm: bool = True
    """Compile the next tasks' envs on background threads while cells run."""
    jit: bool = False
    """Run a controller that offers a JAX policy (``jax_policy()``) as one jitted scan
    (same rows); default: every controller on the Python step loop, which is faster at
    the benchmark's batch while each controller compiles its own scan."""
    resume: bool = False
    """Skip every cell whose rows ``benchmark.csv`` already holds (a run interrupted
    without its manifest, or rows added on purpose). Without it a run computes its whole
    selection, except that the manifest of an interrupted run of the same cells
    (``.benchmark-run.json``) resumes that run."""
    command: str = ""
    """How the run was started (written into ``BENCHMARK.md``)."""


@dataclasses.dataclass
class Plan:
    """A resolved configuration: every name checked, every default filled in."""

    tasks: list[str]
    scenarios: dict[str, list[str]]
    seeds: list[int]
    steps: int | None
    controllers: dict[str, dict[str, Callable]]  # task -> name -> factory(env)
    custom: list[str]  # --policy specs
    policy_task: str | None = None


def parse_seeds(text: str | Iterable[int]) -> list[int]:
    """Seeds from ``"0-4"``, ``"0,2,5"``, ``"0-2,10"`` or a list of ints."""
    if not isinstance(text, str):
        return [int(s) for s in text]
    seeds: list[int] = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        m = re.fullmatch(r"(\d+)-(\d+)", part)
        try:
            if m:
                lo, hi = int(m.group(1)), int(m.group(2))
                if hi < lo:
                    raise ValueError
                seeds += list(range(lo, hi + 1))
            else:
                seeds.append(int(part))
        except ValueError:
            raise BenchmarkError(f"seeds: cannot read {part!r} in {text!r}; expected e.g. "
                                 "'0-4' or '0,1,7'") from None
    if not seeds or any(s < 0 for s in seeds):
        raise BenchmarkError(f"seeds: expected non-negative seeds, got {text!r}")
    return list(dict.fromkeys(seeds))


#: controllers run only when named in ``--controllers``: the gradient MPC
#: differentiates the plant over its horizon at every re-plan (minutes per cell)
OPT_IN = ("mpc-persistence", "mpc-perfect")
#: the perfect-foresight reference (:mod:`heatsync.agents.oracle`): run by default where
#: its stored plans cover the cell (a replay), else only when named (it then computes the
#: missing plans, minutes per task)
ORACLE = "oracle"


def _oracle_factory(env):
    from heatsync.agents.oracle import OraclePolicy

    return OraclePolicy(env)


def default_registry() -> dict[str, dict[str, Callable]]:
    """``heatsync.agents.BASELINES``, the oracle and the gradient MPC factories (opt-in),
    by task."""
    from heatsync.agents import BASELINES
    from heatsync.agents.mpc import MPC_FACTORIES

    reg = {t: dict(per) for t, per in BASELINES.items()}
    for t in reg:
        reg[t][ORACLE] = _oracle_factory
    for t, per in MPC_FACTORIES.items():
        reg.setdefault(t, {}).update(per)
    return reg


def oracle_stored(task: str, scenario: str, seeds, steps: int | None) -> bool:
    """Whether the stored oracle plans cover ``seeds`` of ``task`` on ``scenario`` at
    ``steps`` (``None``: the scenario's own length)."""
    from heatsync.agents.oracle import covers

    return covers(task, scenario, seeds, steps)


def _full(task: str) -> list[str]:
    """The full run's scenarios of a task: its test distribution, then every bundled
    fixed scenario (the case studies; no other task's distributions)."""
    spec = make_task(task).spec
    dists = {f"{t}-{k}" for t in task_names() for k in ("train", "test")}
    return [spec.test_scenario] + [s for s in list_scenarios() if s not in dists]


def _task_name(name: str) -> str:
    try:
        return make_task(name).name
    except ValueError as e:
        raise BenchmarkError(str(e)) from None


def resolve(cfg: BenchmarkConfig, registry: dict | None = None) -> Plan:
    """Fill in the defaults of ``cfg`` and check every name (``registry``: task ->
    controller name -> ``factory(env)``, default :func:`default_registry`)."""
    registry_ = default_registry() if registry is None else registry
    tasks = [_task_name(t) for t in (cfg.tasks or task_names())]
    tasks = list(dict.fromkeys(tasks))
    if cfg.scenarios:
        scen = {t: list(dict.fromkeys(cfg.scenarios)) for t in tasks}
    elif cfg.full:
        scen = {t: _full(t) for t in tasks}
    else:
        scen = {t: [make_task(t).spec.test_scenario] for t in tasks}
    seeds = parse_seeds(cfg.seeds) if cfg.seeds is not None else \
        list(QUICK_SEEDS if cfg.quick else DEFAULT_SEEDS)
    if cfg.steps is not None:
        steps = int(cfg.steps)
        if steps < 1:
            raise BenchmarkError(f"steps: must be >= 1, got {steps}")
    else:
        steps = QUICK_STEPS if cfg.quick else DEFAULT_STEPS

    known = sorted({n for per in registry_.values() for n in per})
    if cfg.controllers is not None:
        unknown = [c for c in cfg.controllers if c not in known]
        if unknown:
            raise BenchmarkError(
                f"controllers: unknown {unknown}; known baselines: {known or 'none'}"
                + ("" if registry_ else " (heatsync.agents.BASELINES is not available)"))
    controllers: dict[str, dict[str, Callable]] = {}
    for t in tasks:
        per = registry_.get(t, {})
        names = [n for n in per if n not in OPT_IN and (n != ORACLE or all(
            oracle_stored(t, s, seeds, steps) for s in scen[t]))] \
            if cfg.controllers is None else [c for c in cfg.controllers if c in per]
        controllers[t] = {n: per[n] for n in names}
    custom = list(dict.fromkeys(cfg.policies))
    policy_task = None
    if cfg.policy_task is not None:
        policy_task = _task_name(cfg.policy_task)
        if not custom:
            raise BenchmarkError("--task: names the task of --policy; no --policy given")
        if policy_task not in tasks:
            tasks.append(policy_task)
            controllers[policy_task] = {}
            scen[policy_task] = (list(cfg.scenarios) if cfg.scenarios else
                                 _full(policy_task) if cfg.full else
                                 [make_task(policy_task).spec.test_scenario])
    for spec in custom:
        for t in tasks:
            if policy_task is None or t == policy_task:
                controllers[t][spec] = policy_factory(spec)
    if not any(controllers.values()):
        raise BenchmarkError(
            "nothing to run: no controller for the selected tasks"
            + ("" if registry_ else " (heatsync.agents.BASELINES is not available; pass "
               "--policy module:attr)"))
    tasks = [t for t in tasks if controllers[t]]
    return Plan(tasks=tasks, scenarios={t: scen[t] for t in tasks}, seeds=seeds, steps=steps,
                 controllers={t: controllers[t] for t in tasks}, custom=custom,
                 policy_task=policy_task)


def policy_factory(spec: str) -> Callable:
    """``factory(env)`` of a ``module:attr`` policy."""

    def make(env):
        from heatsync.agents import load_policy

        return load_policy(spec, env)

    make.spec = spec  # type: ignore[attr-defined]
    return make


def probe_policy(spec: str, task: str, scenario: str, n: int, steps: int | None) -> str | None:
    """Load ``spec`` for ``task`` (raises PolicyError if it does not load) and say why it
    does not fit the task's spaces (None if it fits). Builds the env, compiles nothing."""
    overrides = {} if steps is None else {"episode__steps": int(steps)}
    env = JaxVectorEnv(task, n, scenario=scenario, **overrides)
    return fit_problem(policy_factory(spec)(env), env)


def fit_problem(policy, env) -> str | None:
    """Why ``policy`` does not fit ``env`` (None if it does): one ``act`` on zeros."""
    obs = np.zeros((env.num_envs, *env.single_observation_space.shape), np.float32)
    try:
        a = policy.act(obs)
        check_action(np.asarray(a), env.single_action_space, batch=env.num_envs,
                     name="action")
    except Exception as e:  # a policy for another task fails in its own way
        return f"{type(e).__name__}: {e}"
    return None
