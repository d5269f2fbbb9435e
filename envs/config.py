"""The scenario sections the envs own: ``episode`` and ``reward``.

Importing this module registers both with :func:`heatsync.physics.register_section`
(``import heatsync`` does), so :func:`heatsync.load_scenario` validates them with the
rest of the scenario, before any tracing::

    episode: {steps: 3600}                # the time limit, control intervals
    reward: {gpu_hour_usd: 4.0, ...}      # prices of the USD reward (heatsync.envs.Prices)

:func:`episode_steps` and :func:`reward_prices` read them from a loaded scenario.
"""

from __future__ import annotations

from heatsync.physics import Scenario, check_number, register_section

from .reward import PRICE_KEYS, Prices

__all__ = ["EPISODE_KEYS", "DEFAULT_EPISODE_STEPS", "episode_steps", "reward_prices"]

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
        raise err("reward", "expected a mapping of prices (USD)")
    fields = Prices.__dataclass_fields__
    prices = {}
    for k, v in value.items():
        if k not in PRICE_KEYS:
            raise err(f"reward.{k}", f"unknown price; allowed: {', '.join(PRICE_KEYS)}")
        meta = fields[k].metadata
        prices[k] = float(check_number(f"reward.{k}", v, meta["lo"], meta["hi"]))
    return prices


register_section("episode", _episode)
register_section("reward", _reward)


def episode_steps(sc: Scenario) -> int:
    """The scenario's time limit in control intervals (``episode.steps``)."""
    return int(sc.sections["episode"]["steps"])


def reward_prices(sc: Scenario) -> Prices:
    """The scenario's :class:`~heatsync.envs.reward.Prices` (its ``reward`` section over
    the defaults)."""
    return Prices(**sc.sections["reward"])
