"""Scenarios: YAML -> validated (Params, ExoParams, jobs, fixed controls, episode).

A scenario file has these top-level sections (all optional but ``name``)::

    name: default
    description: one line
    extends: default          # inherit another scenario, then override
    plant: {n_racks: 8, dt_s: 1.0, n_sub: 10, gpu: {...}, ups: {...}, ...}
    exogenous: {ambient_mean_c: 22, ..., trace: path/to/trace.csv}
    jobs: [{racks: all, start_s: 0, stop_s: null, period_s: 2, duty: 0.5, ...}]
    faults: [{kind: chiller-trip, start_s: 3600, duration_s: 1800, magnitude: 1}]
    deliveries: [{t_s: 7200, kg: 5000}]
    control: {pump_speed: 0.8, supply_setpoint_c: 32, ...}   # fixed setpoints

Every key is checked against the declared fields (their ranges and units come
from the ``param`` declarations, whose sources are in PHYSICS.md). Errors are
:class:`ScenarioError` naming the dotted field, the value and what is allowed,
raised before any JAX tracing.

Other layers own further sections and register their validators with
:func:`register_section` (the envs register ``episode`` and ``reward``); the
validated values are in :attr:`Scenario.sections`. A section that no layer
registered is an error like any unknown key.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from . import plant as _plant
from . import workload as _wl
from ._pytree import field_info
from .distribution import Distribution, parse_randomize
from .exogenous import FAULT_KINDS, FAULT_MAGNITUDE, TRACE_COLUMNS, ExoParams
from .trace import TraceError, load_trace

__all__ = ["Scenario", "ScenarioError", "load_scenario", "list_scenarios", "register_section",
           "deep_merge", "check_number"]

#: the sections physics reads itself
SECTIONS = ("name", "description", "extends", "plant", "exogenous", "jobs", "faults",
            "deliveries", "control", "randomize")
CONTROL_KEYS = tuple(f.name for f in dataclasses.fields(_plant.Action))


class ScenarioError(ValueError):
    """An invalid scenario: names the field, the value and what is allowed."""


#: section name -> validator(value or None, path) -> validated value (registered by other layers)
_EXTRA_SECTIONS: dict = {}


def register_section(name: str, validate) -> None:
    """Let a layer above physics own a scenario section.

    **Arguments**: the section's top-level key and ``validate(value, error)``, called
    with the section's value (``None`` when the scenario has none) and a function
    ``error(path, message) -> ScenarioError`` for its own errors; what it returns is
    kept in :attr:`Scenario.sections` under ``name``. Registering a name twice keeps
    the last validator (module reloads).
    """
    if name in SECTIONS:
        raise ValueError(f"section {name!r} belongs to physics")
    _EXTRA_SECTIONS[name] = validate


@dataclasses.dataclass(frozen=True)
class Scenario:
    """A validated scenario, ready to simulate.

    Attributes: ``name``, ``description``, ``params`` (:class:`Params`),
    ``exo`` (:class:`ExoParams`), ``jobs`` (initial :class:`WorkloadState`),
    ``control`` (fixed-setpoint :class:`Action`), ``distribution`` (the
    :class:`~heatsync.physics.distribution.Distribution` of its ``randomize`` section,
    ``None`` for a fixed scenario), ``sections`` (the validated
    values of the sections other layers registered, by name), ``config`` (the
    resolved YAML as a dict).
    """

    name: str
    description: str
    params: _plant.Params
    exo: ExoParams
    jobs: _wl.WorkloadState
    control: _plant.Action
    distribution: Distribution | None
    sections: dict
    config: dict

    def init_state(self) -> _plant.State:
        """Initial plant state (racks idle, loop at the control setpoint)."""
        return _plant.init_state(self.params, self.jobs,
                                 setpoint_c=float(self.control.supply_setpoint_c))


def _err(path: str, msg: str) -> ScenarioError:
    return ScenarioError(f"scenario field '{path}': {msg}")


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_number(path, v, lo, hi, integer=False):
    """``v`` if it is a finite number (an integer if asked) in ``[lo, hi]``, else a
    :class:`ScenarioError` naming ``path``, the value and the range (``None``: open)."""
    if integer:
        if not isinstance(v, int) or isinstance(v, bool):
            raise _err(path, f"expected an integer in [{lo}, {hi}], got {v!r}")
    elif not _is_number(v):
        raise _err(path, f"expected a number in [{lo}, {hi}], got {v!r} ({type(v).__name__})")
    if not math.isfinite(v):
        raise _err(path, f"value {v} is not finite; allowed range [{lo}, {hi}]")
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise _err(path, f"value {v} outside the allowed range [{lo}, {hi}]")
    return v


def _build_dataclass(cls, values: dict, path: str, n_racks: int):
    """Instantiate ``cls`` from a dict, validating each field against its declaration."""
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise _err(path, f"expected a mapping of fields, got {type(values).__name__}")
    info = field_info(cls)
    kwargs = {}
    for key, v in values.items():
        f = info.get(key)
        sub = f is not None and f.metadata.get("sub", False)
        declared = f is not None and ("lo" in f.metadata)
        if f is None or not (declared or sub):
            allowed = ", ".join(sorted(k for k, fi in info.items()
                                       if "lo" in fi.metadata or fi.metadata.get("sub")))
            raise _err(f"{path}.{key}" if path else key, f"unknown key; allowed: {allowed}")
        p = f"{path}.{key}" if path else key
        if sub:
            kwargs[key] = _build_dataclass(f.default_factory, v, p, n_racks)
            continue
        lo, hi = f.metadata["lo"], f.metadata["hi"]
        if f.metadata.get("per_rack") and isinstance(v, list):
            if len(v) != n_racks:
                raise _err(p, f"per-rack list has {len(v)} values, expected n_racks = {n_racks}")
            for i, x in enumerate(v):
                check_number(f"{p}[{i}]", x, lo, hi)
            kwargs[key] = np.asarray(v, dtype=float)
        else:
            kwargs[key] = check_number(p, v, lo, hi, integer=f.metadata.get("static", False))
            if not f.metadata.get("static", False):
                kwargs[key] = float(v)
    return cls(**kwargs)


def _check_order(path, lo_name, lo, hi_name, hi, strict=True):
    if np.any(np.asarray(lo) >= np.asarray(hi)) if strict else np.any(np.asarray(lo) > hi):
        raise _err(path, f"inverted range: {lo_name} = {lo} must be "
                         f"{'<' if strict else '<='} {hi_name} = {hi}")


def _cross_check(p: _plant.Params):
    g, c = p.gpu, p.cdu
    _check_order("plant.gpu.t_slowdown_c", "t_slowdown_c", g.t_slowdown_c, "t_hard_slowdown_c",
                 g.t_hard_slowdown_c)
    _check_order("plant.gpu.t_hard_slowdown_c", "t_hard_slowdown_c", g.t_hard_slowdown_c,
                 "t_shutdown_c", g.t_shutdown_c)
    _check_order("plant.gpu.p_idle_w", "p_idle_w", g.p_idle_w, "p_max_w", g.p_max_w)
    _check_order("plant.gpu.cap_min_w", "cap_min_w", g.cap_min_w, "p_max_w", g.p_max_w,
                 strict=False)
    _check_order("plant.gpu.p_idle_w", "p_idle_w", g.p_idle_w, "cap_min_w", g.cap_min_w)
    _check_order("plant.gpu.ramp_min_w_per_s", "ramp_min_w_per_s", g.ramp_min_w_per_s,
                 "ramp_max_w_per_s", g.ramp_max_w_per_s, strict=False)
    _check_order("plant.cdu.setpoint_min_c", "setpoint_min_c", c.setpoint_min_c,
                 "setpoint_max_c", c.setpoint_max_c)
    if p.ups.e_max_j <= 0:
        raise _err("plant.ups.e_max_j", f"capacity must be > 0, got {p.ups.e_max_j}")
    for name in ("c_gpu_j_per_k", "c_coolant_j_per_k"):
        if np.any(np.asarray(getattr(p.coldplate, name)) <= 0):
            raise _err(f"plant.coldplate.{name}", "capacity must be > 0")
    if p.h_s > 1.0 + 1e-12:
        raise _err("plant.n_sub", f"substep dt_s / n_sub = {p.h_s:g} s exceeds 1 s; raise n_sub "
                                  f"to at least {math.ceil(p.dt_s)}")


def deep_merge(base: dict, over: dict) -> dict:
    """``base`` with ``over`` merged in: nested mappings merge key by key, anything else
    in ``over`` replaces; both inputs are left unchanged (deep copies)."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _scenario_dir():
    return resources.files("heatsync.configs").joinpath("scenarios")


