"""PowerSmoothing: firmware power knobs and storage dispatch against grid swings."""

from __future__ import annotations

from . import observations as _obs
from ._gym import HeatsyncEnv
from .registry import task_spec
from .reward import Reward
from .spaces import smoothing_layout
from .task import Task

__all__ = ["PowerSmoothing", "PowerSmoothingEnv"]


class PowerSmoothing(Task):
    """Functional PowerSmoothing task (see :class:`PowerSmoothingEnv` for the tables)."""

    spec = task_spec("PowerSmoothing")
    reward = Reward(("lost_work", "waste", "ramp", "band", "storage_wear", "unserved", "trip"),
                    terminal=("trip", "unserved"))

    def layout(self, params):
        return smoothing_layout(params.plant)

    def _pieces(self, params, state):
        return (_obs.time_pieces(params, state)
                + _obs.exo_pieces(params, state, ("grid_up",))
                + _obs.grid_pieces(params, state)
                + _obs.rack_power_pieces(params, state)
                + _obs.storage_pieces(params, state)
                + _obs.thermal_pieces(params, state))


class PowerSmoothingEnv(HeatsyncEnv):
    """Per-rack power cap, floor, ramp limits and ultracapacitor dispatch, plus
    UPS dispatch: keep the grid draw within its ramp and band limits at least
    cost in lost work, wasted energy and storage wear.

    Default scenario ``sync-swings`` (one job on all 8 racks, 2 s iterations at
    50 % duty; 1800 steps of 1 s). Sizes below for R = 8 racks, n_sub = 10
    substeps; cooling runs at the scenario's fixed ``control`` setpoints.

    **Actions** (float32 Box in [-1, 1], 6R + 2 = 50 components, rescaled inside):

    ======================  ======  =====================================  =======
    name                    index   physical range                         scale
    ======================  ======  =====================================  =======
    gpu_cap_w               0-7     [cap_min_w, p_max_w] = [340, 1200] W   lin
    gpu_floor_frac          8-15    [0, floor_max_frac] = [0, 0.9] of TDP  lin
    ramp_up_w_per_s         16-23   [50, 1e5] W/s per GPU                  log
    ramp_down_w_per_s       24-31   [50, 1e5] W/s per GPU                  log
    uc_target_w             32-39   [0, 1.5 x rack max] W rack bus draw    lin
    uc_gain                 40-47   [0, 1]                                 lin
    ups_target_w            48      [0, contract limit] W grid draw        lin
    ups_gain                49      [0, 1]                                 lin
    ======================  ======  =====================================  =======

    ``lin``: lo + (a + 1) / 2 (hi - lo); ``log``: log-uniform over the range.
    Out-of-range values are clipped; NaN, infinite, wrong shape or dtype raise
    ``ValueError``.

    **Observations** (float32 Box in [-10, 10], 76 components):

    =================  ====  ==============================================
    name               size  meaning and scale
    =================  ====  ==============================================
    time_frac          1     step / episode length
    hour_sin/cos       2     time of day
    grid_up            1     grid present, 0/1
    p_grid             1     last interval's mean grid draw / contract limit
    p_grid_sub         10    last interval's substep grid draw / contract
    grid_hp            1     high-passed (0.1 Hz) grid draw / (20 % of contract)
    peak_demand        1     15-min demand peak so far / contract
    p_rack             R     rack IT power / rack max
    u_rack             R     GPU utilization the rack's job asks for now
    phase_sin/cos      2R    iteration position of the rack's job
    uc_soc             R     ultracapacitor state of charge
    ups_soc            1     UPS state of charge
    t_junction         R     (T_junction - 60 degC) / 30 K
    tripped            R     rack down after a trip, 0/1
    t_supply, t_fw     2     (T - 32 degC) / 10 K
    =================  ====  ==============================================

    **Reward** = - sum of weight x term (weights from the scenario's
    ``reward`` section, defaults 1; ``info["reward_<term>"]`` holds each
    weighted term and they sum to the reward):

    ============  ================================================================
    term          per interval (normalizer)
    ============  ================================================================
    lost_work     scheduled rack-s not done / (R rack-s)
    waste         GPU energy above need (floor, slow ramp-down) / pod IT max energy
    ramp          mean substep grid ramp above the limit / (contract per s)
    band          RMS of the 0.1 Hz high-passed grid draw / (20 % of contract)
    storage_wear  UPS life used + ultracap cycles / cycle life, / 1e-6 life
    unserved      IT energy shed / pod IT max energy; terminal charge (below)
    trip          terminal charge (below)
    ============  ================================================================

    **Termination**: a rack trip or unserved IT energy; the terminal term is
    (1 + steps left) x 2, so ending early never pays. **Truncation**: the
    episode length (``episode.steps``); never both.

    Example::

        import gymnasium as gym
        import heatsync  # registers the envs

        env = gym.make("heatsync/PowerSmoothing-v0", episode__steps=60)
        obs, info = env.reset(seed=0)
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        print(reward, info["reward_band"], info["ramp_max_w_per_s"])
    """

    task = PowerSmoothing()
