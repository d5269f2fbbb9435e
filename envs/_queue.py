"""A queue of training jobs for the scheduling tasks (jit-safe, fixed sizes).

At reset a table of ``n_total`` jobs is drawn from the episode's key: the
first ``n_initial`` are waiting at t = 0, the rest arrive uniformly over the
first ``arrival_frac`` of the episode (sorted, so table order is arrival
order). Each job has racks needed, a duration at nominal pace, a power profile
(iteration period, duty, compute / communication utilization), a deadline and
a value per rack-second.

The agent sees the first ``n_visible`` waiting jobs. Starting job ``k`` puts it
on the lowest-numbered free racks (not running a job, not tripped) in the
first free plant job slot, with its iteration position offset against the
largest running job (offset 0: in phase; 0.5: anti-phase). A start that does
not fit (no such job, too few free racks, no free slot) does nothing. A job
leaves its racks when its progress reaches its duration.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from heatsync.physics import param, pytree_dataclass, replace, static
from heatsync.physics.workload import WorkloadState, membership, place_job

__all__ = ["QueueParams", "QueueState", "WAITING", "RUNNING", "DONE", "generate", "visible",
           "start", "complete", "slot_progress_rack_s"]

WAITING, RUNNING, DONE = 0, 1, 2


@pytree_dataclass
class QueueParams:
    """How the job queue is drawn (all ``est``: a training-cluster mix scaled to one pod)."""

    n_total: int = static(32, 1, 4096, doc="jobs in an episode's table")
    n_visible: int = static(4, 1, 64, doc="waiting jobs the agent sees")
    n_initial: int = static(4, 0, 4096, doc="jobs already waiting at t = 0")
    n_phase_bins: int = static(4, 1, 64, doc="phase-offset choices (scheduling task)")
    racks_max: int = static(4, 1, 100000, doc="most racks a job needs (default R / 2)")
    arrival_frac: float = param(0.75, 0.0, 1.0, unit="1",
                                doc="share of the episode over which later jobs arrive")
    duration_min_s: float = param(120.0, 1.0, 1e7, unit="s", doc="shortest job (log-uniform)")
    duration_max_s: float = param(900.0, 1.0, 1e7, unit="s", doc="longest job")
    period_min_s: float = param(1.5, 0.5, 60.0, unit="s", doc="iteration period range")
    period_max_s: float = param(4.0, 0.5, 60.0, unit="s", doc="iteration period range")
    duty_min: float = param(0.4, 0.05, 1.0, unit="1", doc="compute share range")
    duty_max: float = param(0.7, 0.05, 1.0, unit="1", doc="compute share range")
    u_compute_min: float = param(0.8, 0.0, 1.0, unit="1", doc="compute utilization range")
    u_compute_max: float = param(1.0, 0.0, 1.0, unit="1", doc="compute utilization range")
    u_comm_min: float = param(0.05, 0.0, 1.0, unit="1", doc="communication utilization range")
    u_comm_max: float = param(0.2, 0.0, 1.0, unit="1", doc="communication utilization range")
    slack_min: float = param(1.5, 1.0, 100.0, unit="1",
                             doc="deadline = arrival + slack x duration (log-uniform)")
    slack_max: float = param(4.0, 1.0, 100.0, unit="1", doc="deadline slack range")
    value_min: float = param(0.5, 0.0, 100.0, unit="1/rack-s", doc="value per rack-s range")
    value_max: float = param(1.5, 0.0, 100.0, unit="1/rack-s", doc="value per rack-s range")


@pytree_dataclass
class QueueState:
    """The episode's job table (M,) and which job each plant slot runs (J,)."""

    arrival_s: jnp.ndarray
    racks: jnp.ndarray  # int32
    duration_s: jnp.ndarray
    period_s: jnp.ndarray
    duty: jnp.ndarray
    u_compute: jnp.ndarray
    u_comm: jnp.ndarray
    deadline_s: jnp.ndarray
    value: jnp.ndarray
    status: jnp.ndarray  # int32: WAITING, RUNNING, DONE
    slot_job: jnp.ndarray  # (J,) int32, table index run by each slot or -1


def generate(qp: QueueParams, key, episode_s, n_slots: int) -> QueueState:
    """Draw an episode's job table."""
    f = jnp.result_type(float)
    m = qp.n_total
    ks = jax.random.split(key, 9)

    def uni(k, lo, hi):
        return lo + (hi - lo) * jax.random.uniform(k, (m,), f)

    def logu(k, lo, hi):
        return jnp.exp(uni(k, jnp.log(lo), jnp.log(hi)))

    later = jnp.sort(jax.random.uniform(ks[0], (m,), f)) * qp.arrival_frac * episode_s
    arrival = jnp.where(jnp.arange(m) < qp.n_initial, 0.0, later)
    duration = logu(ks[2], qp.duration_min_s, qp.duration_max_s)
    return QueueState(
        arrival_s=arrival,
        racks=jax.random.randint(ks[1], (m,), 1, qp.racks_max + 1, jnp.int32),
        duration_s=duration,
        period_s=uni(ks[3], qp.period_min_s, qp.period_max_s),
        duty=uni(ks[4], qp.duty_min, qp.duty_max),
        u_compute=uni(ks[5], qp.u_compute_min, qp.u_compute_max),
        u_comm=uni(ks[6], qp.u_comm_min, qp.u_comm_max),
        deadline_s=arrival + logu(ks[7], qp.slack_min, qp.slack_max) * duration,
        value=uni(ks[8], qp.value_min, qp.value_max),
        status=jnp.zeros((m,), jnp.int32),
        slot_job=jnp.full((n_slots,), -1, jnp.int32),
    )


