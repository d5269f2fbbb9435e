"""Schedulers for PowerAwareScheduling-v0: FCFS, EASY backfill, a power-capped
greedy scheduler and a carbon-aware deferral rule.

All read the queue from the observation (``q_*`` of the visible waiting jobs
in arrival order, ``j_*`` of the job slots, ``free_racks``) and keep a small
book per env of the jobs they started (slot, racks, duration, mean power), so
that they can estimate when running jobs end (``j_left`` x duration) and what
the pod draws. A start goes to the lowest-numbered free job slot, as the env
places it (:func:`heatsync.envs._queue.start`). Each step starts at most one
job (the action space allows one).
"""

from __future__ import annotations

import numpy as np

from heatsync.physics import rack_max_w

from .baseline_common import Baseline

__all__ = ["FCFS", "EasyBackfill", "PowerCappedGreedy", "CarbonAwareDeferral", "QueueView"]


class QueueView:
    """Physical readings of the scheduling observations, batched (N, ...)."""

    def __init__(self, base: SchedulerBase, obs: np.ndarray):
        k = base.k_obs
        R, dmax = base.n_racks, base.duration_max_s
        self.present = k(obs, "q_present") > 0.5  # (N, Q)
        self.racks = np.rint(k(obs, "q_racks") * R)  # (N, Q)
        self.duration_s = k(obs, "q_duration") * dmax
        self.slack_s = k(obs, "q_slack") * dmax  # deadline - now
        self.value = k(obs, "q_value")
        self.u_mean = (k(obs, "q_duty") * k(obs, "q_u_compute")
                       + (1.0 - k(obs, "q_duty")) * k(obs, "q_u_comm"))
        self.running = k(obs, "j_running") > 0.5  # (N, J)
        self.left = k(obs, "j_left")  # share of each running job left
        self.slot_racks = np.where(self.running, np.rint(k(obs, "j_racks") * R), 0.0)
        self.free = np.rint(k(obs, "free_racks") * R)  # (N, 1)
        self.fits = self.present & (self.racks <= self.free)
        if "carbon" in base.obs_index:
            self.carbon = k(obs, "carbon")  # intensity / mean (N, 1)


