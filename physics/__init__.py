"""heatsync.physics: the plant as pure JAX functions over frozen pytrees.

Nothing here imports Gymnasium, the envs or the agents.
"""

from . import cdu, coldplate, cryo, gpu, grid, rejection, ultracap, units, ups, workload
from ._pytree import field_info, param, pytree_dataclass, replace, static
from .calibrate import CalibrationError, CalibrationResult, calibrate, fittable_params
from .exogenous import FAULT_KINDS, Exogenous, ExoParams, exogenous_at
from .kpis import (
    KPI_DOC,
    TOTALED,
    add_interval,
    band_share_fft,
    compute_kpis,
    empty_totals,
    kpis_from_totals,
    take_row,
    totals_of_series,
)
from .plant import (
    DEFAULT_SUPPLY_SETPOINT_C,
    OUTPUTS,
    Action,
    Params,
    State,
    actuator_ranges,
    clip_action,
    default_action,
    init_state,
    rack_max_w,
    step,
    stored_energy_j,
    stored_heat_j,
    substep,
)
from .scenario import (
    Scenario,
    ScenarioError,
    check_number,
    deep_merge,
    list_scenarios,
    load_scenario,
    register_section,
)
from .simulate import SERIES_STATE, SimResult, rollout, simulate
from .trace import TraceError, load_trace

__all__ = [
    "Action", "actuator_ranges", "add_interval", "band_share_fft", "calibrate",
    "CalibrationError", "CalibrationResult", "cdu", "check_number", "clip_action", "coldplate",
    "compute_kpis", "cryo", "deep_merge", "default_action", "DEFAULT_SUPPLY_SETPOINT_C",
    "empty_totals", "Exogenous", "exogenous_at", "ExoParams", "FAULT_KINDS", "field_info",
    "fittable_params", "gpu", "grid", "init_state", "KPI_DOC", "TOTALED", "kpis_from_totals",
    "list_scenarios", "load_scenario", "load_trace", "OUTPUTS", "param", "Params",
    "pytree_dataclass", "rack_max_w", "register_section", "rejection", "replace", "rollout",
    "Scenario", "ScenarioError", "SERIES_STATE", "SimResult", "simulate", "State", "static",
    "step", "stored_energy_j", "stored_heat_j", "substep", "take_row", "totals_of_series",
    "TraceError",
    "ultracap", "units", "ups", "workload",
]
