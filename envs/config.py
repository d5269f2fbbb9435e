"""The scenario sections the envs own: ``episode`` and ``reward``.

Importing this module registers both with :func:`heatsync.physics.register_section`
(``import heatsync`` does), so :func:`heatsync.load_scenario` validates them with the
rest of the scenario, before any tracing::

    episode: {steps: 3600}            # the time limit, control intervals
    reward: {energy_cost: 1.0, ...}   # weights of the reward terms (REWARD_KEYS)

:func:`episode_steps` and :func:`reward_weights` read them from a loaded scenario.
"""

from __future__ import annotations

from heatsync.physics import Scenario, check_number, register_section

from .reward import REWARD_KEYS

__all__ = ["EPISODE_KEYS", "DEFAULT_EPISODE_STEPS", "episode_steps", "reward_weights"]

#: keys of the ``episode`` section and their allowed ranges
EPISODE_KEYS = {"steps": (1, 10_000_000)}
#: the time limit of a scenario whose ``episode`` section names none (one hour of 1-s steps)
DEFAULT_EPISODE_STEPS = 3600


def _episode(value, err) -> dict:
    value = {} if value is None else value
    if not isinstance(value, dict):
        raise err("episode", "expected a mapping")
    for k, v in value.items():
        if k not in EPISODE_KEYS:
            raise err(f"episode.{k}", f"unknown key; allowed: {', '.join(EPISODE_KEYS)}")
        check_number(f"episode.{k}", v, *EPISODE_KEYS[k], integer=True)
    return {"steps": int(value.get("steps", DEFAULT_EPISODE_STEPS))}


def _reward(value, err) -> dict:
    value = {} if value is None else value
    if not isinstance(value, dict):
        raise err("reward", "expected a mapping of weights")
    weights = dict(REWARD_KEYS)
    for k, v in value.items():
        if k not in REWARD_KEYS:
            raise err(f"reward.{k}", f"unknown weight; allowed: {', '.join(REWARD_KEYS)}")
        weights[k] = float(check_number(f"reward.{k}", v, 0.0, 1e9))
    return weights


register_section("episode", _episode)
register_section("reward", _reward)


def episode_steps(sc: Scenario) -> int:
    """The scenario's time limit in control intervals (``episode.steps``)."""
    return int(sc.sections["episode"]["steps"])


def reward_weights(sc: Scenario) -> dict[str, float]:
    """Every reward weight of the scenario (its ``reward`` section over the defaults)."""
    return dict(sc.sections["reward"])
