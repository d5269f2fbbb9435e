"""PowerSmoothing: firmware power knobs and storage dispatch against grid swings."""

from __future__ import annotations

import jax.numpy as jnp

from heatsync.physics import rack_max_w, replace

from . import observations as _obs
from ._gym import HeatsyncEnv
from .registry import task_spec
from .reward import Reward
from .spaces import ActionLayout, Segment, plant_segment
from .task import Task, _per_rack

__all__ = ["PowerSmoothing", "PowerSmoothingEnv", "smoothing_layout", "smoothing_action",
           "UC_OFFSET_FRAC"]

#: the ultracapacitor target's range around the rack's running mean: +- this x rack max
UC_OFFSET_FRAC = 0.5


def smoothing_layout(params) -> ActionLayout:
    """Power knobs and storage dispatch (PowerSmoothing, Facility): pod-level (one value
    for every rack) or per rack (``params.action_mode``); 0 is the scenario's control."""
    p, c = params.plant, params.control
    n = p.n_racks if params.action_mode == "per_rack" else 1
    rack_max = jnp.max(rack_max_w(p) * jnp.ones((p.n_racks,)))
    return ActionLayout([
        plant_segment(p, "gpu_cap_w", n, "center", "W per GPU", c.gpu_cap_w),
        plant_segment(p, "gpu_floor_frac", n, "center", "1 of TDP", c.gpu_floor_frac),
        plant_segment(p, "ramp_up_w_per_s", n, "logcenter", "W/s per GPU", c.ramp_up_w_per_s),
        plant_segment(p, "ramp_down_w_per_s", n, "logcenter", "W/s per GPU",
                      c.ramp_down_w_per_s),
        plant_segment(p, "uc_gain", n, "center", "1", c.uc_gain),
        Segment("uc_offset_w", n, -UC_OFFSET_FRAC * rack_max, UC_OFFSET_FRAC * rack_max,
                "center", "W of rack bus draw above the rack's running mean", 0.0),
        plant_segment(p, "ups_gain", 1, "center", "1", c.ups_gain),
        Segment("ups_ramp", 1, -1.0, 1.0, "center",
                "change of the grid-draw target, share of the slewed ramp limit", 0.0),
    ])


def smoothing_action(values: dict, params, state) -> dict:
    """Plant setpoints of decoded smoothing values: the ultracapacitor bus-draw target is
    the rack's running mean plus ``uc_offset_w``; the grid-draw target moves by
    ``ups_ramp`` x ``slew_frac`` x the ramp limit per interval from where it was, so it
    never ramps faster than the grid allows, and holds where the action is 0."""
    p, m = state.plant_params, state.memory
    slew = params.filters.slew_frac * p.grid.ramp_limit_w_per_s * p.dt_s
    target = m.ups_target_w + values["ups_ramp"] * slew
    out = _per_rack(params, values)
    out["uc_target_w"] = jnp.broadcast_to(m.rack_mean_w + values["uc_offset_w"],
                                          m.rack_mean_w.shape)
    out["ups_target_w"] = jnp.clip(target, 0.0, p.grid.contract_limit_w)
    return out


class PowerSmoothing(Task):
    """Functional PowerSmoothing task (see :class:`PowerSmoothingEnv` for the tables)."""

    spec = task_spec("PowerSmoothing")
    reward = Reward(("energy", "demand", "storage_wear", "storage_value", "lost_work", "ramp",
                     "band", "unserved", "violation", "trip"), terminal=("trip", "unserved"))

    def layout(self, params):
        return smoothing_layout(params)

    def _decode(self, action, params, state):
        values = self.layout(params).decode(action)
        return replace(params.control, **smoothing_action(values, params, state)), None

    def _pieces(self, params, state):
        return (_obs.time_pieces(params, state)
                + _obs.exo_pieces(params, state, ("grid_up", "price"))
                + _obs.grid_pieces(params, state)
                + _obs.memory_pieces(params, state)
                + _obs.rack_power_pieces(params, state)
                + _obs.storage_pieces(params, state)
                + _obs.schedule_pieces(params, state)
                + _obs.fault_pieces(params, state)
                + _obs.thermal_pieces(params, state)
                + _obs.action_pieces(params, state))