def list_scenarios() -> list[str]:
    """Names of the bundled scenarios."""
    return sorted(p.name[:-5] for p in _scenario_dir().iterdir() if p.name.endswith(".yaml"))


def _read(name_or_path, seen=()) -> tuple[dict, Path | None]:
    s = str(name_or_path)
    path = None
    if s.endswith((".yaml", ".yml")) or "/" in s or "\\" in s:
        path = Path(s)
        try:
            text = path.read_text()
        except OSError as e:
            raise ScenarioError(f"scenario file {path}: cannot read ({e.strerror or e})") from e
    else:
        res = _scenario_dir().joinpath(f"{s}.yaml")
        if not res.is_file():
            raise ScenarioError(f"unknown scenario '{s}'; bundled: {', '.join(list_scenarios())}"
                                f" (or give a path to a .yaml file)")
        text = res.read_text()
    try:
        cfg = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ScenarioError(f"scenario {s}: invalid YAML: {e}") from e
    if not isinstance(cfg, dict):
        raise ScenarioError(f"scenario {s}: top level must be a mapping")
    parent = cfg.get("extends")
    if parent is not None:
        if parent in seen:
            raise ScenarioError(f"scenario field 'extends': cycle through '{parent}'")
        base, _ = _read(parent, seen + (s,))
        base.pop("name", None)
        base.pop("description", None)
        cfg = deep_merge(base, {k: v for k, v in cfg.items() if k != "extends"})
    return cfg, path


