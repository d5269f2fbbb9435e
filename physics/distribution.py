"""Scenario distributions: a scenario's ``randomize:`` section, sampled by a key inside jit.

A scenario may declare ranges and choices; :func:`sample_episode` draws one member
from a PRNG key as a pure JAX function, so one compiled env serves every member
(fixed maximum shapes, masks where counts vary)::

    randomize:
      plant:                                  # dotted Params field: [lo, hi] or
        ultracap.e_max_j: {range: [2.0e3, 1.0e4], log: true}   # log-uniform
        ups.soc_init: [0.7, 0.95]
      exogenous:                              # ExoParams field: [lo, hi]
        ambient_mean_c: [15.0, 32.0]
      jobs:                                   # replaces the jobs list
        count: [1, 3]                         # whole number; racks split among them
        period_s: {range: [1.0, 4.0], log: true}
        duty: [0.4, 0.7]                      # any JobSpec field, and:
        start_s: [0.0, 120.0]                 # when each job starts
        duration_s: [600.0, 3600.0]           # how long it runs (absent: to the end)
        ckpt_phase: [0.0, 1.0]                # initial checkpoint clock, share of interval
      faults:                                 # each: a fault that happens with a probability
        - {kind: [chiller-trip, pump-failure], probability: 0.7,
           start_s: [300.0, 1200.0], duration_s: [120.0, 2400.0]}

Jobs: ``count`` jobs take the racks as contiguous blocks of random sizes (each at least
one rack), in slots ``0 .. count-1`` (the plant has ``count`` max slots). Per-rack
plant fields get one value for every rack. Faults are appended to the scenario's fixed
fault list; one that does not happen gets kind -1 (matches nothing).

Values are checked against each field's declared range when the scenario loads
(:mod:`heatsync.physics.scenario`); each bundled range's band around its PHYSICS.md
value is documented in the scenario file.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from ._pytree import pytree_dataclass, replace, static
from .exogenous import FAULT_KINDS, FAULT_MAGNITUDE, ExoParams
from .plant import Params
from .workload import JobSpec, WorkloadState, init_workload

__all__ = ["Ranges", "JobRanges", "FaultRanges", "Distribution", "sample_episode",
           "JOB_EXTRA_KEYS"]

#: job keys besides the JobSpec fields
JOB_EXTRA_KEYS = ("start_s", "duration_s", "ckpt_phase")


@pytree_dataclass
class Ranges:
    """Named scalar ranges: ``value = lo + u (hi - lo)``, or log-uniform where ``log``."""

    names: tuple = static(())
    lo: jnp.ndarray = None
    hi: jnp.ndarray = None
    log: jnp.ndarray = None

    def sample(self, key, shape=()) -> dict:
        """name -> value of the given shape (one draw per element)."""
        if not self.names:
            return {}
        u = jax.random.uniform(key, (len(self.names), *shape), jnp.result_type(float))
        lo = jnp.reshape(self.lo, (-1,) + (1,) * len(shape))
        hi = jnp.reshape(self.hi, (-1,) + (1,) * len(shape))
        is_log = jnp.reshape(self.log, (-1,) + (1,) * len(shape)) > 0.5
        safe_lo, safe_hi = jnp.maximum(lo, 1e-300), jnp.maximum(hi, 1e-300)
        v = jnp.where(is_log, jnp.exp(jnp.log(safe_lo) + u * (jnp.log(safe_hi)
                                                               - jnp.log(safe_lo))),
                      lo + u * (hi - lo))
        return {n: v[i] for i, n in enumerate(self.names)}


@pytree_dataclass
class JobRanges:
    """How jobs are drawn: ``count`` in ``[count_lo, count_hi]`` and per-job ranges."""

    count_lo: jnp.ndarray = None
    count_hi: jnp.ndarray = None
    fields: Ranges = None


@pytree_dataclass
class FaultRanges:
    """Random faults (F,): allowed kinds (F, len(FAULT_KINDS)), probability and ranges."""

    kinds: jnp.ndarray = None
    probability: jnp.ndarray = None
    start_lo: jnp.ndarray = None
    start_hi: jnp.ndarray = None
    duration_lo: jnp.ndarray = None
    duration_hi: jnp.ndarray = None
    magnitude_lo: jnp.ndarray = None
    magnitude_hi: jnp.ndarray = None


@pytree_dataclass
class Distribution:
    """A scenario's ``randomize`` section, ready to sample (see the module docstring)."""

    plant: Ranges
    exo: Ranges
    jobs: JobRanges | None = None
    faults: FaultRanges | None = None

    @property
    def is_trivial(self) -> bool:
        """True if it draws nothing (every member equals the scenario)."""
        return (not self.plant.names and not self.exo.names and self.jobs is None
                and self.faults is None)


