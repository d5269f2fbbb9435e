"""Baselines for the power side: fixed setpoints (every task), firmware-style power
smoothing and low-pass storage dispatch (PowerSmoothing-v0, and Facility's power part)."""

from __future__ import annotations

from typing import Any

import numpy as np

from heatsync.envs.observations import SCHEDULE_HORIZON_S
from heatsync.envs.power_smoothing import smoothing_layout

from .baseline_common import Baseline, physical
from .jax_policy import ConstantPolicy

__all__ = ["FixedSetpoints", "FirmwareSmoothing", "LowPassStorage"]


class FixedSetpoints(Baseline):
    """No-op: every action component 0, which decodes to the scenario's fixed ``control``.

    **Rule**: every actuator at the scenario's ``control`` setpoints (no cap, no floor,
    no ramp limit, storage idle, pump and supply setpoint as the scenario says, LN2
    closed); PowerAwareScheduling and Facility start the oldest waiting job whenever it
    fits, in phase with the running ones (first come, first served: what a queue does with
    no scheduler's choice).

    **Constants**: none. **Source**: the do-nothing reference every benchmark
    reports (what the plant does without a controller). Not tuned.

    Works on every task: ``FixedSetpoints(env)`` takes the task from the env;
    ``FixedSetpoints(params, task="CoolingDispatch")`` from params.
    """

    name = "fixed"
    task_name = "PowerSmoothing"

    def __init__(self, env: Any = None, task: str | None = None, **constants):
        base = getattr(env, "unwrapped", env)
        if task is None and getattr(base, "task", None) is not None:
            task = base.task
        super().__init__(env, task=task, **constants)

    def _setup(self):
        space = self.action_space
        self._action = np.zeros(space.shape, space.dtype)

    def _act(self, obs):
        return np.tile(self._action, (obs.shape[0], 1))

    def jax_policy(self):
        """The same controller as a pure-function policy (:mod:`heatsync.agents.jax_policy`)."""
        return ConstantPolicy.of(self._action)


class _PowerBase(Baseline):
    task_name = "PowerSmoothing"

    def _setup(self):
        self._layout = smoothing_layout(self.params)
        self._segs = {s.name: s for s in self._layout}
        self._per_rack = self.params.action_mode == "per_rack"
        self._width = self.n_racks if self._per_rack else 1
        p = self.params.plant
        self._contract = float(p.grid.contract_limit_w)
        self._slew = float(self.params.filters.slew_frac * p.grid.ramp_limit_w_per_s)
        self._p_max = float(p.gpu.p_max_w)
        self._rack_max = float(np.max(np.asarray(p.gpu.n_gpu) * p.gpu.p_max_w
                                      + np.asarray(p.gpu.p_other_w)))
        self._ramp_max = float(p.gpu.ramp_max_w_per_s)
        self._dt = float(p.dt_s)

    def _idle(self, n, xp=np) -> dict:
        """Knobs off and storage idle: no cap, no floor, unlimited ramps, gains 0."""
        w = self._width
        return {"gpu_cap_w": xp.full((n, w), self._p_max),
                "gpu_floor_frac": xp.zeros((n, w)),
                "ramp_up_w_per_s": xp.full((n, w), self._ramp_max),
                "ramp_down_w_per_s": xp.full((n, w), self._ramp_max),
                "uc_gain": xp.zeros((n, w)), "uc_offset_w": xp.zeros((n, w)),
                "ups_gain": xp.zeros((n, 1)), "ups_ramp": xp.zeros((n, 1))}

    def _encode(self, vals: dict, xp=np) -> np.ndarray:
        return self._layout.encode(vals, xp=xp)


class FirmwareSmoothing(_PowerBase):
    """Firmware-style GPU power smoothing: a power floor plus ramp limits.

    **Rule** (every interval): while any job runs, a power floor of ``floor_frac`` x
    TDP (per rack in ``per_rack`` mode: only on racks running a job) and the ramp limits
    ``ramp_up_w_per_s`` / ``ramp_down_w_per_s`` (W/s per GPU); no cap; storage idle.
    The floor keeps the GPUs burning power through the communication phase and the slow
    ramp-down stretches the drop, so the grid swing shrinks at the price of wasted
    energy (paid through the energy bill); a ramp-up limit below the compute ramp would
    slow the job (lost work).

    **Source**: NVIDIA's GPU power-smoothing feature (NVML power smoothing: floor as a
    share of TDP, ramp-up / ramp-down rates; PHYSICS.md "firmware smoothing knobs"), as
    evaluated in Choukse et al., *Power Stabilization for AI Training Datacenters*,
    arXiv 2508.14318.

    **Constants** (``configs/controllers.yaml``, key ``firmware``): ``floor_frac`` (of
    TDP), ``ramp_up_w_per_s``, ``ramp_down_w_per_s`` (per GPU). Tuned: see ``tuned_on``.
    """

    name = "firmware"

    jax_ready = True

    def _act(self, obs, xp=np):
        n = obs.shape[0]
        vals = self._idle(n, xp)
        has_job = (self.k_obs(obs, "phase_sin") ** 2 + self.k_obs(obs, "phase_cos") ** 2) > 0.5
        on = has_job if self._per_rack else xp.any(has_job, axis=1, keepdims=True)
        vals["gpu_floor_frac"] = xp.where(on, self.k("floor_frac", n), 0.0)
        vals["ramp_up_w_per_s"] = physical(self.k("ramp_up_w_per_s", n), n, self._width, xp)
        vals["ramp_down_w_per_s"] = physical(self.k("ramp_down_w_per_s", n), n, self._width, xp)
        return self._encode(vals, xp)