def _overrides_to_dict(overrides: dict) -> dict:
    out: dict = {}
    for k, v in overrides.items():
        parts = k.split("__")
        d = out
        for p in parts[:-1]:
            d = d.setdefault(p, {})
        if isinstance(v, dict) and isinstance(d.get(parts[-1]), dict):
            d[parts[-1]] = deep_merge(d[parts[-1]], v)
        else:
            d[parts[-1]] = v
    return out


def load_scenario(name_or_path="default", **overrides: Any) -> Scenario:
    """Load and validate a scenario.

    **Arguments**: a bundled name (see :func:`list_scenarios`) or a path to a
    YAML file; ``overrides`` as nested dicts (``plant={"ups": {"e_max_j": 1e8}}``)
    or double-underscore paths (``plant__ups__e_max_j=1e8``, ``episode__steps=60``).

    **Returns**: :class:`Scenario`. Raises :class:`ScenarioError` naming the field.
    """
    if isinstance(name_or_path, Scenario):
        if not overrides:
            return name_or_path
        cfg, path = copy.deepcopy(name_or_path.config), None
    else:
        cfg, path = _read(name_or_path)
    cfg = deep_merge(cfg, _overrides_to_dict(overrides))
    return _build(cfg, path)


def _build(cfg: dict, path: Path | None) -> Scenario:
    known = (*SECTIONS, *_EXTRA_SECTIONS)
    for k in cfg:
        if k not in known:
            raise _err(k, f"unknown section; allowed: {', '.join(known)}")
    name = cfg.get("name", path.stem if path else "custom")
    if not isinstance(name, str):
        raise _err("name", f"expected a string, got {name!r}")
    plant_cfg = dict(cfg.get("plant") or {})
    n_racks = plant_cfg.get("n_racks", 8)
    check_number("plant.n_racks", n_racks, 1, 100000, integer=True)
    jobs_cfg = cfg.get("jobs")
    if jobs_cfg is None:
        jobs_cfg = [{"racks": "all"}]
    if not isinstance(jobs_cfg, list):
        raise _err("jobs", "expected a list of jobs")
    rand = cfg.get("randomize")
    count = ((rand.get("jobs") or {}).get("count", 1) if isinstance(rand, dict) else 1)
    count_hi = max(count) if isinstance(count, list) and count else count
    plant_cfg.setdefault("n_jobs", max(1, len(jobs_cfg),
                                       count_hi if isinstance(count_hi, int) else 1))
    params = _build_dataclass(_plant.Params, plant_cfg, "plant", n_racks)
    if params.n_jobs < len(jobs_cfg):
        raise _err("plant.n_jobs", f"{params.n_jobs} slots for {len(jobs_cfg)} jobs")
    _cross_check(params)
    jobs, starts, stops = _build_jobs(jobs_cfg, params)
    exo = _build_exo(cfg, params, starts, stops, path)
    control = _build_control(cfg.get("control") or {}, params)
    distribution = parse_randomize(rand, params, _err, check_number)
    sections = {k: validate(cfg.get(k), _err) for k, validate in _EXTRA_SECTIONS.items()}
    resolved = copy.deepcopy(cfg)
    resolved["name"] = name
    resolved.setdefault("control", {})
    return Scenario(
        name=name, description=str(cfg.get("description", "")), params=params, exo=exo,
        jobs=jobs, control=control, distribution=distribution, sections=sections,
        config=resolved,
    )


