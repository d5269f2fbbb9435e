"""Facility: every actuator at once (power knobs, storage, cooling, LN2, jobs)."""

from __future__ import annotations

import jax.numpy as jnp

from heatsync.physics import replace

from . import observations as _obs
from ._gym import HeatsyncEnv
from .cooling_dispatch import cooling_layout
from .power_smoothing import smoothing_action, smoothing_layout
from .registry import task_spec
from .reward import BENEFITS, COSTS, PENALTIES, Reward
from .scheduling import _with_slots
from .spaces import ActionLayout, Segment
from .task import Task, _per_rack

__all__ = ["Facility", "FacilityEnv", "scheduling_layout"]


def scheduling_layout(params) -> ActionLayout:
    """The three job-placement components at the end of a Facility action."""
    q = params.queue.n_visible
    return ActionLayout([Segment("defer_job", 1, 0.0, 1.0, "step", "defer if > 0"),
                         Segment("job_select", 1, 0.0, float(q - 1), "center", "visible job",
                                 0.0),
                         Segment("phase_offset", 1, 0.0, 1.0, "center", "of a period", 0.0)])


class Facility(Task):
    """Functional Facility task (see :class:`FacilityEnv` for the tables)."""

    spec = task_spec("Facility")
    reward = Reward(tuple(k for k in (*BENEFITS, *COSTS, *PENALTIES) if k != "unserved")
                    + ("unserved",), terminal=("trip", "hazard"))
    has_queue = True

    def load(self, scenario=None, **overrides):
        return _with_slots(self, scenario, overrides)

    def layout(self, params):
        return smoothing_layout(params) + cooling_layout(params) + scheduling_layout(params)

    def _decode(self, action, params, state):
        v = self.layout(params).decode(action)
        plant = {**_per_rack(params, v), **smoothing_action(v, params, state)}
        return replace(params.control, **plant), (jnp.round(v["job_select"]).astype(jnp.int32),
                                                  v["defer_job"] < 0.5, v["phase_offset"])

    def _pieces(self, params, state):
        return (_obs.time_pieces(params, state)
                + _obs.exo_pieces(params, state)
                + _obs.grid_pieces(params, state)
                + _obs.rack_power_pieces(params, state)
                + _obs.storage_pieces(params, state)
                + _obs.memory_pieces(params, state)
                + _obs.fault_pieces(params, state)
                + _obs.thermal_pieces(params, state, outlets=True)
                + _obs.cryo_pieces(params, state)
                + _obs.queue_pieces(params, state)
                + _obs.action_pieces(params, state))


class FacilityEnv(HeatsyncEnv):
    """All actuators at once: per-rack power knobs and ultracapacitors, the UPS,
    the coolant loop and LN2, and job placement from a queue, with every reward
    term.

    Default scenario ``Facility-train`` (8 racks, storage sizes, a hot afternoon with a
    chance of a chiller trip or a grid outage; 3600 steps of 1 s; discount 0.999); the
    benchmark ranks on the held-out ``Facility-test``. As in
    :class:`PowerAwareSchedulingEnv`, the scenario's own jobs are dropped and jobs come
    from a queue drawn from the episode's key; job slots are the plant's ``n_jobs``,
    raised to R unless you pass ``plant__n_jobs``.

    **Actions** (one float32 Box in [-1, 1], 15 components; 0 is the scenario's
    control, the ends of a range at |a| = 0.9; ``action_mode="per_rack"`` makes the
    first six one per rack):

    ==================  ========================================================
    name                meaning (0 ->)
    ==================  ========================================================
    gpu_cap_w, gpu_floor_frac, ramp_up_w_per_s, ramp_down_w_per_s, uc_gain,
    uc_offset_w, ups_gain, ups_ramp
                        the 8 PowerSmoothing components (see
                        :class:`PowerSmoothingEnv`)
    pump_speed, supply_setpoint_c, ln2_valve, ln2_order
                        the 4 CoolingDispatch components (see
                        :class:`CoolingDispatchEnv`)
    defer_job           start nothing if a > 0; otherwise start the selected
                        waiting job when it fits (0 -> first come, first served)
    job_select          visible job round(a / 0.9 x (Q - 1)) (0 and below -> the
                        oldest)
    phase_offset        new job's position ahead of the largest running job,
                        [0, 1) of a period (0 -> in phase)
    ==================  ========================================================

    Out-of-range values are clipped; NaN, infinite, wrong shape or dtype raise
    ``ValueError``.

    **Observations** (float32 Box in [-10, 10], 225 components for R = J = 8,
    Q = 4, n_sub = 10; ``env.obs_names`` labels each): every piece of
    :class:`PowerSmoothingEnv` but the job windows (time_frac, hour_sin/cos, p_grid,
    p_grid_sub, grid_hp, peak_demand, demand_mean, ups_target, rack_mean,
    ups_reserve, ups_size, uc_size, p_rack, u_rack, phase_sin/cos, uc_soc, ups_soc,
    fault_clock, t_junction, tripped), every piece of :class:`CoolingDispatchEnv`
    (ambient, price, carbon, grid_up, chiller_ok, pump_ok, t_rack, t_supply, t_fw,
    ln2_tank, o2, ln2_order_pending) and the queue of :class:`PowerAwareSchedulingEnv`
    (q_*: present, racks, duration, period, duty, u_compute, u_comm, slack, value,
    fits; j_*: running, racks, left, phase sin/cos, slack, value; free_racks, waiting,
    done), then prev_action (15).

    **Reward** (USD): work_value minus every cost term (energy, demand, carbon,
    storage_wear, storage_value, lost_work, ln2, water, deadline) and every penalty
    (ramp, band, throttle, overcool, unserved, violation, trip, hazard) of
    :mod:`heatsync.envs.reward`; ``info["reward_<term>"]`` sum to the reward.

    **Termination**: any rack trip or an oxygen hazard. **Truncation**: the
    episode length; never both.

    Example::

        import gymnasium as gym
        import heatsync

        env = gym.make("heatsync/Facility-v0", episode__steps=60)
        obs, info = env.reset(seed=0)
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        print(reward, sum(v for k, v in info.items() if k.startswith("reward_")))
    """

    task = Facility()
