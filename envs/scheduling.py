"""PowerAwareScheduling: start, defer or phase-offset training jobs from a queue."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from gymnasium import spaces

from . import observations as _obs
from ._gym import HeatsyncEnv
from .registry import task_spec
from .reward import Reward
from .task import Task

__all__ = ["PowerAwareScheduling", "PowerAwareSchedulingEnv"]


def _with_slots(task: Task, scenario, overrides: dict):
    """Load the scenario with one job slot per rack unless the caller set n_jobs."""
    sc = Task.load(task, scenario, **overrides)
    given = "plant__n_jobs" in overrides or "n_jobs" in (overrides.get("plant") or {})
    if not given and sc.params.n_jobs < sc.params.n_racks:
        sc = Task.load(task, scenario, **overrides, plant__n_jobs=sc.params.n_racks)
    return sc


class PowerAwareScheduling(Task):
    """Functional PowerAwareScheduling task (see :class:`PowerAwareSchedulingEnv`)."""

    spec = task_spec("PowerAwareScheduling")
    reward = Reward(("work_value", "energy", "demand", "carbon", "lost_work", "deadline",
                     "throttle", "trip", "hazard"), terminal=("trip", "hazard"))
    has_queue = True

    def load(self, scenario=None, **overrides):
        return _with_slots(self, scenario, overrides)

    def action_space(self, params):
        q = params.queue
        return spaces.MultiDiscrete(np.array([q.n_visible + 1, q.n_phase_bins], np.int64))

    def action_names(self, params):
        return ["job", "phase_bin"]

    def _decode(self, action, params, state):
        a = jnp.asarray(action).astype(jnp.int32)
        q = params.queue
        job = jnp.clip(a[0], 0, q.n_visible)
        offset = jnp.clip(a[1], 0, q.n_phase_bins - 1) / q.n_phase_bins
        return params.control, (jnp.minimum(job, q.n_visible - 1), job < q.n_visible, offset)

    def _pieces(self, params, state):
        return (_obs.time_pieces(params, state)
                + _obs.exo_pieces(params, state, ("ambient", "price", "carbon"))
                + _obs.grid_pieces(params, state, substeps=False)
                + _obs.rack_power_pieces(params, state)[:1]
                + _obs.thermal_pieces(params, state)
                + _obs.queue_pieces(params, state)
                + _obs.action_pieces(params, state))


class PowerAwareSchedulingEnv(HeatsyncEnv):
    """A queue of training jobs; each step the agent starts one on free racks,
    defers, or offsets a new job's phase against the running ones: work value
    against energy, carbon, peak demand and thermal limits.

    Default scenario ``PowerAwareScheduling-train`` (8 racks, prices, carbon and ambient
    drawn per episode; 3600 steps of 1 s; discount 0.999); the benchmark ranks on the
    held-out ``PowerAwareScheduling-test``. The scenario's
    own jobs are dropped for this task: jobs come from a queue drawn from the
    episode's PRNG key (:class:`~heatsync.envs.QueueParams`: 32 jobs, 4 waiting
    at t = 0, the rest arriving over the first 75 % of the episode; 1 to R/2
    racks, 2-15 min at nominal pace, 1.5-4 s iterations at 40-70 % duty,
    deadline 1.5-4 x duration after arrival, value 0.5-1.5 per rack-s). Job
    slots are the plant's ``n_jobs``, raised to R unless you pass
    ``plant__n_jobs``. All actuators other than job placement run at the
    scenario's fixed ``control`` setpoints.

    **Actions** (``MultiDiscrete([Q + 1, P])`` = ``[5, 4]``):

    =========  ========================================================================
    component  meaning
    =========  ========================================================================
    job        k < Q: start the (k+1)-th visible waiting job on the lowest-numbered
               free racks (no-op if it does not fit; 0, the default, is first come,
               first served); Q: defer (start nothing)
    phase_bin  b: the new job's iteration position is b / P of a period ahead of the
               largest running job's (0: in phase, P/2: anti-phase)
    =========  ========================================================================

    Out-of-range values are clipped; NaN, non-integers, wrong shape or dtype
    raise ``ValueError``.

    **Observations** (float32 Box in [-10, 10], 136 components for R = J = 8,
    Q = 4):

    ===================  ====  ==================================================
    name                 size  meaning and scale
    ===================  ====  ==================================================
    time_frac            1     step / episode length
    hour_sin/cos         2     time of day
    ambient              1     (T_ambient - 25 degC) / 10 K
    price, carbon        2     / peak price, / mean intensity
    p_grid               1     last interval's mean grid draw / contract limit
    grid_hp              1     high-passed grid draw / band RMS limit
    peak_demand          1     15-min demand peak so far / contract
    p_rack               R     rack IT power / rack max
    t_junction, tripped  2R    (T - 60 degC) / 30 K; 0/1
    t_supply, t_fw       2     (T - 32 degC) / 10 K
    q_*                  10Q   visible job: present, racks / R, duration / 900 s,
                               period / 4 s, duty, u_compute, u_comm, slack /
                               900 s, value, fits
    j_*                  7J    job slot: running, racks / R, share left, phase
                               sin/cos, slack / 900 s, value
    free_racks           1     free racks / R
    waiting, done        2     waiting / done jobs over the table size
    prev_action          2     the previous action
    ===================  ====  ==================================================

    **Reward** (USD, :mod:`heatsync.envs.reward`; ``info["reward_<term>"]`` sum to it):

    ============  ================================================================
    term          per interval
    ============  ================================================================
    work_value    + value-weighted rack-s of progress at the GPU-hour value
    energy        grid and generator energy at the tariff
    demand        demand-charge rent on the 15-min peak estimate
    carbon        kg CO2 at the scenario's carbon price
    lost_work     scheduled rack-s not done (throttling, checkpoints) at the GPU-hour
                  value
    deadline      rack-s of jobs past their deadline, at the GPU-hour value
    throttle      GPU-s above the slowdown temperature, at its shadow price
    trip, hazard  terminal: the pod's work for the rest of the episode
    ============  ================================================================

    **Termination**: any rack trip or an oxygen hazard. **Truncation**: the
    episode length; never both.

    Example::

        import gymnasium as gym
        import heatsync

        env = gym.make("heatsync/PowerAwareScheduling-v0", episode__steps=60)
        obs, info = env.reset(seed=0)
        obs, reward, terminated, truncated, info = env.step([0, 2])  # the oldest job, anti-phase
        print(info["job_started"], info["jobs_running"], info["reward_work_value"])
    """

    task = PowerAwareScheduling()
