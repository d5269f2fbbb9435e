"""Synchronized training jobs on racks: phases, checkpoints, progress.

A job runs on a set of racks in lockstep. Each iteration has a compute phase
(GPU utilization ``u_compute``, near full power) and a communication phase
(``u_comm``, near idle). The iteration's position ``phase`` in [0, 1) advances
at ``1 / period`` in communication and at ``1 / (period * (m + (1 - m) / f))``
in compute, where ``f`` is the relative SM clock of the job's slowest rack and
``m`` the memory-bound share of compute (PHYSICS.md coupling 2: iteration time =
compute part / f + memory part + communication part). Periodic checkpoints
pause progress at ``u_ckpt``.

Jobs live in :class:`WorkloadState`, not in Params, so that a scheduler can
place a job on racks at run time (:func:`place_job`).

Work is counted in rack-seconds at nominal pace: a job on ``n`` racks running
unthrottled accrues ``n`` rack-seconds per second, credited in its compute
phases.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ._pytree import param, pytree_dataclass, replace

__all__ = [
    "WorkloadParams",
    "WorkloadState",
    "JobSpec",
    "init_workload",
    "job_phase_view",
    "occupancy",
    "rates",
    "membership",
    "rack_view",
    "job_min",
    "advance",
    "place_job",
    "remove_job",
]


@pytree_dataclass
class WorkloadParams:
    """Workload constants shared by all jobs (per-job values are in JobSpec)."""

    u_ckpt: float = param(
        0.15, 0.0, 1.0, unit="1", doc="GPU utilization while a job writes a checkpoint",
        source="est (checkpoint I/O keeps GPUs near idle)",
    )


@pytree_dataclass
class JobSpec:
    """One training job's power profile. All fields are arrays of shape (J,) in State."""

    period_s: float = param(2.0, 0.5, 60.0, unit="s", doc="iteration period at nominal clock",
                            source="PHYSICS.md training power swing (0.2-3 Hz; 1-10 s periods)")
    duty: float = param(0.5, 0.05, 1.0, unit="1", doc="compute share of an iteration",
                        source="est; arXiv 2508.14318 (compute near TDP, communication near idle)")
    u_compute: float = param(1.0, 0.0, 1.0, unit="1", doc="GPU utilization in compute",
                             source="PHYSICS.md training power swing")
    u_comm: float = param(0.1, 0.0, 1.0, unit="1", doc="GPU utilization in communication",
                          source="PHYSICS.md training power swing (near idle)")
    mem_frac: float = param(0.3, 0.0, 1.0, unit="1",
                            doc="share of compute time that does not scale with clock",
                            source="est; PHYSICS.md capping 700->600 W costs 10-15 %")
    ckpt_interval_s: float = param(0.0, 0.0, 1e7, unit="s",
                                   doc="time between checkpoints (0: none)", source="est")
    ckpt_duration_s: float = param(0.0, 0.0, 3600.0, unit="s", doc="checkpoint pause",
                                   source="est")
    phase_offset: float = param(0.0, 0.0, 1.0, unit="1",
                                doc="phase offset of the job's iteration (desynchronization)",
                                source="scheduling action")


@pytree_dataclass
class WorkloadState:
    """Jobs (J slots) and their placement on racks (R)."""

    rack_job: jnp.ndarray  # (R,) int32, job slot of each rack or -1
    spec: JobSpec  # fields of shape (J,)
    placed: jnp.ndarray  # (J,) 1.0 where the slot holds a job
    phase: jnp.ndarray  # (J,) position in the current iteration, [0, 1)
    iters: jnp.ndarray  # (J,) whole iterations completed
    ckpt_clock_s: jnp.ndarray  # (J,) running time since the last checkpoint began, wrapped


def init_workload(spec: JobSpec, rack_job, placed) -> WorkloadState:
    """Initial workload from per-job spec arrays (J,), rack placement (R,) and slot flags (J,)."""
    n_jobs = jnp.shape(placed)[0]
    zeros = jnp.zeros((n_jobs,), dtype=jnp.result_type(float))
    return WorkloadState(
        rack_job=jnp.asarray(rack_job, dtype=jnp.int32),
        spec=spec,
        placed=jnp.asarray(placed, dtype=zeros.dtype),
        phase=zeros,
        iters=zeros,
        ckpt_clock_s=zeros,
    )


def membership(ws: WorkloadState) -> jnp.ndarray:
    """Boolean (J, R) matrix: rack r runs job j."""
    n_jobs = ws.placed.shape[0]
    with jax.named_scope("lockstep"):
        return ws.rack_job[None, :] == jnp.arange(n_jobs, dtype=jnp.int32)[:, None]


def rack_view(ws: WorkloadState, per_job: jnp.ndarray, fill=0.0) -> jnp.ndarray:
    """Per-rack value of a per-job quantity (``fill`` for racks without a job)."""
    with jax.named_scope("lockstep"):
        idx = jnp.clip(ws.rack_job, 0, per_job.shape[0] - 1)
        return jnp.where(ws.rack_job >= 0, per_job[idx], fill)


def job_min(member: jnp.ndarray, per_rack: jnp.ndarray, fill=1.0) -> jnp.ndarray:
    """Minimum of a per-rack quantity over each job's racks (``fill`` for empty jobs)."""
    with jax.named_scope("lockstep"):
        big = jnp.asarray(jnp.inf, per_rack.dtype)
        m = jnp.min(jnp.where(member, per_rack[None, :], big), axis=1)
        return jnp.where(jnp.isfinite(m), m, fill)