def _build_jobs(jobs_cfg, p: _plant.Params):
    spec_info = field_info(_wl.JobSpec)
    J, R = p.n_jobs, p.n_racks
    values = {k: np.full(J, f.default, dtype=float) for k, f in spec_info.items()}
    rack_job = np.full(R, -1, dtype=np.int32)
    placed = np.zeros(J)
    starts = np.zeros(J)
    stops = np.full(J, np.inf)
    for j, job in enumerate(jobs_cfg):
        path = f"jobs[{j}]"
        if not isinstance(job, dict):
            raise _err(path, "expected a mapping")
        for k, v in job.items():
            kp = f"{path}.{k}"
            if k == "racks":
                racks = list(range(R)) if v == "all" else v
                if not isinstance(racks, list) or not racks:
                    raise _err(kp, f"expected 'all' or a non-empty list of rack indices in "
                                   f"[0, {R - 1}]")
                for r in racks:
                    check_number(kp, r, 0, R - 1, integer=True)
                    if rack_job[r] >= 0:
                        raise _err(kp, f"rack {r} already runs jobs[{rack_job[r]}]")
                    rack_job[r] = j
            elif k == "start_s":
                starts[j] = check_number(kp, v, 0.0, 1e9)
            elif k == "stop_s":
                stops[j] = np.inf if v is None else check_number(kp, v, 0.0, 1e9)
            elif k in spec_info:
                f = spec_info[k]
                values[k][j] = check_number(kp, v, f.metadata["lo"], f.metadata["hi"])
            else:
                allowed = ["racks", "start_s", "stop_s", *spec_info]
                raise _err(kp, f"unknown key; allowed: {', '.join(allowed)}")
        if "racks" not in job:
            raise _err(f"{path}.racks", "required: 'all' or a list of rack indices")
        if stops[j] <= starts[j]:
            raise _err(f"{path}.stop_s", f"inverted range: start_s = {starts[j]} must be < "
                                         f"stop_s = {stops[j]}")
        if values["ckpt_duration_s"][j] > values["ckpt_interval_s"][j]:
            raise _err(f"{path}.ckpt_duration_s", "must not exceed ckpt_interval_s")
        placed[j] = 1.0
        h = p.h_s
        if values["period_s"][j] < 4 * h - 1e-12:
            raise _err(f"{path}.period_s", f"period {values['period_s'][j]} s is shorter than "
                                           f"4 substeps ({4 * h:g} s); raise plant.n_sub")
        d, per = values["duty"][j], values["period_s"][j]
        if d * per < h - 1e-12 or (d < 1.0 and (1.0 - d) * per < h - 1e-12):
            raise _err(f"{path}.duty", f"duty {d} of a {per} s period leaves a phase shorter "
                                       f"than one substep ({h:g} s); allowed: duty * period and "
                                       f"(1 - duty) * period >= {h:g} s, or duty = 1")
    spec = _wl.JobSpec(**{k: v for k, v in values.items()})
    return _wl.init_workload(spec, rack_job, placed), starts, stops