class LowPassStorage(_PowerBase):
    """Low-pass storage dispatch with state-of-charge feedback and a feedforward of the
    job schedule: the rack ultracapacitors and the UPS cover the load minus its low-pass,
    so the grid sees only the slow part, and the grid target ramps ahead of scheduled
    job starts and stops.

    **Rule** (every interval; GPU knobs off):

    * rack tier (gain ``uc_gain``): the bus-draw target is the env's running mean of
      the rack's power (8 s low-pass) minus ``(soc - uc_soc_ref) E_max / tau_uc_soc_s``,
      so the capacitor delivers the fast part and drifts back to its reference;
    * facility tier (gain 1): the grid-draw target moves (at most at the env's slew
      limit, 95 % of the ramp limit) toward the env's running facility demand (60 s
      low-pass) plus ``(ups_soc_ref - soc) x ups_soc_gain_w`` (the battery's losses
      drain it, and a small one fast) plus ``reserve_gain`` x that gain x the share of
      capacity missing below ``reserve_margin`` above the ride-through reserve; and a
      feedforward: for each
      job slot whose scheduled start (stop) is within the time ``h = dP / (2 slew)``
      (``dP``: the slot's racks x ``rack_swing_w``, the rise of a rack when its job
      runs), the target is raised (lowered) by ``dP (h - t) / (2 h)``, so the grid
      ramps symmetrically around the step and the UPS's charge before it pays for its
      discharge after.

    **Source**: the classic low-pass (filter-based) power-sharing rule of hybrid
    energy-storage systems (battery + supercapacitor: the supercapacitor takes the
    high-frequency part), applied to the training-load swings of arXiv 2508.14318 with
    the grid ramp cap of PHYSICS.md (10 MW/min for 150 MW, scaled); the feedforward of
    scheduled steps is standard ramp-rate control of storage plants.

    **Constants** (``configs/controllers.yaml``, key ``lowpass``): ``uc_gain`` (1: the
    capacitors take the fast part; 0: the UPS takes it all, the registry's
    ``lowpass_ups``), ``uc_soc_ref``, ``tau_uc_soc_s``, ``ups_soc_ref``,
    ``ups_soc_gain_w``, ``reserve_margin``, ``reserve_gain``, ``rack_swing_w``,
    ``feedforward`` (0/1). Tuned: see ``tuned_on``.
    """

    name = "lowpass"

    jax_ready = True

    def _act(self, obs, xp=np):
        n, w = obs.shape[0], self._width
        k = self.k
        vals = self._idle(n, xp)
        # rack tier
        uc_size = self.k_obs(obs, "uc_size") * self._rack_max  # J per rack (mean)
        uc_soc = self.k_obs(obs, "uc_soc")
        uc_soc = uc_soc if self._per_rack else xp.mean(uc_soc, axis=1, keepdims=True)
        vals["uc_gain"] = physical(k("uc_gain", n), n, w, xp)
        vals["uc_offset_w"] = -(uc_soc - k("uc_soc_ref", n)) * uc_size / k("tau_uc_soc_s", n)
        # facility tier
        soc = self.k_obs(obs, "ups_soc")
        reserve = self.k_obs(obs, "ups_reserve")  # energy above the reserve / capacity
        offset = (k("ups_soc_ref", n) - soc) * k("ups_soc_gain_w", n)
        offset += k("reserve_gain", n) * xp.maximum(k("reserve_margin", n) - reserve, 0.0) \
            * k("ups_soc_gain_w", n)
        # feedforward of scheduled starts (+) and stops (-); a task whose jobs come from
        # a queue (Facility) has no schedule to read
        if "j_share" in self.obs_index:
            offset += k("feedforward", n) * self._feedforward_w(obs, n, xp)
        # the target moves toward demand + offset at up to the slew limit
        want = self.k_obs(obs, "demand_mean") * self._contract + offset
        target = self.k_obs(obs, "ups_target") * self._contract
        vals["ups_gain"] = xp.ones((n, 1))
        vals["ups_ramp"] = xp.clip((want - target) / (self._slew * self._dt), -1.0, 1.0)
        return self._encode(vals, xp)

    def _feedforward_w(self, obs, n, xp=np):
        """The grid-target offset ramping around the scheduled job steps (N, 1) (W)."""
        share = self.k_obs(obs, "j_share")
        d_p = share * self.n_racks * self.k("rack_swing_w", n)
        h = d_p / (2.0 * self._slew)
        out = xp.zeros((n, 1))
        for name, sign in (("j_start_in", 1.0), ("j_stop_in", -1.0)):
            t_to = self.k_obs(obs, name) * SCHEDULE_HORIZON_S
            near = (t_to > 0.0) & (t_to < h)
            ramp = xp.where(near, d_p * (h - t_to) / xp.maximum(2.0 * h, 1e-9), 0.0)
            out += sign * xp.sum(ramp, axis=1, keepdims=True)
        return out