class SchedulerBase(Baseline):
    """Shared book-keeping; subclasses implement :meth:`decide`."""

    task_name = "PowerAwareScheduling"

    def _setup(self):
        p, q = self.params.plant, self.params.queue
        self.duration_max_s = float(q.duration_max_s)
        self.n_visible = int(q.n_visible)
        self.n_bins = int(q.n_phase_bins)
        self.n_slots = int(p.n_jobs)
        g = p.gpu
        n_gpu = float(np.mean(np.asarray(g.n_gpu)))
        #: mean rack power above idle per unit of mean utilization (W)
        self._rack_dyn_w = n_gpu * float(g.p_max_w - g.p_idle_w)
        self._rack_idle_w = n_gpu * float(g.p_idle_w) + float(np.mean(np.asarray(g.p_other_w)))
        self._pod_max_w = float(np.sum(np.broadcast_to(np.asarray(rack_max_w(p), float),
                                                       (self.n_racks,))))

    def _init_state(self, n):
        J = self.n_slots
        return {"dur": np.full((n, J), self.duration_max_s), "racks": np.zeros((n, J)),
                "power": np.zeros((n, J)), "known": np.zeros((n, J), bool)}

    # ---- estimates -----------------------------------------------------------------------

    def remaining_s(self, v: QueueView) -> np.ndarray:
        """Estimated time to the end of each running slot's job (inf if empty) (N, J)."""
        dur = np.where(self._state["known"], self._state["dur"], self.duration_max_s)
        return np.where(v.running, v.left * dur, np.inf)

    def job_power_w(self, v: QueueView) -> np.ndarray:
        """Mean power a visible job adds to the pod over idle racks (N, Q)."""
        return v.racks * self._rack_dyn_w * v.u_mean

    def pod_power_w(self, v: QueueView) -> np.ndarray:
        """Estimated mean pod IT power from the book (N, 1)."""
        book = np.where(v.running, self._state["power"], 0.0)
        # a running job the book does not know: assume full utilization of its racks
        unknown = v.running & ~self._state["known"]
        book = np.where(unknown, v.slot_racks * self._rack_dyn_w, book)
        return self.n_racks * self._rack_idle_w + np.sum(book, axis=1, keepdims=True)

    # ---- the step ------------------------------------------------------------------------

    def decide(self, v: QueueView) -> tuple[np.ndarray, np.ndarray]:
        """``(k, phase_bin)``: the visible job to start (0-based, -1: defer) and the bin (N,)."""
        raise NotImplementedError

    def _book(self, v: QueueView, k: np.ndarray):
        """Record the job started in the lowest free slot (where it goes if it fits)."""
        st = self._state
        st["known"] &= v.running  # finished jobs leave the book
        rows = np.nonzero(k >= 0)[0]
        if rows.size == 0:
            return
        kk = k[rows]
        ok = v.fits[rows, kk] & ~np.all(v.running[rows], axis=1)
        rows, kk = rows[ok], kk[ok]
        slot = np.argmin(v.running[rows], axis=1)
        st["dur"][rows, slot] = v.duration_s[rows, kk]
        st["racks"][rows, slot] = v.racks[rows, kk]
        st["power"][rows, slot] = self.job_power_w(v)[rows, kk]
        st["known"][rows, slot] = True

    def step_decision(self, obs: np.ndarray):
        """``(k, bin)`` for a prepared batch, with the book updated."""
        v = QueueView(self, obs)
        k, b = self.decide(v)
        k = np.where((k >= 0) & v.fits[np.arange(len(k)), np.clip(k, 0, None)], k, -1)
        self._book(v, k)
        return k, b

    def _act(self, obs):
        k, b = self.step_decision(obs)
        return np.stack([np.where(k >= 0, k, self.params.queue.n_visible), b], axis=1)

    def _bin(self, n):
        """Phase bin ``round(phase_frac x P) mod P`` per env (N,)."""
        return np.rint(self.k("phase_frac", n)[:, 0] * self.n_bins).astype(int) % self.n_bins


class FCFS(SchedulerBase):
    """First come, first served.

    **Rule**: start the oldest waiting job as soon as it fits on the free racks;
    never start a later job before it (head-of-line blocking); new jobs run in
    phase with the largest running job (phase bin ``round(phase_frac x P)``,
    default 0). **Constants**: ``phase_frac``. **Source**: the FCFS batch
    scheduler (the default queue policy of Slurm without backfill). Not tuned.
    """

    name = "fcfs"

    def decide(self, v):
        n = v.present.shape[0]
        k = np.where(v.fits[:, 0], 0, -1)
        return k, self._bin(n)


class EasyBackfill(SchedulerBase):
    """EASY backfill: FCFS with backfilling that never delays the oldest job.

    **Rule**: start the oldest waiting job if it fits. Otherwise reserve its
    start at the shadow time (when enough running jobs, in order of estimated
    end, ``j_left`` x duration, will have freed its racks) and backfill the
    first later visible job that fits now and either ends before the shadow
    time or uses only racks the reservation leaves spare. Phase bin as FCFS.
    **Constants**: ``phase_frac``. **Source**: Lifka, *The ANL/IBM SP
    scheduling system*, JSSPP 1995 (EASY); Mu'alem and Feitelson, IEEE TPDS
    2001. Not tuned (the rule has no knobs besides the phase).
    """

    name = "easy"

    def shadow(self, v: QueueView):
        """``(shadow time from now s, spare racks at that time)`` for the head job (N, 1)."""
        rem = self.remaining_s(v)
        racks = v.slot_racks
        order = np.argsort(rem, axis=1)
        rem_s = np.take_along_axis(rem, order, axis=1)
        freed = v.free + np.cumsum(np.take_along_axis(racks, order, axis=1), axis=1)
        need = v.racks[:, :1]
        enough = freed >= need
        idx = np.argmax(enough, axis=1)[:, None]
        any_ = np.any(enough, axis=1, keepdims=True)
        t_shadow = np.where(any_, np.take_along_axis(rem_s, idx, axis=1), np.inf)
        spare = np.where(any_, np.take_along_axis(freed, idx, axis=1) - need, 0.0)
        return t_shadow, spare

    def candidates(self, v: QueueView) -> np.ndarray:
        """Jobs EASY may start now (N, Q): the head if it fits, else safe backfills."""
        t_shadow, spare = self.shadow(v)
        head_fits = v.fits[:, :1]
        safe = v.fits & ((v.duration_s <= t_shadow) | (v.racks <= spare))
        safe[:, 0] = False
        return np.where(head_fits, np.eye(1, v.fits.shape[1], dtype=bool), safe) & v.present

    def decide(self, v):
        c = self.candidates(v)
        k = np.where(c.any(axis=1), np.argmax(c, axis=1), -1)
        return k, self._bin(len(k))