def _build_exo(cfg, p, starts, stops, path):
    ecfg = dict(cfg.get("exogenous") or {})
    trace_path = ecfg.pop("trace", None)
    exo = _build_dataclass(ExoParams, ecfg, "exogenous", p.n_racks)
    faults = cfg.get("faults") or []
    if not isinstance(faults, list):
        raise _err("faults", "expected a list")
    kind, start, dur, mag = [], [], [], []
    for i, fcfg in enumerate(faults):
        fp = f"faults[{i}]"
        if not isinstance(fcfg, dict):
            raise _err(fp, "expected a mapping")
        for k in fcfg:
            if k not in ("kind", "start_s", "duration_s", "magnitude"):
                raise _err(f"{fp}.{k}", "unknown key; allowed: kind, start_s, duration_s, "
                                        "magnitude")
        k = fcfg.get("kind")
        if k not in FAULT_KINDS:
            raise _err(f"{fp}.kind", f"{k!r} is not a fault kind; allowed: "
                                     f"{', '.join(FAULT_KINDS)}")
        kind.append(FAULT_KINDS.index(k))
        start.append(check_number(f"{fp}.start_s", fcfg.get("start_s", 0.0), 0.0, 1e9))
        dur.append(check_number(f"{fp}.duration_s", fcfg.get("duration_s", 3600.0), 1e-3, 1e9))
        lo, hi = FAULT_MAGNITUDE[k]
        mag.append(check_number(f"{fp}.magnitude", fcfg.get("magnitude", hi), lo, hi))
    dels = cfg.get("deliveries") or []
    if not isinstance(dels, list):
        raise _err("deliveries", "expected a list")
    dt, dkg = [], []
    for i, d in enumerate(dels):
        dp = f"deliveries[{i}]"
        if not isinstance(d, dict) or set(d) - {"t_s", "kg"}:
            raise _err(dp, "expected a mapping with keys t_s, kg")
        dt.append(check_number(f"{dp}.t_s", d.get("t_s"), 0.0, 1e9))
        dkg.append(check_number(f"{dp}.kg", d.get("kg"), 0.0, 1e7))
    if trace_path is not None:
        tp = Path(trace_path)
        if not tp.is_absolute() and path is not None:
            tp = path.parent / tp
        try:
            t, vals, has = load_trace(tp)
        except TraceError as e:
            raise _err("exogenous.trace", str(e)) from e
    else:
        t, vals, has = np.zeros(1), np.zeros((1, len(TRACE_COLUMNS))), np.zeros(len(TRACE_COLUMNS))
    f = float
    return dataclasses.replace(
        exo,
        fault_kind=np.asarray(kind, np.int32), fault_start_s=np.asarray(start, f),
        fault_duration_s=np.asarray(dur, f), fault_magnitude=np.asarray(mag, f),
        job_start_s=np.asarray(starts, f), job_stop_s=np.asarray(stops, f),
        delivery_t_s=np.asarray(dt, f), delivery_kg=np.asarray(dkg, f),
        trace_t_s=np.asarray(t, f), trace_values=np.asarray(vals, f),
        trace_has=np.asarray(has, f),
    )


def _build_control(ccfg: dict, p: _plant.Params) -> _plant.Action:
    if not isinstance(ccfg, dict):
        raise _err("control", "expected a mapping of fixed setpoints")
    lim = {k: (float(np.min(lo)), float(np.max(hi)))
           for k, (lo, hi) in _plant.actuator_ranges(p).items()}
    vals = {}
    for k, v in ccfg.items():
        if k not in CONTROL_KEYS:
            raise _err(f"control.{k}", f"unknown setpoint; allowed: {', '.join(CONTROL_KEYS)}")
        lo, hi = lim[k]
        if isinstance(v, list):
            if len(v) != p.n_racks:
                raise _err(f"control.{k}", f"per-rack list has {len(v)} values, expected "
                                           f"{p.n_racks}")
            for i, x in enumerate(v):
                check_number(f"control.{k}[{i}]", x, lo, hi)
        else:
            check_number(f"control.{k}", v, lo, hi)
        vals[k] = v
    return _plant.default_action(p, **vals)