def _set_dotted(obj, name: str, value):
    parts = name.split(".")
    if len(parts) == 1:
        old = getattr(obj, name)
        return replace(obj, **{name: jnp.broadcast_to(value, jnp.shape(old)).astype(
            jnp.asarray(old).dtype)})
    sub = getattr(obj, parts[0])
    return replace(obj, **{parts[0]: _set_dotted(sub, ".".join(parts[1:]), value)})


def _racks_split(key, k, n_racks: int, n_slots: int):
    """Rack -> job slot for ``k`` jobs on contiguous blocks of random sizes (>= 1 rack)."""
    if n_racks == 1:
        return jnp.zeros((1,), jnp.int32)
    cuts = jax.random.permutation(key, n_racks - 1) + 1  # candidate block edges 1..R-1
    used = jnp.arange(n_racks - 1) < k - 1
    edges = jnp.sort(jnp.where(used, cuts, n_racks))
    slot = jnp.sum(jnp.arange(n_racks)[:, None] >= edges[None, :], axis=1)
    return jnp.minimum(slot, n_slots - 1).astype(jnp.int32)


def _sample_jobs(jr: JobRanges, key, p: Params, xp: ExoParams, work: WorkloadState):
    J, R = p.n_jobs, p.n_racks
    k_count, k_racks, k_fields = jax.random.split(key, 3)
    k = jax.random.randint(k_count, (), jr.count_lo, jr.count_hi + 1)
    drawn = jr.fields.sample(k_fields, (J,))
    spec = work.spec
    for name in (f.name for f in dataclasses.fields(JobSpec)):
        if name in drawn:
            dtype = jnp.asarray(getattr(spec, name)).dtype
            spec = replace(spec, **{name: drawn[name].astype(dtype)})
    placed = (jnp.arange(J) < k).astype(work.placed.dtype)
    new = init_workload(spec, _racks_split(k_racks, k, R, J), placed)
    if "ckpt_phase" in drawn:
        new = replace(new, ckpt_clock_s=drawn["ckpt_phase"] * spec.ckpt_interval_s)
    start = drawn.get("start_s", jnp.zeros((J,)))
    stop = start + drawn["duration_s"] if "duration_s" in drawn else jnp.full((J,), jnp.inf)
    xp = replace(xp, job_start_s=start.astype(xp.job_start_s.dtype),
                 job_stop_s=stop.astype(xp.job_stop_s.dtype))
    return xp, new


def _sample_faults(fr: FaultRanges, key, xp: ExoParams) -> ExoParams:
    F = fr.probability.shape[0]
    f = jnp.result_type(float)
    k_on, k_kind, k_start, k_dur, k_mag = jax.random.split(key, 5)
    on = jax.random.uniform(k_on, (F,), f) < fr.probability
    logits = jnp.where(fr.kinds > 0.5, 0.0, -jnp.inf)
    kind = jax.random.categorical(k_kind, logits, axis=-1).astype(jnp.int32)

    def uni(k, lo, hi):
        return lo + jax.random.uniform(k, (F,), f) * (hi - lo)

    return replace(
        xp,
        fault_kind=jnp.concatenate([xp.fault_kind, jnp.where(on, kind, -1)]),
        fault_start_s=jnp.concatenate([xp.fault_start_s, uni(k_start, fr.start_lo,
                                                              fr.start_hi)]),
        fault_duration_s=jnp.concatenate([xp.fault_duration_s,
                                          uni(k_dur, fr.duration_lo, fr.duration_hi)]),
        fault_magnitude=jnp.concatenate([xp.fault_magnitude,
                                         uni(k_mag, fr.magnitude_lo, fr.magnitude_hi)]))


