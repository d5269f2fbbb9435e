"""Facility: every actuator at once (power knobs, storage, cooling, LN2, jobs)."""

from __future__ import annotations

import jax.numpy as jnp

from heatsync.physics import replace

from . import observations as _obs
from ._gym import HeatsyncEnv
from .registry import task_spec
from .reward import REWARD_KEYS, Reward
from .scheduling import _with_slots
from .spaces import ActionLayout, Segment, cooling_layout, smoothing_layout
from .task import Task

__all__ = ["Facility", "FacilityEnv", "scheduling_layout"]


def scheduling_layout(params) -> ActionLayout:
    """The three job-placement components at the end of a Facility action."""
    q = params.queue.n_visible
    return ActionLayout([Segment("start_job", 1, 0.0, 1.0, "step", "start if > 0"),
                         Segment("job_select", 1, 0.0, float(q - 1), "bins", "visible job"),
                         Segment("phase_offset", 1, 0.0, 1.0, "lin", "of a period")])


class Facility(Task):
    """Functional Facility task (see :class:`FacilityEnv` for the tables)."""

    spec = task_spec("Facility")
    reward = Reward(tuple(REWARD_KEYS), terminal=("trip", "hazard"))
    has_queue = True

    def load(self, scenario=None, **overrides):
        return _with_slots(self, scenario, overrides)

    def layout(self, params):
        return (smoothing_layout(params.plant) + cooling_layout(params.plant)
                + scheduling_layout(params))

    def _decode(self, action, params):
        v = self.layout(params).decode(action)
        sched = ("start_job", "job_select", "phase_offset")
        plant = replace(params.control, **{k: x for k, x in v.items() if k not in sched})
        return plant, (v["job_select"].astype(jnp.int32), v["start_job"] > 0.5,
                       v["phase_offset"])

    def _pieces(self, params, state):
        return (_obs.time_pieces(params, state)
                + _obs.exo_pieces(params, state)
                + _obs.grid_pieces(params, state)
                + _obs.rack_power_pieces(params, state)
                + _obs.storage_pieces(params, state)
                + _obs.thermal_pieces(params, state)
                + _obs.cryo_pieces(params, state)
                + _obs.queue_pieces(params, state))


class FacilityEnv(HeatsyncEnv):
    """All actuators at once: per-rack power knobs and ultracapacitors, the UPS,
    the coolant loop and LN2, and job placement from a queue, with every reward
    term.

    Default scenario ``default`` (8 racks, 3600 steps of 1 s). As in
    :class:`PowerAwareSchedulingEnv`, the scenario's own jobs are dropped and
    jobs come from a queue drawn from the episode's key; job slots are the
    plant's ``n_jobs``, raised to R unless you pass ``plant__n_jobs``.

    **Actions** (one float32 Box in [-1, 1], 6R + 2 + 4 + 3 = 57 components for
    R = 8, so stable-baselines3 works; rescaled inside):

    ==================  ======  =========================================  =====
    name                index   physical range                             scale
    ==================  ======  =========================================  =====
    gpu_cap_w           0-7     [340, 1200] W per GPU                      lin
    gpu_floor_frac      8-15    [0, 0.9] of TDP                            lin
    ramp_up_w_per_s     16-23   [50, 1e5] W/s per GPU                      log
    ramp_down_w_per_s   24-31   [50, 1e5] W/s per GPU                      log
    uc_target_w         32-39   [0, 1.5 x rack max] W rack bus draw        lin
    uc_gain             40-47   [0, 1]                                     lin
    ups_target_w        48      [0, contract limit] W grid draw            lin
    ups_gain            49      [0, 1]                                     lin
    pump_speed          50      [0, 1] of rated                            lin
    supply_setpoint_c   51      [10, 45] degC                              lin
    ln2_valve           52      [0, 1]                                     lin
    ln2_order           53      order a delivery if a > 0                  step
    start_job           54      start the selected waiting job if a > 0    step
    job_select          55      visible job floor((a + 1) / 2 x Q)         bins
    phase_offset        56      new job's position ahead of the largest    lin
                                running job, (a + 1) / 2 of a period
    ==================  ======  =========================================  =====

    Out-of-range values are clipped; NaN, infinite, wrong shape or dtype raise
    ``ValueError``.

    **Observations** (float32 Box in [-10, 10], 183 components for R = J = 8,
    Q = 4, n_sub = 10; ``env.obs_names`` labels each):

    =====================  ====  =================================================
    name                   size  meaning and scale
    =====================  ====  =================================================
    time_frac              1     step / episode length
    hour_sin/cos           2     time of day
    ambient                1     (T_ambient - 25 degC) / 10 K
    price, carbon          2     / peak price, / mean intensity
    grid_up                1     0/1
    chiller_ok, pump_ok    2     0/1 (fault flags)
    p_grid                 1     last interval's mean grid draw / contract limit
    p_grid_sub             10    last interval's substep grid draw / contract
    grid_hp                1     high-passed grid draw / (20 % of contract)
    peak_demand            1     15-min demand peak so far / contract
    p_rack                 R     rack IT power / rack max
    u_rack                 R     GPU utilization the rack's job asks for now
    phase_sin/cos          2R    iteration position of the rack's job
    uc_soc                 R     ultracapacitor state of charge
    ups_soc                1     UPS state of charge
    t_junction, tripped    2R    (T - 60 degC) / 30 K; 0/1
    t_supply, t_fw         2     (T - 32 degC) / 10 K
    ln2_tank               1     tank fill, 0-1
    o2                     1     (O2 - 0.209) / 0.02 (alarm at 0.195: -0.7)
    ln2_order_pending      1     0/1
    q_*                    10Q   visible job: present, racks / R, duration /
                                 900 s, period / 4 s, duty, u_compute, u_comm,
                                 slack / 900 s, value, fits
    j_*                    7J    job slot: running, racks / R, share left, phase
                                 sin/cos, slack / 900 s, value
    free_racks             1     free racks / R
    waiting, done          2     waiting / done jobs over the table size
    =====================  ====  =================================================

    **Reward** = work value - sum of weight x cost term, over every key of
    ``REWARD_KEYS`` (weights from the scenario's ``reward`` section;
    ``info["reward_<term>"]`` sum to the reward):

    ============  ================================================================
    term          per interval (normalizer)
    ============  ================================================================
    work_value    + value-weighted rack-s of progress / (R rack-s)
    energy_cost   grid and generator energy cost / (contract limit x dt at peak
                  price)
    demand        demand-charge rent on the 15-min peak estimate, / same USD ref
    carbon        kg CO2 / (contract limit x dt at the mean intensity); weight 0
                  by default
    lost_work     scheduled rack-s not done / (R rack-s)
    waste         GPU energy above need / pod IT max energy
    ramp          mean substep grid ramp above the limit / (contract per s)
    band          RMS of the 0.1 Hz high-passed grid draw / (20 % of contract)
    storage_wear  UPS life used + ultracap cycles / cycle life, / 1e-6 life
    throttle      GPU-s above the slowdown temperature / (R x GPUs x dt)
    overcool      K-s of supply below the condensation floor / (1 K x dt)
    ln2           LN2 consumed, kg / (LN2 that absorbs the pod's IT max, 2.3 kg)
    water         cooling-tower litres / (tower water for the pod's IT max)
    unserved      IT energy shed / pod IT max energy (not terminal here)
    deadline      racks of jobs past their deadline and not done / R
    trip, hazard  terminal charge 2 x (1 + steps left)
    ============  ================================================================

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