def _phase(ws: WorkloadState):
    """(position in the iteration [0, 1), in-checkpoint flag) per job."""
    s = ws.spec
    pos = jnp.mod(ws.phase + s.phase_offset, 1.0)
    in_ckpt = (s.ckpt_interval_s > 0) & (ws.ckpt_clock_s >= s.ckpt_interval_s - s.ckpt_duration_s)
    return pos, in_ckpt


def rates(spec: JobSpec, f_compute):
    """Phase rates (1/s) in compute at relative clock ``f_compute`` and in communication."""
    f = jnp.maximum(f_compute, 1e-3)
    r_c = 1.0 / (spec.period_s * (spec.mem_frac + (1.0 - spec.mem_frac) / f))
    return r_c, 1.0 / spec.period_s


def occupancy(ws: WorkloadState, f_compute, h_s):
    """Share of the coming substep spent computing, and the phase advance.

    A substep that crosses a compute/communication boundary is split at the exact
    crossing time (at most one crossing: scenarios keep both phases >= one
    substep), so power and progress do not jump at substep-quantized edges.

    **Returns**: ``(c, d_phase, d_phase_compute)`` per job (J,).
    """
    s = ws.spec
    pos, _ = _phase(ws)
    r_c, r_m = rates(s, f_compute)
    in_c = pos < s.duty
    c_in = jnp.clip((s.duty - pos) / (r_c * h_s), 0.0, 1.0)  # starting in compute
    c_out = 1.0 - jnp.clip((1.0 - pos) / (r_m * h_s), 0.0, 1.0)  # starting in communication
    c = jnp.where(s.duty >= 1.0, 1.0, jnp.where(in_c, c_in, c_out))
    d_c = c * h_s * r_c
    return c, d_c + (1.0 - c) * h_s * r_m, d_c


def job_phase_view(ws: WorkloadState, wp: WorkloadParams, job_on: jnp.ndarray):
    """Per-job utilizations at the start of a substep.

    **Returns**: ``(u_compute, u_comm, running)`` (J,): utilization in the compute
    and communication parts (both ``u_ckpt`` during a checkpoint, 0 when the job
    is not running) and whether the job runs (0/1).
    """
    s = ws.spec
    running = ws.placed * job_on
    _, in_ckpt = _phase(ws)
    u_c = jnp.where(in_ckpt, wp.u_ckpt, s.u_compute) * running
    u_m = jnp.where(in_ckpt, wp.u_ckpt, s.u_comm) * running
    return u_c, u_m, running


def advance(ws: WorkloadState, f_job, running, stalled, h_s):
    """Advance every job by one substep.

    **Arguments**: ``f_job`` relative compute clock of each job's slowest rack (J,),
    ``running`` (J,) 0/1, ``stalled`` (J,) 0/1 (a rack of the job is tripped or
    unpowered), substep ``h_s`` (s).

    **Returns**: ``(new_state, work_rack_s, nominal_rack_s)``: rack-seconds of
    work credited this substep (in compute only) and rack-seconds scheduled.
    """
    s = ws.spec
    _, in_ckpt = _phase(ws)
    _, d_phase, d_compute = occupancy(ws, f_job, h_s)
    go = running * (1.0 - stalled) * (1.0 - in_ckpt.astype(d_phase.dtype))
    n_racks = jnp.sum(membership(ws), axis=1).astype(d_phase.dtype)
    work = n_racks * s.period_s / s.duty * d_compute * go
    nominal = n_racks * running * h_s
    phase = ws.phase + d_phase * go
    wrap = phase >= 1.0
    clock = ws.ckpt_clock_s + running * h_s
    clock = jnp.where((s.ckpt_interval_s > 0) & (clock >= s.ckpt_interval_s),
                      clock - s.ckpt_interval_s, clock)
    new = replace(ws, phase=jnp.where(wrap, phase - 1.0, phase),
                  iters=ws.iters + wrap.astype(phase.dtype), ckpt_clock_s=clock)
    return new, work, nominal


def place_job(ws: WorkloadState, slot, rack_mask, spec_values: dict | None = None):
    """Place a job in ``slot`` on the racks where ``rack_mask`` is true (jit-safe).

    Racks in the mask leave whatever job they had. ``spec_values`` maps JobSpec
    field names to scalars for this slot. Progress counters of the slot reset.
    """
    rack_job = jnp.where(rack_mask, jnp.asarray(slot, jnp.int32), ws.rack_job)
    spec = ws.spec
    if spec_values:
        spec = replace(
            spec, **{k: getattr(spec, k).at[slot].set(v) for k, v in spec_values.items()}
        )
    return replace(
        ws,
        rack_job=rack_job,
        spec=spec,
        placed=ws.placed.at[slot].set(1.0),
        phase=ws.phase.at[slot].set(0.0),
        iters=ws.iters.at[slot].set(0.0),
        ckpt_clock_s=ws.ckpt_clock_s.at[slot].set(0.0),
    )


def remove_job(ws: WorkloadState, slot):
    """Stop the job in ``slot`` and free its racks (jit-safe)."""
    rack_job = jnp.where(ws.rack_job == slot, jnp.int32(-1), ws.rack_job)
    return replace(ws, rack_job=rack_job, placed=ws.placed.at[slot].set(0.0))
