"""Gymnasium registration of the heatsync ids (lazy: nothing heavy is imported)."""

from __future__ import annotations

import gymnasium

__all__ = ["ENV_IDS", "register_envs"]

#: id -> (Gymnasium entry point, vector entry point)
ENV_IDS = {
    "heatsync/PowerSmoothing-v0": (
        "heatsync.envs.power_smoothing:PowerSmoothingEnv",
        "heatsync.envs.vector:power_smoothing_vector"),
    "heatsync/CoolingDispatch-v0": (
        "heatsync.envs.cooling_dispatch:CoolingDispatchEnv",
        "heatsync.envs.vector:cooling_dispatch_vector"),
    "heatsync/PowerAwareScheduling-v0": (
        "heatsync.envs.scheduling:PowerAwareSchedulingEnv",
        "heatsync.envs.vector:power_aware_scheduling_vector"),
    "heatsync/Facility-v0": (
        "heatsync.envs.facility:FacilityEnv",
        "heatsync.envs.vector:facility_vector"),
}


def register_envs() -> None:
    """Register every id with Gymnasium (idempotent). The time limit comes from the
    scenario (``episode.steps``) inside the env, so no ``TimeLimit`` wrapper is added;
    ``gymnasium.make_vec`` uses the jitted :class:`~heatsync.envs.JaxVectorEnv`."""
    for env_id, (entry, vector_entry) in ENV_IDS.items():
        if env_id not in gymnasium.registry:
            gymnasium.register(id=env_id, entry_point=entry, vector_entry_point=vector_entry)