def sample_episode(dist: Distribution | None, key, p: Params, xp: ExoParams,
                   work: WorkloadState, *, jobs: bool = True):
    """One member of the distribution: ``(plant Params, ExoParams, WorkloadState)``.

    Pure and jit-able; the shapes never depend on the draw (a scenario without random
    faults keeps its fault table; with them, the table has the random slots appended
    every time). ``jobs=False`` keeps ``work`` (tasks that place jobs themselves).
    """
    if dist is None:
        return p, xp, work
    k_plant, k_exo, k_jobs, k_faults = jax.random.split(key, 4)
    for name, v in dist.plant.sample(k_plant).items():
        p = _set_dotted(p, name, v)
    for name, v in dist.exo.sample(k_exo).items():
        xp = _set_dotted(xp, name, v)
    if dist.jobs is not None and jobs:
        xp, work = _sample_jobs(dist.jobs, k_jobs, p, xp, work)
    if dist.faults is not None:
        xp = _sample_faults(dist.faults, k_faults, xp)
    return p, xp, work


def fault_kind_mask(kinds) -> np.ndarray:
    """A (len(FAULT_KINDS),) 0/1 mask of the named fault kinds."""
    return np.asarray([1.0 if k in kinds else 0.0 for k in FAULT_KINDS])


# ---- the YAML section ----------------------------------------------------------------------

#: range keys of a random fault (each a number or [lo, hi])
_FAULT_KEYS = ("kind", "probability", "start_s", "duration_s", "magnitude")


def _range_of(path, spec, declared_lo, declared_hi, err, check):
    """``(lo, hi, log)`` from ``[lo, hi]``, ``{range: [lo, hi], log: bool}`` or a number."""
    log = False
    if isinstance(spec, dict):
        unknown = set(spec) - {"range", "log"}
        if unknown:
            raise err(path, f"unknown keys {sorted(unknown)}; allowed: range, log")
        log = bool(spec.get("log", False))
        spec = spec.get("range")
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        spec = [spec, spec]
    if not (isinstance(spec, list) and len(spec) == 2):
        raise err(path, f"expected [lo, hi], {{range: [lo, hi], log: true}} or a number, got "
                        f"{spec!r}")
    lo = check(f"{path}[0]", spec[0], declared_lo, declared_hi)
    hi = check(f"{path}[1]", spec[1], declared_lo, declared_hi)
    if lo > hi:
        raise err(path, f"inverted range: {lo} > {hi}")
    if log and lo <= 0:
        raise err(path, f"a log-uniform range needs lo > 0, got {lo}")
    return float(lo), float(hi), log


def _ranges(path, section, fields: dict, err, check) -> Ranges:
    """Ranges over declared fields (``fields``: name -> dataclasses.Field)."""
    if section is None:
        return Ranges()
    if not isinstance(section, dict):
        raise err(path, "expected a mapping of field: range")
    names, lo, hi, log = [], [], [], []
    for name, spec in section.items():
        f = fields.get(name)
        if f is None:
            raise err(f"{path}.{name}", f"not a randomizable field; allowed: "
                                        f"{', '.join(sorted(fields))}")
        a, b, g = _range_of(f"{path}.{name}", spec, f.metadata["lo"], f.metadata["hi"], err,
                            check)
        names.append(name), lo.append(a), hi.append(b), log.append(float(g))
    return Ranges(names=tuple(names), lo=np.asarray(lo), hi=np.asarray(hi),
                  log=np.asarray(log))


