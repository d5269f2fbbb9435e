"""heatsync.physics: the plant as pure JAX functions over frozen pytrees.

Nothing here imports Gymnasium, the envs or the agents.
"""

from . import cdu, coldplate, cryo, gpu, grid, rejection, ultracap, ups, workload
from ._pytree import replace
from .calibrate import CalibrationError, CalibrationResult, calibrate, fittable_params
from .exogenous import FAULT_KINDS, Exogenous, ExoParams, exogenous_at
from .plant import (
    OUTPUTS,
    Action,
    Params,
    State,
    clip_action,
    default_action,
    init_state,
    step,
    stored_energy_j,
    stored_heat_j,
)
from .scenario import REWARD_KEYS, Scenario, ScenarioError, list_scenarios, load_scenario
from .simulate import KPI_DOC, SERIES_STATE, SimResult, compute_kpis, rollout, simulate
from .trace import TraceError, load_trace

__all__ = [
    "Action", "CalibrationError", "CalibrationResult", "Exogenous", "ExoParams", "FAULT_KINDS",
    "KPI_DOC", "OUTPUTS", "Params", "REWARD_KEYS", "SERIES_STATE", "Scenario", "ScenarioError",
    "SimResult", "State", "TraceError", "calibrate", "cdu", "clip_action", "coldplate",
    "compute_kpis", "cryo", "default_action", "exogenous_at", "fittable_params", "gpu", "grid",
    "init_state", "list_scenarios", "load_scenario", "load_trace", "rejection", "replace",
    "rollout", "simulate", "step", "stored_energy_j", "stored_heat_j", "ultracap", "ups",
    "workload",
]
