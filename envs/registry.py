"""The one registry of tasks: ids, entry points and what the benchmark ranks them by.

Every consumer (Gymnasium registration, :func:`make_task`, the vector entry points,
the benchmark's tables, the baselines and the perf script) reads the tasks here::

    from heatsync.envs import TASK_SPECS, make_task, task_spec
    spec = task_spec("PowerSmoothing")     # a name, an id or "PowerSmoothing-v0"
    spec.main_kpi, spec.headline           # what the benchmark ranks by and shows
    task = make_task("heatsync/CoolingDispatch-v0")

Entry points are ``module:attr`` strings, so this module imports nothing heavy.
"""

from __future__ import annotations

import dataclasses
import importlib

__all__ = ["TaskSpec", "TASK_SPECS", "task_spec", "task_names", "make_task", "register_envs"]


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """One task's identity and benchmark metadata.

    ``train_scenario`` / ``test_scenario``: the training distribution (what
    ``gymnasium.make`` and training sample) and the held-out test distribution (what the
    benchmark ranks on); ``main_kpi``: ``(KPI, "min" or "max", why)`` the benchmark
    ranks by once the specification is met (episodes that break it rank last);
    ``headline``: KPIs shown beside it; ``discount``: the discount factor the task
    recommends for its episode length.
    """

    name: str
    task: str  # "module:Class" of the functional Task
    env: str  # "module:Class" of the gymnasium.Env
    train_scenario: str
    test_scenario: str
    headline: tuple[str, ...]
    discount: float
    main_kpi: tuple[str, str, str] = (
        "cost_usd", "min", "the episode's cost in USD (the reward is -(cost + penalties))")

    @property
    def default_scenario(self) -> str:
        """The scenario an env of this task loads unless told otherwise (the training
        distribution)."""
        return self.train_scenario

    @property
    def env_id(self) -> str:
        """The registered Gymnasium id."""
        return f"heatsync/{self.name}-v0"

    @property
    def vector_entry(self) -> str:
        """The Gymnasium vector entry point (:func:`heatsync.envs.vector.make_vector`)."""
        return f"heatsync.envs.vector:{_vector_name(self.name)}"


def _vector_name(name: str) -> str:
    snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")
    return f"{snake}_vector"


TASK_SPECS: dict[str, TaskSpec] = {s.name: s for s in (
    TaskSpec(
        name="PowerSmoothing",
        task="heatsync.envs.power_smoothing:PowerSmoothing",
        env="heatsync.envs.power_smoothing:PowerSmoothingEnv",
        train_scenario="PowerSmoothing-train", test_scenario="PowerSmoothing-test",
        headline=("violation_s", "band_rms_w", "ramp_violation_s", "work_lost_frac",
                  "energy_waste_kwh", "energy_loss_kwh", "ups_life_used"),
        discount=0.99,
    ),
    TaskSpec(
        name="CoolingDispatch",
        task="heatsync.envs.cooling_dispatch:CoolingDispatch",
        env="heatsync.envs.cooling_dispatch:CoolingDispatchEnv",
        train_scenario="CoolingDispatch-train", test_scenario="CoolingDispatch-test",
        headline=("violation_s", "energy_cooling_kwh", "throttled_gpu_s", "overcool_k_s",
                  "ln2_used_kg", "water_l", "t_junction_max_c"),
        discount=0.999,
    ),
    TaskSpec(
        name="PowerAwareScheduling",
        task="heatsync.envs.scheduling:PowerAwareScheduling",
        env="heatsync.envs.scheduling:PowerAwareSchedulingEnv",
        train_scenario="PowerAwareScheduling-train", test_scenario="PowerAwareScheduling-test",
        headline=("violation_s", "work_done_rack_s", "peak_demand_kw", "carbon_kg",
                  "cost_energy_usd", "cost_demand_usd"),
        discount=0.999,
    ),
    TaskSpec(
        name="Facility",
        task="heatsync.envs.facility:Facility",
        env="heatsync.envs.facility:FacilityEnv",
        train_scenario="Facility-train", test_scenario="Facility-test",
        headline=("violation_s", "work_done_rack_s", "band_rms_w", "peak_demand_kw",
                  "throttled_gpu_s", "trips"),
        discount=0.999,
    ),
)}


def task_names() -> list[str]:
    """Task names in registry order (the order tables list them)."""
    return list(TASK_SPECS)


def task_spec(task) -> TaskSpec:
    """The :class:`TaskSpec` of a name (``"PowerSmoothing"``), an id
    (``"heatsync/PowerSmoothing-v0"``, ``"PowerSmoothing-v0"``, ``"heatsync:..."``) or a
    task object. Raises ``ValueError`` listing the known ids."""
    name = getattr(task, "name", None) if not isinstance(task, str) else None
    key = name if name is not None else str(task)
    if key.startswith("heatsync:"):
        key = key[len("heatsync:"):]
    key = key.split("/")[-1]
    if key.endswith("-v0"):
        key = key[:-3]
    if key not in TASK_SPECS:
        ids = ", ".join(s.env_id for s in TASK_SPECS.values())
        raise ValueError(f"task: unknown {task!r}; known: {ids}")
    return TASK_SPECS[key]


def _load(entry: str):
    mod, _, attr = entry.partition(":")
    return getattr(importlib.import_module(mod), attr)


def make_task(task):
    """The functional :class:`~heatsync.envs.Task` of a task object, name or id."""
    if hasattr(task, "reset") and hasattr(task, "step") and hasattr(task, "name"):
        return task
    return _load(task_spec(task).task)()


def register_envs() -> None:
    """Register every id with Gymnasium (idempotent). The time limit comes from the
    scenario (``episode.steps``) inside the env, so no ``TimeLimit`` wrapper is added;
    ``gymnasium.make_vec`` uses the jitted :class:`~heatsync.envs.JaxVectorEnv`."""
    import gymnasium

    for spec in TASK_SPECS.values():
        if spec.env_id not in gymnasium.registry:
            gymnasium.register(id=spec.env_id, entry_point=spec.env,
                               vector_entry_point=spec.vector_entry)