class PowerCappedGreedy(SchedulerBase):
    """Power-capped greedy: start the most valuable job that fits under a power cap,
    offset in phase against the running jobs.

    **Rule**: among visible jobs that fit on the free racks, take the one with
    the highest score ``value - deadline_weight x slack / longest duration``
    (value per rack-second against earliest deadline first) whose
    start keeps the estimated mean pod IT power (idle racks plus the book's
    jobs at ``duty u_compute + (1 - duty) u_comm`` utilization) at or below
    ``cap_frac`` x the pod's IT maximum; start it ``phase_frac`` of a period
    off the largest running job (0.5: anti-phase) so that swings of
    concurrent jobs partly cancel. **Constants**: ``cap_frac``,
    ``deadline_weight``, ``phase_frac``. **Source**: power-capped / power-aware job scheduling in
    HPC (e.g. Patki et al., *Practical resource management in power-constrained
    HPC*, HPDC 2015) with the desynchronization idea of arXiv 2508.14318.
    Tuned: see ``tuned_on``.
    """

    name = "greedy"

    def decide(self, v):
        n = v.present.shape[0]
        after = self.pod_power_w(v) + self.job_power_w(v)
        ok = v.fits & (after <= self.k("cap_frac", n) * self._pod_max_w)
        urgency = -v.slack_s / self.duration_max_s  # EDF order as the weight grows
        score = np.where(ok, v.value + self.k("deadline_weight", n) * urgency, -np.inf)
        k = np.where(ok.any(axis=1), np.argmax(score, axis=1), -1)
        return k, self._bin(n)


class CarbonAwareDeferral(EasyBackfill):
    """Carbon-aware deferral on top of EASY backfill.

    **Rule**: as :class:`EasyBackfill`, except that while the grid's carbon
    intensity exceeds ``carbon_threshold`` x its mean, a job whose deadline
    leaves at least ``slack_margin`` x its duration of spare time is not
    started (it waits for cleaner power); jobs without that slack start as
    EASY would. **Constants**: ``carbon_threshold``, ``slack_margin``,
    ``phase_frac``. **Source**: carbon-aware temporal shifting of flexible
    jobs (Radovanovic et al., *Carbon-aware computing for datacenters*, IEEE
    Trans. Power Systems 2022; Wiesner et al., *Let's wait awhile*,
    Middleware 2021). Not tuned on reward (the default carbon weight is 0);
    the threshold is the mean intensity by construction.
    """

    name = "carbon"

    def decide(self, v):
        n = v.present.shape[0]
        dirty = v.carbon > self.k("carbon_threshold", n)
        flexible = v.slack_s - v.duration_s >= self.k("slack_margin", n) * v.duration_s
        c = self.candidates(v) & ~(dirty & flexible)
        k = np.where(c.any(axis=1), np.argmax(c, axis=1), -1)
        return k, self._bin(n)
