"""heatsync: a JAX-jitted, differentiable simulator and benchmark for the power and
cooling of AI data centers.

Public facade::

    import heatsync
    sc = heatsync.load_scenario("default")
    res = heatsync.simulate(sc, steps=600)
    res.kpis["band_share"], res.series["p_grid_mean_w"]
"""

from heatsync import _xla

_xla.configure()  # before anything creates JAX's backend (see heatsync/_xla.py)

from heatsync.envs.registration import register_envs as _register_envs  # noqa: E402
from heatsync.physics import (  # noqa: E402
    KPI_DOC,
    Action,
    Params,
    Scenario,
    ScenarioError,
    SimResult,
    State,
    list_scenarios,
    load_scenario,
    simulate,
)

__version__ = "0.1.0"

_register_envs()  # gymnasium ids heatsync/<Task>-v0

__all__ = [
    "Action", "KPI_DOC", "Params", "Scenario", "ScenarioError", "SimResult", "State",
    "__version__", "list_scenarios", "load_scenario", "simulate",
]