def visible(qp: QueueParams, qs: QueueState, t_s):
    """``(index, present)``: table index of the first ``n_visible`` waiting jobs (Q,)."""
    waiting = (qs.status == WAITING) & (qs.arrival_s <= t_s)
    rank = jnp.cumsum(waiting) - 1
    hit = waiting[None, :] & (rank[None, :] == jnp.arange(qp.n_visible)[:, None])
    return jnp.argmax(hit, axis=1), jnp.any(hit, axis=1)


def free_racks(ws: WorkloadState, trip_s):
    """Racks running no job and not tripped (R,) bool."""
    return (ws.rack_job < 0) & (trip_s <= 0.0)


def slot_position(ws: WorkloadState):
    """Iteration position of each slot's job in [0, 1) (J,)."""
    return jnp.mod(ws.phase + ws.spec.phase_offset, 1.0)


def start(qp: QueueParams, qs: QueueState, ws: WorkloadState, trip_s, t_s, pick, want,
          offset_frac):
    """Start visible job ``pick`` if ``want`` and it fits (jit-safe).

    **Returns**: ``(queue_state, workload_state, started)``.
    """
    idx, present = visible(qp, qs, t_s)
    pick = jnp.clip(pick, 0, qp.n_visible - 1)
    m = idx[pick]
    free = free_racks(ws, trip_s)
    need = qs.racks[m]
    slot = jnp.argmin(ws.placed)
    ok = want & present[pick] & (jnp.sum(free) >= need) & (ws.placed[slot] < 0.5)
    mask = free & (jnp.cumsum(free) <= need)
    n_racks = jnp.sum(membership(ws), axis=1) * (ws.placed > 0.5)
    ref = jnp.argmax(n_racks)
    ref_pos = jnp.where(jnp.max(n_racks) > 0, slot_position(ws)[ref], 0.0)
    spec = dict(period_s=qs.period_s[m], duty=qs.duty[m], u_compute=qs.u_compute[m],
                u_comm=qs.u_comm[m], ckpt_interval_s=0.0, ckpt_duration_s=0.0,
                phase_offset=jnp.mod(ref_pos + offset_frac, 1.0))
    placed = place_job(ws, slot, mask, spec)
    ws = jax.tree.map(lambda a, b: jnp.where(ok, a, b), placed, ws)
    j = jnp.arange(qs.status.shape[0])
    qs = replace(qs,
                 status=jnp.where(ok & (j == m), RUNNING, qs.status),
                 slot_job=jnp.where(ok & (jnp.arange(qs.slot_job.shape[0]) == slot), m,
                                    qs.slot_job))
    return qs, ws, ok


def slot_progress_rack_s(ws: WorkloadState):
    """Progress of each slot's job at nominal pace, rack-s (J,)."""
    n = jnp.sum(membership(ws), axis=1).astype(ws.phase.dtype)
    return (ws.iters + ws.phase) * ws.spec.period_s * n * ws.placed


def complete(qs: QueueState, ws: WorkloadState):
    """Remove jobs whose progress reached their duration.

    **Returns**: ``(queue_state, workload_state, n_done)``.
    """
    has = qs.slot_job >= 0
    m = jnp.clip(qs.slot_job, 0)
    need_iters = qs.duration_s[m] / qs.period_s[m]
    done = has & (ws.placed > 0.5) & (ws.iters + ws.phase >= need_iters)
    rack_slot = jnp.clip(ws.rack_job, 0)
    rack_job = jnp.where((ws.rack_job >= 0) & done[rack_slot], -1, ws.rack_job)
    ws = replace(ws, rack_job=rack_job.astype(jnp.int32), placed=jnp.where(done, 0.0, ws.placed))
    hit = done[:, None] & (qs.slot_job[:, None] == jnp.arange(qs.status.shape[0])[None, :])
    status = jnp.where(jnp.any(hit, axis=0), DONE, qs.status)
    qs = replace(qs, status=status, slot_job=jnp.where(done, -1, qs.slot_job))
    return qs, ws, jnp.sum(done)


def slot_value(qs: QueueState):
    """Value per rack-s of each slot's job (0 for empty slots) (J,)."""
    return jnp.where(qs.slot_job >= 0, qs.value[jnp.clip(qs.slot_job, 0)], 0.0)


def overdue_racks(qs: QueueState, t_s):
    """Racks asked for by jobs past their deadline and not done."""
    late = (qs.status != DONE) & (qs.arrival_s <= t_s) & (t_s > qs.deadline_s)
    return jnp.sum(jnp.where(late, qs.racks, 0))