def float_fields(cls, prefix: str = "") -> dict:
    """Dotted name -> field of every declared, non-static float field (sub-dataclasses
    included): what a ``randomize`` section may draw."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.metadata.get("sub"):
            out.update(float_fields(f.default_factory, f"{prefix}{f.name}."))
        elif "lo" in f.metadata and not f.metadata.get("static", False):
            out[f"{prefix}{f.name}"] = f
    return out


def _job_fields() -> dict:
    fields = {f.name: f for f in dataclasses.fields(JobSpec)}
    extra = {"start_s": (0.0, 1e9), "duration_s": (1e-3, 1e9), "ckpt_phase": (0.0, 1.0)}
    for name, (lo, hi) in extra.items():
        fields[name] = dataclasses.field(metadata={"lo": lo, "hi": hi})
    return fields


def parse_randomize(section, p: Params, err, check) -> Distribution | None:
    """The :class:`Distribution` of a scenario's ``randomize`` section (``None`` if absent).

    **Arguments**: the section, the scenario's plant params (sizes), ``err(path, msg)``
    making a ScenarioError and ``check(path, v, lo, hi, integer=False)`` validating a
    number (both from :mod:`heatsync.physics.scenario`).
    """
    if section is None:
        return None
    if not isinstance(section, dict):
        raise err("randomize", "expected a mapping with plant, exogenous, jobs, faults")
    unknown = set(section) - {"plant", "exogenous", "jobs", "faults"}
    if unknown:
        raise err(f"randomize.{sorted(unknown)[0]}", "unknown key; allowed: plant, exogenous, "
                                                      "jobs, faults")
    plant = _ranges("randomize.plant", section.get("plant"), float_fields(Params), err, check)
    exo = _ranges("randomize.exogenous", section.get("exogenous"), float_fields(ExoParams), err,
                  check)
    jobs = None
    if section.get("jobs") is not None:
        js = dict(section["jobs"])
        count = js.pop("count", [1, 1])
        if isinstance(count, int):
            count = [count, count]
        if not (isinstance(count, list) and len(count) == 2):
            raise err("randomize.jobs.count", f"expected [lo, hi] whole numbers, got {count!r}")
        top = min(p.n_racks, p.n_jobs)
        a = check("randomize.jobs.count[0]", count[0], 1, top, integer=True)
        b = check("randomize.jobs.count[1]", count[1], a, top, integer=True)
        fields = _ranges("randomize.jobs", js, _job_fields(), err, check)
        rng = dict(zip(fields.names, zip(fields.lo, fields.hi, strict=True), strict=True))
        h = p.h_s
        period_lo = rng.get("period_s", (None,))[0]
        if period_lo is not None and period_lo < 4 * h - 1e-12:
            raise err("randomize.jobs.period_s", f"lo {period_lo} s is shorter than 4 substeps "
                                                 f"({4 * h:g} s)")
        if "duty" in rng and period_lo is not None:
            d_lo, d_hi = rng["duty"]
            if d_lo * period_lo < h - 1e-12 or (d_hi < 1.0 and (1 - d_hi) * period_lo < h - 1e-12):
                raise err("randomize.jobs.duty", f"a duty in [{d_lo}, {d_hi}] of a {period_lo} s "
                                                 f"period leaves a phase shorter than one "
                                                 f"substep ({h:g} s)")
        jobs = JobRanges(count_lo=np.int32(a), count_hi=np.int32(b), fields=fields)
    faults = None
    if section.get("faults") is not None:
        entries = section["faults"]
        if not isinstance(entries, list) or not entries:
            raise err("randomize.faults", "expected a non-empty list of random faults")
        cols = {k: [] for k in ("kinds", "probability", "start_lo", "start_hi", "duration_lo",
                                "duration_hi", "magnitude_lo", "magnitude_hi")}
        for i, e in enumerate(entries):
            fp = f"randomize.faults[{i}]"
            if not isinstance(e, dict) or set(e) - set(_FAULT_KEYS):
                raise err(fp, f"expected a mapping with keys {', '.join(_FAULT_KEYS)}")
            kinds = e.get("kind")
            kinds = [kinds] if isinstance(kinds, str) else kinds
            if not kinds or any(k not in FAULT_KINDS for k in kinds):
                raise err(f"{fp}.kind", f"{e.get('kind')!r}: expected fault kinds from "
                                        f"{', '.join(FAULT_KINDS)}")
            mlo = max(FAULT_MAGNITUDE[k][0] for k in kinds)
            mhi = min(FAULT_MAGNITUDE[k][1] for k in kinds)
            cols["kinds"].append(fault_kind_mask(kinds))
            cols["probability"].append(check(f"{fp}.probability", e.get("probability", 1.0),
                                             0.0, 1.0))
            for key, (lo, hi), default in (("start_s", (0.0, 1e9), 0.0),
                                           ("duration_s", (1e-3, 1e9), 3600.0),
                                           ("magnitude", (mlo, mhi), mhi)):
                a, b, _ = _range_of(f"{fp}.{key}", e.get(key, default), lo, hi, err, check)
                short = key.split("_")[0]
                cols[f"{short}_lo"].append(a)
                cols[f"{short}_hi"].append(b)
        faults = FaultRanges(**{k: np.asarray(v) for k, v in cols.items()})
    dist = Distribution(plant=plant, exo=exo, jobs=jobs, faults=faults)
    return None if dist.is_trivial else dist