class PowerSmoothingEnv(HeatsyncEnv):
    """GPU power knobs, rack ultracapacitors and the UPS against the grid's ramp and
    0.1-20 Hz band limits, at least cost in USD: energy (losses and firmware waste
    included), demand, storage wear, storage drawn down, lost training work.

    Default scenario ``PowerSmoothing-train`` (1-3 jobs of 0.8-4 s iterations that
    start, stop and checkpoint on 8 racks, rack storage from GB300-class up, a UPS of
    30-250 kWh, a grid outage half the time; 1800 steps of 1 s; discount 0.99); the
    benchmark ranks on the held-out ``PowerSmoothing-test`` (longer iterations, smaller
    storage, more outages). Cooling runs at the scenario's fixed ``control``.

    **Actions** (float32 Box in [-1, 1]; 0 is the scenario's control, the ends of a
    range are reached at |a| = 0.9; 8 components, ``action_mode="per_rack"`` gives the
    first six one per rack: 6R + 2):

    =================  ============================================================
    name               meaning (0 ->)
    =================  ============================================================
    gpu_cap_w          GPU power cap, [cap_min, TDP] = [340, 1200] W (0 -> no cap)
    gpu_floor_frac     power floor, [0, 0.9] of TDP (0 -> none)
    ramp_up_w_per_s    ramp-up limit, log [50, 1e5] W/s per GPU (0 -> unlimited)
    ramp_down_w_per_s  ramp-down limit, same
    uc_gain            ultracapacitor gain [0, 1] (0 -> idle)
    uc_offset_w        capacitor bus-draw target above the rack's running mean power
                       (8 s low-pass), +-0.5 rack max
    ups_gain           UPS gain [0, 1] (0 -> idle; it carries outages regardless)
    ups_ramp           change of the grid-draw target per interval, [-1, 1] x 95 % of the
                       ramp limit (0 -> hold it; it starts at the demand at reset)
    =================  ============================================================

    **Observations** (float32 Box in [-10, 10], 116 components for R = 8 racks, J = 3
    job slots, n_sub = 10; ``env.obs_names`` labels each):

    =================  ====  ==================================================
    name               size  meaning and scale
    =================  ====  ==================================================
    time_frac          1     step / episode length
    hour_sin/cos       2     time of day
    grid_up, price     2     grid present 0/1; energy price / peak price
    p_grid             1     last interval's mean grid draw / contract limit
    p_grid_sub         10    last interval's substep grid draw / contract
    grid_hp            1     high-passed (0.1 Hz) grid draw / band RMS limit
    peak_demand        1     15-min demand peak so far / contract
    demand_mean        1     facility demand, 60 s low-pass / contract
    ups_target         1     grid-draw target last applied / contract
    rack_mean          R     rack IT power, 8 s low-pass / rack max
    ups_reserve        1     UPS energy above its ride-through reserve / capacity
    ups_size, uc_size  2     UPS capacity / (contract x 1 h); rack storage / (rack max x 1 s)
    p_rack             R     rack IT power / rack max
    u_rack             R     GPU utilization the rack's job asks for now
    phase_sin/cos      2R    iteration position of the rack's job
    uc_soc, ups_soc    R+1   states of charge
    j_on, j_share      2J    job slot runs now; its racks / R
    j_start_in         J     time to the slot's scheduled start / 10 min (cap 1)
    j_stop_in          J     time to its scheduled stop / 10 min (cap 1)
    fault_clock        6     time since each fault kind began / 1 h (0: none)
    t_junction         R     (T_junction - 60 degC) / 30 K
    tripped            R     rack down after a trip, 0/1
    t_supply, t_fw     2     (T - 32 degC) / 10 K
    prev_action        8     the previous action (zeros at reset)
    =================  ====  ==================================================

    **Reward** (USD, :mod:`heatsync.envs.reward`): ``-(energy + demand + storage_wear +
    storage_value + lost_work) - (ramp + band + unserved + violation + trip)``;
    ``info["reward_<term>"]`` sum to it. The specification: no grid ramp beyond the
    limit, the interval's in-band RMS at most ``grid.band_rms_limit_w``, no unserved
    energy, no trip.

    **Termination**: a rack trip or unserved IT energy (charged the rest of the episode's
    work). **Truncation**: the episode length; never both.

    Example::

        import gymnasium as gym
        import heatsync  # registers the envs

        env = gym.make("heatsync/PowerSmoothing-v0", episode__steps=60)
        obs, info = env.reset(seed=0)
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        print(reward, info["reward_band"], info["ramp_max_w_per_s"])
    """

    task = PowerSmoothing()
