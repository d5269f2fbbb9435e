"""Training machinery behind ``scripts/train.py`` (stable-baselines3 on heatsync tasks).

The script reads top to bottom; this module holds what it calls:

- hyperparameters: :func:`load_hyperparams` reads ``configs/hyperparams/<algo>.yml``
  (rl-baselines3-zoo style: keyed by env id, with a ``default`` entry the env's
  entry is merged over), applies ``key=value`` overrides and validates every key
  and value before anything is built (:class:`ConfigError` names the key and
  what is allowed); :func:`algo_kwargs` turns the result into the algorithm's
  constructor arguments (schedules, activation functions, action noise);
- envs: :func:`make_vec_env` stacks ``SB3VecEnv`` (one jitted call per batch
  step), a step timer, :class:`PlantKPIs` (episode KPIs and reward terms),
  ``VecMonitor`` and, if asked, ``VecNormalize``;
- callbacks: plant KPIs and reward terms to TensorBoard, hyperparameters as an
  SB3 ``HParam``, evaluation on held-out seeds with the best model and its
  normalization stats saved, checkpoints (model, normalization, replay buffer),
  a tqdm progress bar;
- run directories: the resolved config, the command lines and the seed beside the
  model; :func:`latest_checkpoint` for ``--resume``.

Hyperparameter YAML (one file per algorithm)::

    default:                        # every env
      n_envs: 32                    # envs stepped together by one jitted call
      n_timesteps: 200000           # total env steps
      policy: MlpPolicy
      normalize: true               # or {norm_obs: true, norm_reward: false, ...}
      learning_rate: lin_3e-4       # a float, lin_<float> (linear to 0) or const_<float>
      policy_kwargs:
        net_arch: {pi: [64, 64], vf: [64, 64]}
        activation_fn: tanh         # tanh, relu, elu, leaky_relu, gelu, silu, selu
    heatsync/PowerSmoothing-v0:     # merged over default
      env_kwargs: {episode__steps: 900}   # scenario overrides (load_scenario)
      n_steps: 128
"""

from __future__ import annotations

import argparse
import ast
import copy
import dataclasses
import difflib
import inspect
import json
import math
import os
import platform
import re
import shlex
import sys
import textwrap
import time
import typing
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from stable_baselines3.common.callbacks import BaseCallback, EvalCallback
from stable_baselines3.common.logger import HParam
from stable_baselines3.common.vec_env import VecEnvWrapper, VecMonitor, VecNormalize
from tqdm.auto import tqdm

from heatsync._io import atomic_path, write_text_atomic
from heatsync.envs._terms import J_PER_KWH, SECONDS_PER_MONTH

__all__ = [
    "ALGOS", "ConfigError", "KPI_NAMES", "load_hyperparams", "parse_overrides", "algo_kwargs",
    "make_vec_env", "warm_up", "PlantKPIs", "StepTimer", "PlantKPICallback", "HParamCallback",
    "HeldOutEvalCallback", "CheckpointCallback", "ProgressBarCallback", "new_run_dir",
    "write_run_files", "latest_checkpoint", "parse_args", "check_task_algo", "yaml_load",
    "hyperparams_help",
]

#: algorithm name -> stable-baselines3 class name
ALGOS = {"ppo": "PPO", "sac": "SAC", "td3": "TD3", "a2c": "A2C"}
ON_POLICY = ("ppo", "a2c")
OFF_POLICY = ("sac", "td3")
ACTIVATIONS = ("tanh", "relu", "elu", "leaky_relu", "gelu", "silu", "selu")
OPTIMIZERS = ("adam", "adamw", "rmsprop", "sgd")
NORMALIZE_KEYS = ("norm_obs", "norm_reward", "clip_obs", "clip_reward", "epsilon")
NOISE_TYPES = ("normal", "ornstein-uhlenbeck")
SCHEDULE_HELP = "a positive float, 'lin_<float>' (linear decay to 0) or 'const_<float>'"


class ConfigError(ValueError):
    """A bad hyperparameter file, override or argument: names the key and what is allowed."""


# ---- YAML ----------------------------------------------------------------------------------------

class _Loader(yaml.SafeLoader):
    """SafeLoader that reads ``3e-4`` as a float (YAML 1.1 wants ``3.0e-4``)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                    |\.[0-9_]+(?:[eE][-+][0-9]+)?
                    |[-+]?\.(?:inf|Inf|INF)
                    |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def yaml_load(text: str) -> Any:
    """Parse YAML (safe) with ``1e-4``-style floats."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)


def _yaml_dump(obj: Any) -> str:
    return yaml.safe_dump(obj, sort_keys=False, default_flow_style=None)


# ---- hyperparameter schema -----------------------------------------------------------------------

def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) \
        and math.isfinite(float(v))


def _int(lo: int, hi: int | None = None, extra: tuple = ()):
    rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
    desc = f"an integer {rng}" + "".join(f" or {e!r}" for e in extra)

    def check(v):
        if v in extra and not isinstance(v, bool):
            return v
        if _is_num(v) and float(v).is_integer():
            v = int(v)
        if not _is_int(v) or v < lo or (hi is not None and v > hi):
            raise ValueError(desc)
        return int(v)

    return check, desc


def _float(lo: float, hi: float | None = None, lo_open=False, hi_open=False, none_ok=False):
    left, right = "(" if lo_open else "[", ")" if hi_open else "]"
    desc = f"a number in {left}{lo}, {'inf' if hi is None else hi}{right}" + \
        (" or null" if none_ok else "")

    def check(v):
        if v is None and none_ok:
            return None
        if not _is_num(v):
            raise ValueError(desc)
        x = float(v)
        above = hi is not None and (x > hi or (hi_open and x == hi))
        if x < lo or (lo_open and x == lo) or above:
            raise ValueError(desc)
        return x

    return check, desc


def _bool():
    def check(v):
        if not isinstance(v, bool):
            raise ValueError("true or false")
        return v

    return check, "true or false"


def _choice(options: Sequence):
    desc = "one of " + ", ".join(repr(o) for o in options)

    def check(v):
        if v not in options:
            raise ValueError(desc)
        return v

    return check, desc


def _schedule(none_ok=False):
    desc = SCHEDULE_HELP + (" or null" if none_ok else "")

    def check(v):
        if v is None and none_ok:
            return None
        if isinstance(v, str):
            m = re.fullmatch(r"(lin|const)_(.+)", v.strip())
            if m is None:
                raise ValueError(f"{desc} (unknown schedule {v!r}; schedules: lin, const)")
            try:
                x = float(m.group(2))
            except ValueError:
                raise ValueError(desc) from None
            if not (math.isfinite(x) and x > 0):
                raise ValueError(desc)
            return v.strip()
        if not _is_num(v) or float(v) <= 0:
            raise ValueError(desc)
        return float(v)

    return check, desc


def _train_freq():
    desc = "an integer >= 1 or [n, 'step' | 'episode']"

    def check(v):
        if _is_int(v) and v >= 1:
            return int(v)
        if isinstance(v, (list, tuple)) and len(v) == 2 and _is_int(v[0]) and v[0] >= 1 \
                and v[1] in ("step", "episode"):
            return [int(v[0]), v[1]]
        raise ValueError(desc)

    return check, desc


def _ent_coef_sac():
    desc = "a number > 0, 'auto' or 'auto_<float>' (learned, with that initial value)"

    def check(v):
        if isinstance(v, str) and re.fullmatch(r"auto(_[0-9.eE+-]+)?", v):
            return v
        if _is_num(v) and float(v) > 0:
            return float(v)
        raise ValueError(desc)

    return check, desc


def _target_entropy():
    desc = "'auto' or a number"

    def check(v):
        if v == "auto":
            return v
        if _is_num(v):
            return float(v)
        raise ValueError(desc)

    return check, desc


def _mapping(desc: str = "a mapping"):
    def check(v):
        if not isinstance(v, dict):
            raise ValueError(desc)
        return dict(v)

    return check, desc


def _normalize():
    desc = f"true, false or a mapping with keys {', '.join(NORMALIZE_KEYS)}"

    def check(v):
        if isinstance(v, bool):
            return v
        if not isinstance(v, dict):
            raise ValueError(desc)
        out = {}
        for k, x in v.items():
            if k not in NORMALIZE_KEYS:
                raise ValueError(f"{desc} (unknown key {k!r})")
            if k.startswith("norm_"):
                if not isinstance(x, bool):
                    raise ValueError(f"{desc} ({k}: true or false)")
                out[k] = x
            else:
                if not _is_num(x) or float(x) <= 0:
                    raise ValueError(f"{desc} ({k}: a number > 0)")
                out[k] = float(x)
        return out

    return check, desc


ALL = tuple(ALGOS)
#: key -> (algorithms that accept it, validator, what is allowed, meaning)
SCHEMA: dict[str, tuple[tuple[str, ...], Callable, str, str]] = {}


def _key(name, algos, spec, meaning):
    check, desc = spec
    SCHEMA[name] = (algos, check, desc, meaning)


_key("n_envs", ALL, _int(1), "envs stepped together (one jitted call per batch step)")
_key("n_timesteps", ALL, _int(1), "total env steps of the run")
_key("policy", ALL, _choice(("MlpPolicy",)), "SB3 policy (observations are flat vectors)")
_key("policy_kwargs", ALL, _mapping(), "policy arguments (net_arch, activation_fn, ...)")
_key("normalize", ALL, _normalize(), "VecNormalize: true, false or its keyword arguments")
_key("env_kwargs", ALL, _mapping("a mapping of load_scenario overrides, e.g. "
                                 "{episode__steps: 900}"), "scenario overrides")
_key("learning_rate", ALL, _schedule(), "optimizer step size, or its schedule")
_key("gamma", ALL, _float(0.0, 1.0, lo_open=True), "discount factor")
_key("stats_window_size", ALL, _int(1), "episodes averaged in rollout/ep_rew_mean")
_key("n_steps", ALL, _int(1), "on-policy: steps per env per rollout; off-policy: n-step returns")
_key("batch_size", ("ppo", "sac", "td3"), _int(2), "minibatch size")
_key("n_epochs", ("ppo",), _int(1), "passes over each rollout")
_key("gae_lambda", ON_POLICY, _float(0.0, 1.0), "GAE lambda")
_key("clip_range", ("ppo",), _schedule(), "PPO clip range, or its schedule")
_key("clip_range_vf", ("ppo",), _schedule(none_ok=True), "value clip range (null: none)")
_key("normalize_advantage", ON_POLICY, _bool(), "normalize advantages per batch")
_key("ent_coef", ("ppo", "a2c", "sac"), _float(0.0),
     "entropy coefficient (SAC: also 'auto' or 'auto_<float>', learned)")
_key("vf_coef", ON_POLICY, _float(0.0), "value loss coefficient")
_key("max_grad_norm", ON_POLICY, _float(0.0, lo_open=True), "gradient clipping norm")
_key("target_kl", ("ppo",), _float(0.0, lo_open=True, none_ok=True), "early stop KL (null: off)")
_key("use_rms_prop", ("a2c",), _bool(), "RMSprop instead of Adam")
_key("rms_prop_eps", ("a2c",), _float(0.0, lo_open=True), "RMSprop epsilon")
_key("use_sde", ("ppo", "a2c", "sac"), _bool(), "state-dependent exploration")
_key("sde_sample_freq", ("ppo", "a2c", "sac"), _int(-1), "resample gSDE noise every n steps")
_key("buffer_size", OFF_POLICY, _int(1), "replay buffer size (transitions)")
_key("learning_starts", OFF_POLICY, _int(0), "env steps of random actions before learning")
_key("tau", OFF_POLICY, _float(0.0, 1.0, lo_open=True), "target network soft-update rate")
_key("train_freq", OFF_POLICY, _train_freq(), "update every n steps (per env batch)")
_key("gradient_steps", OFF_POLICY, _int(1, extra=(-1,)),
     "gradient steps per update (-1: as many as env steps collected)")
_key("optimize_memory_usage", OFF_POLICY, _bool(), "memory-efficient replay buffer")
_key("noise_type", OFF_POLICY, _choice((None,) + NOISE_TYPES), "action noise (null: none)")
_key("noise_std", OFF_POLICY, _float(0.0), "action noise standard deviation (action units)")
_key("target_update_interval", ("sac",), _int(1), "target update every n gradient steps")
_key("target_entropy", ("sac",), _target_entropy(), "entropy target ('auto': -dim(A))")
_key("use_sde_at_warmup", ("sac",), _bool(), "gSDE during the warm-up")
_key("policy_delay", ("td3",), _int(1), "actor update every n critic updates")
_key("target_policy_noise", ("td3",), _float(0.0), "target policy smoothing noise")
_key("target_noise_clip", ("td3",), _float(0.0), "target noise clip")

#: keys that are not constructor arguments of the algorithm
SCRIPT_KEYS = ("n_envs", "n_timesteps", "policy", "normalize", "env_kwargs", "noise_type",
               "noise_std")


def allowed_keys(algo: str) -> list[str]:
    """Hyperparameter keys ``algo`` accepts."""
    return sorted(k for k, (algos, *_rest) in SCHEMA.items() if algo in algos)


def hyperparams_help() -> str:
    """The hyperparameter keys, what each allows and means, and the algorithms taking it."""
    lines = ["hyperparameter keys (YAML or --hyperparams key=value):"]
    for k in sorted(SCHEMA):
        algos, _, desc, meaning = SCHEMA[k]
        which = "all" if set(algos) == set(ALL) else ", ".join(algos)
        lines.append(f"  {k} [{which}]: {meaning}; {desc}")
    lines.append("  policy_kwargs keys: the SB3 policy's arguments, e.g. net_arch "
                 "([64, 64] or {pi: [...], vf|qf: [...]}), activation_fn "
                 f"({', '.join(ACTIVATIONS)}), log_std_init, ortho_init")
    return "\n".join(lines)


def _check_value(algo: str, key: str, value, where: str):
    if key == "ent_coef" and algo == "sac":
        check, desc = _ent_coef_sac()
    else:
        _, check, desc, _ = SCHEMA[key]
    try:
        return check(value)
    except ValueError as e:
        raise ConfigError(f"{where}{key}: {value!r} is not allowed; expected {e}") from None


def _unknown(kind: str, key, allowed: Sequence[str], where: str) -> ConfigError:
    near = difflib.get_close_matches(str(key), list(allowed), n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    return ConfigError(f"{where}unknown {kind} {key!r}{hint}; allowed: {', '.join(allowed)}")


def check_algo(algo: str) -> str:
    """Lower-case ``algo`` if known, else :class:`ConfigError` with the allowed names."""
    a = str(algo).lower()
    if a not in ALGOS:
        raise _unknown("algo", algo, list(ALGOS), "")
    return a


def _policy_kwargs(algo: str, pk: dict, where: str) -> dict:
    """Validate ``policy_kwargs`` (keys from the SB3 policy's constructor)."""
    import stable_baselines3 as sb3

    cls = getattr(sb3, ALGOS[algo]).policy_aliases["MlpPolicy"]
    sig = inspect.signature(cls.__init__).parameters
    allowed = sorted(k for k in sig if k not in ("self", "observation_space", "action_space",
                                                  "lr_schedule", "features_extractor_class",
                                                  "features_extractor_kwargs"))
    where = f"{where}policy_kwargs."
    for k, v in pk.items():
        if k not in allowed:
            raise _unknown("key", k, allowed, where)
        if k == "net_arch":
            heads = ("pi", "vf") if algo in ON_POLICY else ("pi", "qf")
            desc = (f"a list of positive layer sizes, or a mapping with keys "
                    f"{', '.join(heads)} to such lists")

            def layers(x):
                return isinstance(x, list) and all(_is_int(n) and n > 0 for n in x)

            ok = layers(v) or (isinstance(v, dict) and set(v) <= set(heads)
                               and all(layers(x) for x in v.values()))
            if not ok:
                raise ConfigError(f"{where}net_arch: {v!r} is not allowed; expected {desc}")
        elif k == "activation_fn":
            if v not in ACTIVATIONS:
                raise ConfigError(f"{where}activation_fn: unknown {v!r}; allowed: "
                                  f"{', '.join(ACTIVATIONS)}")
        elif k == "optimizer_class":
            if v not in OPTIMIZERS:
                raise ConfigError(f"{where}optimizer_class: unknown {v!r}; allowed: "
                                  f"{', '.join(OPTIMIZERS)}")
        elif k == "log_std_init":
            if not _is_num(v):
                raise ConfigError(f"{where}log_std_init: {v!r} is not allowed; expected a number")
        elif isinstance(v, (dict, list)) and k != "optimizer_kwargs":
            raise ConfigError(f"{where}{k}: {v!r} is not allowed; expected a scalar")
    return pk


def _deep_merge(base: dict, top: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in top.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def parse_overrides(items: Sequence[str], where: str = "--hyperparams") -> dict:
    """``["a=1", "policy_kwargs.net_arch=[64, 64]"]`` -> nested dict (values parsed as YAML)."""
    out: dict = {}
    for item in items or ():
        key, sep, raw = str(item).partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"{where}: {item!r} is not key=value")
        try:
            value = yaml_load(raw) if raw.strip() else None
        except yaml.YAMLError as e:
            raise ConfigError(f"{where}: {key}: cannot parse {raw!r} ({e})") from None
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{where}: {key}: {p} is set twice")
        node[parts[-1]] = value
    return out


def default_hyperparams_path(algo: str) -> Path:
    """The bundled ``configs/hyperparams/<algo>.yml``."""
    return Path(str(resources.files("heatsync.configs") / "hyperparams" / f"{algo}.yml"))


def load_hyperparams(algo: str, env_id: str, path: str | os.PathLike | None = None,
                     overrides: dict | None = None) -> dict:
    """Resolved, validated hyperparameters of ``algo`` on ``env_id``.

    **Arguments**: ``algo`` (ppo, sac, td3, a2c), ``env_id`` (a registered id),
    ``path`` (a YAML file; default the bundled ``configs/hyperparams/<algo>.yml``),
    ``overrides`` (a nested dict, e.g. from :func:`parse_overrides`).

    **Returns**: ``default`` merged with the env's entry and the overrides (dicts
    merged key by key). Raises :class:`ConfigError` naming the file, the key and
    what is allowed for an unknown key or a bad value.
    """
    from heatsync.envs import ENV_IDS

    algo = check_algo(algo)
    path = Path(path) if path is not None else default_hyperparams_path(algo)
    try:
        doc = yaml_load(path.read_text())
    except OSError as e:
        raise ConfigError(f"hyperparameter file {path}: cannot read ({e.strerror})") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"hyperparameter file {path}: not valid YAML ({e})") from None
    doc = doc or {}
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a mapping of env ids to hyperparameters")
    tops = ["default", *ENV_IDS]
    for top, entry in doc.items():
        if top not in tops:
            raise _unknown("entry", top, tops, f"{path}: ")
        if entry is not None and not isinstance(entry, dict):
            raise ConfigError(f"{path}: {top}: expected a mapping of hyperparameters")
    merged = _deep_merge(doc.get("default") or {}, doc.get(env_id) or {})
    sources = [(f"{path}: ", merged)]
    if overrides:
        sources.append(("--hyperparams ", overrides))
        merged = _deep_merge(merged, overrides)
    allowed = allowed_keys(algo)
    for where, d in sources:  # name the source of an error
        for k in d:
            if k not in allowed:
                raise _unknown(f"key for {algo}", k, allowed, where)
    where = f"{path} ({env_id}): " if not overrides else f"{env_id} hyperparameters: "
    out = {k: _check_value(algo, k, v, where) for k, v in merged.items()}
    if "policy_kwargs" in out:
        out["policy_kwargs"] = _policy_kwargs(algo, out["policy_kwargs"], where)
    for must in ("n_timesteps", "n_envs"):
        if must not in out:
            raise ConfigError(f"{where}{must} is required (set it under 'default')")
    if algo == "ppo":
        per_rollout = out.get("n_steps", 2048) * out["n_envs"]
        if out.get("batch_size", 64) > per_rollout:
            raise ConfigError(f"{where}batch_size: {out.get('batch_size', 64)} is larger than "
                              f"n_steps x n_envs = {per_rollout}; allowed: <= {per_rollout}")
    return out


def check_task_algo(algo: str, env_id: str, action_space) -> None:
    """:class:`ConfigError` if ``algo`` cannot act in ``action_space`` (SAC/TD3 need a Box)."""
    from gymnasium import spaces

    if algo in OFF_POLICY and not isinstance(action_space, spaces.Box):
        raise ConfigError(f"algo {algo!r} needs continuous (Box) actions; {env_id} has "
                          f"{type(action_space).__name__} actions; allowed algos: "
                          f"{', '.join(ON_POLICY)}")


# ---- hyperparameters -> SB3 constructor arguments ------------------------------------------------

def _make_schedule(v):
    if isinstance(v, str):
        kind, _, x = v.partition("_")
        x = float(x)
        if kind == "lin":
            return _Linear(x)
        return _Const(x)
    return v


@dataclasses.dataclass(frozen=True)
class _Linear:
    """Linear decay from ``initial`` to 0 over training (SB3 passes progress remaining)."""

    initial: float

    def __call__(self, progress_remaining: float) -> float:
        return progress_remaining * self.initial


@dataclasses.dataclass(frozen=True)
class _Const:
    """A constant schedule."""

    value: float

    def __call__(self, progress_remaining: float) -> float:
        return self.value


def algo_kwargs(algo: str, hp: dict, action_space) -> dict:
    """Constructor keyword arguments of the SB3 algorithm from resolved hyperparameters."""
    import torch

    kw = {k: v for k, v in hp.items() if k not in SCRIPT_KEYS}
    for k in ("learning_rate", "clip_range", "clip_range_vf"):
        if k in kw and kw[k] is not None:
            kw[k] = _make_schedule(kw[k])
    if "train_freq" in kw and isinstance(kw["train_freq"], list):
        kw["train_freq"] = tuple(kw["train_freq"])
    pk = dict(kw.get("policy_kwargs") or {})
    if "activation_fn" in pk:
        names = {"tanh": "Tanh", "relu": "ReLU", "elu": "ELU", "leaky_relu": "LeakyReLU",
                 "gelu": "GELU", "silu": "SiLU", "selu": "SELU"}
        pk["activation_fn"] = getattr(torch.nn, names[pk["activation_fn"]])
    if "optimizer_class" in pk:
        names = {"adam": "Adam", "adamw": "AdamW", "rmsprop": "RMSprop", "sgd": "SGD"}
        pk["optimizer_class"] = getattr(torch.optim, names[pk["optimizer_class"]])
    if pk:
        kw["policy_kwargs"] = pk
    if algo in OFF_POLICY and hp.get("noise_type"):
        from stable_baselines3.common.noise import (
            NormalActionNoise,
            OrnsteinUhlenbeckActionNoise,
        )

        n = int(np.prod(action_space.shape))
        std = float(hp.get("noise_std", 0.1)) * np.ones(n)
        cls = NormalActionNoise if hp["noise_type"] == "normal" else OrnsteinUhlenbeckActionNoise
        kw["action_noise"] = cls(mean=np.zeros(n), sigma=std)
    return kw


# ---- envs ----------------------------------------------------------------------------------------

#: episode KPIs logged under ``plant/`` (names as in ``SimResult.kpis`` where they match)
KPI_NAMES = (
    "band_share", "ramp_max_w_per_s", "ramp_violation_s", "pue", "cost_total_usd",
    "cost_energy_usd", "cost_demand_usd", "energy_grid_kwh", "energy_waste_kwh",
    "energy_unserved_kwh", "peak_demand_kw", "carbon_kg", "work_done_rack_s", "work_lost_frac",
    "throttled_gpu_s", "trips", "t_junction_max_c", "t_supply_min_c", "t_supply_max_c",
    "overcool_k_s", "water_l", "ln2_used_kg", "o2_min_frac", "served_min_frac",
    "episode_steps",
)
_SUM = ("e_grid_j", "e_gen_j", "e_it_j", "e_cool_j", "e_loss_j", "e_waste_j", "e_unserved_j",
        "cost_energy_usd", "cost_ln2_usd", "cost_water_usd", "carbon_kg", "ramp_violation_s",
        "work_rack_s", "work_nominal_rack_s", "throttled_gpu_s", "trips", "overcool_k_s",
        "water_l", "ln2_used_kg")
_MAX = ("ramp_max_w_per_s", "t_junction_max_c", "t_supply_max_c")
_MIN = ("o2_min_frac", "t_supply_min_c", "served_min_frac")
_LAST = ("band_share", "peak_demand_w")  # running values of the episode at its last step


class StepTimer(VecEnvWrapper):
    """Adds up the wall seconds spent in the wrapped VecEnv's steps (``seconds``,
    ``steps`` batch steps)."""

    def __init__(self, venv):
        super().__init__(venv)
        self.seconds, self.steps, self._t0 = 0.0, 0, 0.0

    def reset(self):
        return self.venv.reset()

    def step_async(self, actions):
        self._t0 = time.perf_counter()
        self.venv.step_async(actions)

    def step_wait(self):
        out = self.venv.step_wait()
        self.seconds += time.perf_counter() - self._t0
        self.steps += 1
        return out


class PlantKPIs(VecEnvWrapper):
    """Episode KPIs and reward terms of a heatsync ``SB3VecEnv`` stack.

    Accumulates every env's episode in arrays over envs; on the step an env's
    episode ends, adds ``info["plant"]`` (the KPIs of :data:`KPI_NAMES`, named as
    in ``SimResult.kpis``) and ``info["reward_terms"]`` (each reward term summed
    over the episode) to that env's info.

    **Arguments**: ``venv`` (over a ``SB3VecEnv``), ``params`` (its
    :class:`~heatsync.envs.EnvParams`), ``terms`` (the task's reward terms).
    """

    def __init__(self, venv, params, terms: Sequence[str]):
        super().__init__(venv)
        self.dt_s = float(params.plant.dt_s)
        self.demand_charge = float(params.plant.grid.demand_charge_usd_per_kw_month)
        self.reward_keys = tuple(f"reward_{t}" for t in terms)
        self._zero()

    def _zero(self, mask=None) -> None:
        if mask is None:
            n = self.num_envs
            self.acc = {k: np.zeros(n) for k in _SUM + self.reward_keys}
            self.acc.update({k: np.full(n, -np.inf) for k in _MAX})
            self.acc.update({k: np.full(n, np.inf) for k in _MIN})
            self.length = np.zeros(n, dtype=np.int64)
            return
        for k in _SUM + self.reward_keys:
            self.acc[k][mask] = 0.0
        for k in _MAX:
            self.acc[k][mask] = -np.inf
        for k in _MIN:
            self.acc[k][mask] = np.inf
        self.length[mask] = 0

    def reset(self):
        self._zero()
        return self.venv.reset()

    def step_wait(self):
        obs, rew, dones, infos = self.venv.step_wait()
        n = self.num_envs

        def col(k):
            return np.fromiter((inf[k] for inf in infos), np.float64, n)

        for k in _SUM + self.reward_keys:
            self.acc[k] += col(k)
        for k in _MAX:
            np.maximum(self.acc[k], col(k), out=self.acc[k])
        for k in _MIN:
            np.minimum(self.acc[k], col(k), out=self.acc[k])
        self.length += 1
        ended = np.flatnonzero(dones)
        if ended.size:
            last = {k: col(k) for k in _LAST}
            for i in ended:
                infos[i]["plant"] = self._kpis(i, last)
                infos[i]["reward_terms"] = {k[len("reward_"):]: float(self.acc[k][i])
                                            for k in self.reward_keys}
            self._zero(np.asarray(dones, dtype=bool))
        return obs, rew, dones, infos

    def _kpis(self, i: int, last: dict) -> dict[str, float]:
        a = {k: float(v[i]) for k, v in self.acc.items()}
        steps = int(self.length[i])
        peak_w = float(last["peak_demand_w"][i])
        demand = peak_w / 1000.0 * self.demand_charge * steps * self.dt_s / SECONDS_PER_MONTH
        e_it = max(a["e_it_j"], 1e-12)
        nominal = a["work_nominal_rack_s"]
        return {
            "band_share": float(last["band_share"][i]),
            "ramp_max_w_per_s": a["ramp_max_w_per_s"],
            "ramp_violation_s": a["ramp_violation_s"],
            "pue": (a["e_it_j"] + a["e_cool_j"] + a["e_loss_j"]) / e_it,
            "cost_total_usd": a["cost_energy_usd"] + demand + a["cost_ln2_usd"]
            + a["cost_water_usd"],
            "cost_energy_usd": a["cost_energy_usd"],
            "cost_demand_usd": demand,
            "energy_grid_kwh": a["e_grid_j"] / J_PER_KWH,
            "energy_waste_kwh": a["e_waste_j"] / J_PER_KWH,
            "energy_unserved_kwh": a["e_unserved_j"] / J_PER_KWH,
            "peak_demand_kw": peak_w / 1000.0,
            "carbon_kg": a["carbon_kg"],
            "work_done_rack_s": a["work_rack_s"],
            "work_lost_frac": 1.0 - a["work_rack_s"] / nominal if nominal > 0 else 0.0,
            "throttled_gpu_s": a["throttled_gpu_s"],
            "trips": a["trips"],
            "t_junction_max_c": a["t_junction_max_c"],
            "t_supply_min_c": a["t_supply_min_c"],
            "t_supply_max_c": a["t_supply_max_c"],
            "overcool_k_s": a["overcool_k_s"],
            "water_l": a["water_l"],
            "ln2_used_kg": a["ln2_used_kg"],
            "o2_min_frac": a["o2_min_frac"],
            "served_min_frac": a["served_min_frac"],
            "episode_steps": float(steps),
        }


def info_keys_for(terms: Sequence[str]) -> tuple[str, ...]:
    """The ``info`` entries :class:`PlantKPIs` reads (fewer keys, faster batches)."""
    return _SUM + _MAX + _MIN + _LAST + tuple(f"reward_{t}" for t in terms)


def make_vec_env(env_id: str, n_envs: int, scenario: str | None, env_kwargs: dict,
                 normalize, gamma: float, training: bool = True):
    """The training (or evaluation) VecEnv stack.

    ``SB3VecEnv`` (one jitted call per batch step) -> :class:`StepTimer` (the env)
    -> :class:`PlantKPIs` -> ``VecMonitor`` (episode returns for SB3's logger) ->
    :class:`StepTimer` (the whole stack) -> ``VecNormalize`` if ``normalize``
    (evaluation stacks: ``training=False``, rewards left raw).

    **Returns**: ``(venv, (env_timer, stack_timer))``.
    """
    from heatsync.envs import make_task
    from heatsync.envs.sb3 import SB3VecEnv

    task = make_task(env_id)
    base = SB3VecEnv(task, n_envs, scenario=scenario, info_keys=info_keys_for(task.terms),
                     **env_kwargs)
    env_timer = StepTimer(base)
    stack_timer = StepTimer(VecMonitor(PlantKPIs(env_timer, base.params, task.terms)))
    venv = stack_timer
    if normalize:
        kw = {} if normalize is True else dict(normalize)
        if not training:
            kw.update(norm_reward=False)
        venv = VecNormalize(venv, training=training, gamma=gamma, **kw)
    return venv, (env_timer, stack_timer)


def warm_up(venv) -> float:
    """Compile the jitted reset and step of ``venv``'s heatsync env (one reset and one
    step of the innermost env, before any model seeds or resets it); returns seconds."""
    base = venv.unwrapped
    t0 = time.perf_counter()
    base.reset()
    space = base.action_space
    base.step(np.zeros((base.num_envs, *space.shape), dtype=space.dtype))
    return time.perf_counter() - t0


# ---- callbacks -----------------------------------------------------------------------------------

class PlantKPICallback(BaseCallback):
    """Logs ``plant/<kpi>`` and ``reward/<term>`` (means over the episodes that ended
    since the last dump) from ``info["plant"]`` / ``info["reward_terms"]``, and the
    share of wall time spent stepping the env (``time/env_step_share``; the whole
    wrapper stack: ``time/env_stack_step_share``)."""

    def __init__(self, timers: Sequence[StepTimer] = (), verbose: int = 0):
        super().__init__(verbose)
        self.timers = tuple(timers)
        self._t0 = None

    def _on_training_start(self) -> None:
        self._t0 = time.perf_counter()
        for t in self.timers:
            t.seconds, t.steps = 0.0, 0

    def _on_step(self) -> bool:
        for info in self.locals.get("infos", ()):
            kpis = info.get("plant")
            if kpis is None:
                continue
            for k, v in kpis.items():
                self.logger.record_mean(f"plant/{k}", v)
            for k, v in info["reward_terms"].items():
                self.logger.record_mean(f"reward/{k}", v)
        return True

    def timing(self) -> dict:
        """Wall seconds since training started and the seconds spent in env steps."""
        wall = time.perf_counter() - self._t0 if self._t0 else 0.0
        env_s, stack_s = (t.seconds for t in self.timers) if self.timers else (0.0, 0.0)
        return {"wall_s": wall, "env_step_s": env_s, "env_stack_step_s": stack_s,
                "env_step_share": env_s / wall if wall else 0.0,
                "env_stack_step_share": stack_s / wall if wall else 0.0}

    def _on_rollout_end(self) -> None:
        t = self.timing()
        self.logger.record("time/env_step_share", t["env_step_share"])
        self.logger.record("time/env_stack_step_share", t["env_stack_step_share"])

    def _on_training_end(self) -> None:
        self._on_rollout_end()
        self.logger.dump(self.num_timesteps)


class HParamCallback(BaseCallback):
    """Records the hyperparameters as an SB3 ``HParam`` (TensorBoard's HPARAMS tab)."""

    def __init__(self, hparams: dict):
        super().__init__()
        self.hparams = hparams

    def _on_training_start(self) -> None:
        flat = {k: v if isinstance(v, (bool, int, float, str)) else str(v)
                for k, v in _flatten(self.hparams).items()}
        metrics = {"eval/mean_reward": 0.0, "rollout/ep_rew_mean": 0.0}
        self.logger.record("hparams", HParam(flat, metrics),
                           exclude=("stdout", "log", "json", "csv"))

    def _on_step(self) -> bool:
        return True


#: hidden folder SB3's EvalCallback writes into before the files are moved into place
PARTIAL = ".partial"


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


class HeldOutEvalCallback(EvalCallback):
    """``EvalCallback`` on held-out seeds.

    Reseeds the eval env with ``eval_seed`` before every evaluation (the same
    held-out episodes each time; env i gets ``eval_seed + i``), logs
    ``eval/plant/<kpi>`` and ``eval/reward/<term>``, saves ``best_model.zip`` with
    ``best_vecnormalize.pkl``, keeps the best mean reward in ``best.json`` (a
    resumed run does not forget it) and appends a row per evaluation to
    ``eval_kpis.csv``.
    """

    def __init__(self, eval_env, run_dir: Path, eval_seed: int, eval_freq: int,
                 n_eval_episodes: int, verbose: int = 0):
        super().__init__(eval_env, n_eval_episodes=n_eval_episodes, eval_freq=eval_freq,
                         log_path=str(Path(run_dir) / PARTIAL),
                         best_model_save_path=str(Path(run_dir) / PARTIAL),
                         deterministic=True, verbose=verbose, warn=False)
        self.run_dir = Path(run_dir)
        self.eval_seed = int(eval_seed)
        self.last_kpis: dict[str, float] = {}
        self._kpis: list[dict] = []
        best = self.run_dir / "best.json"
        if best.exists():  # a resumed run
            self.best_mean_reward = float(json.loads(best.read_text())["mean_reward"])
        old = self.run_dir / "evaluations.npz"
        if old.exists():
            with np.load(old) as z:
                self.evaluations_timesteps = [int(t) for t in z["timesteps"]]
                self.evaluations_results = [list(r) for r in z["results"]]
                self.evaluations_length = [list(r) for r in z["ep_lengths"]]

    def _log_success_callback(self, locals_, globals_) -> None:
        super()._log_success_callback(locals_, globals_)
        info = locals_["info"]
        if locals_["done"] and "plant" in info:  # a counted episode ended
            self._kpis.append(info["plant"])
            for k, v in info["plant"].items():
                self.logger.record_mean(f"eval/plant/{k}", v)
            for k, v in info["reward_terms"].items():
                self.logger.record_mean(f"eval/reward/{k}", v)

    def _on_step(self) -> bool:
        if not (self.eval_freq > 0 and self.n_calls % self.eval_freq == 0):
            return True
        self.eval_env.seed(self.eval_seed)
        self._kpis = []
        best_before = self.best_mean_reward
        go = super()._on_step()
        self._publish()
        self.last_kpis = {k: float(np.mean([d[k] for d in self._kpis])) for k in KPI_NAMES} \
            if self._kpis else {}
        self._append_row()
        if self.best_mean_reward > best_before:
            vn = self.model.get_vec_normalize_env()
            if vn is not None:
                with atomic_path(self.run_dir / "best_vecnormalize.pkl") as tmp:
                    vn.save(str(tmp))
            write_text_atomic(self.run_dir / "best.json", json.dumps(
                {"mean_reward": self.best_mean_reward, "timesteps": self.num_timesteps}))
        return go

    def evaluate_now(self) -> None:
        """Evaluate at once (the end of training), unless this step was just evaluated."""
        if self.eval_freq <= 0 or (self.evaluations_timesteps
                                   and self.evaluations_timesteps[-1] == self.num_timesteps):
            return
        n_calls, self.n_calls = self.n_calls, 0
        try:
            self._on_step()
        finally:
            self.n_calls = n_calls

    def _publish(self) -> None:
        """Move what SB3 just wrote into the hidden folder over the run's files (each
        rename is atomic, so a killed run never leaves a half-written one)."""
        part = self.run_dir / PARTIAL
        for name in ("evaluations.npz", "best_model.zip"):
            if (part / name).exists():
                os.replace(part / name, self.run_dir / name)

    def _append_row(self) -> None:
        path = self.run_dir / "eval_kpis.csv"
        row = {"timesteps": self.num_timesteps, "mean_reward": self.last_mean_reward,
               "std_reward": float(np.std(self.evaluations_results[-1])), **self.last_kpis}
        old = path.read_text() if path.exists() else ",".join(row) + "\n"
        line = ",".join(f"{v:.6g}" if isinstance(v, float) else str(v) for v in row.values())
        write_text_atomic(path, old + line + "\n")


class CheckpointCallback(BaseCallback):
    """Every ``save_freq_steps`` env steps, :func:`save_checkpoint` into
    ``run_dir/checkpoints``."""

    def __init__(self, run_dir: Path, save_freq_steps: int, save_replay_buffer: bool):
        super().__init__()
        self.dir = Path(run_dir) / "checkpoints"
        self.every = int(save_freq_steps)
        self.save_replay_buffer = save_replay_buffer
        self._next = 0

    def _on_training_start(self) -> None:
        self._next = (self.num_timesteps // self.every + 1) * self.every

    def _on_step(self) -> bool:
        if self.num_timesteps >= self._next:
            save_checkpoint(self.model, self.dir, self.save_replay_buffer)
            self._next = (self.num_timesteps // self.every + 1) * self.every
        return True


def save_checkpoint(model, directory: Path, save_replay_buffer: bool) -> Path:
    """Write ``model_<steps>.zip``, ``vecnormalize_<steps>.pkl`` (if normalizing) and,
    for off-policy algorithms, ``replay_buffer.pkl`` (the latest only: it is large)
    into ``directory``; the model last, so a checkpoint counts once its model exists."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    steps = int(model.num_timesteps)
    vn = model.get_vec_normalize_env()
    if vn is not None:
        with atomic_path(directory / f"vecnormalize_{steps}.pkl") as tmp:
            vn.save(str(tmp))
    if save_replay_buffer and getattr(model, "replay_buffer", None) is not None:
        with atomic_path(directory / "replay_buffer.pkl") as tmp:
            model.save_replay_buffer(str(tmp))
        write_text_atomic(directory / "replay_buffer.json", json.dumps({"timesteps": steps}))
    path = directory / f"model_{steps}.zip"
    with atomic_path(path) as tmp:
        model.save(str(tmp))
    return path


def latest_checkpoint(run_dir: str | os.PathLike) -> tuple[Path, int] | None:
    """``(model zip, steps)`` of the newest checkpoint of a run, or ``None``."""
    found = []
    for p in (Path(run_dir) / "checkpoints").glob("model_*.zip"):
        m = re.fullmatch(r"model_(\d+)\.zip", p.name)
        if m:
            found.append((int(m.group(1)), p))
    if not found:
        return None
    steps, path = max(found)
    return path, steps


class ProgressBarCallback(BaseCallback):
    """A tqdm bar over the run's total steps (starts at the checkpoint on resume)."""

    def __init__(self, total: int, desc: str):
        super().__init__()
        self.total, self.desc, self.bar = total, desc, None

    def _on_training_start(self) -> None:
        self.bar = tqdm(total=self.total, initial=self.num_timesteps, desc=self.desc,
                        unit="step", dynamic_ncols=True, mininterval=1.0)

    def _on_step(self) -> bool:
        self.bar.update(self.num_timesteps - self.bar.n)
        return True

    def _on_training_end(self) -> None:
        self.bar.update(self.num_timesteps - self.bar.n)
        self.bar.close()


# ---- run directories -----------------------------------------------------------------------------

def new_run_dir(root: str | os.PathLike, name: str) -> Path:
    """``root/name``, or ``root/name-2``, ``-3``... if taken; created."""
    root = Path(root)
    path, i = root / name, 1
    while path.exists():
        i += 1
        path = root / f"{name}-{i}"
    path.mkdir(parents=True)
    return path


def versions() -> dict:
    import gymnasium
    import jax
    import stable_baselines3
    import torch

    import heatsync

    v = {"heatsync": heatsync.__version__, "stable_baselines3": stable_baselines3.__version__,
            "torch": torch.__version__, "jax": jax.__version__,
            "gymnasium": gymnasium.__version__, "python": platform.python_version()}
    return {k: str(x) for k, x in v.items()}


def write_run_files(run_dir: Path, config: dict, argv: Sequence[str] | None,
                    note: str = "") -> None:
    """Save ``config.yml`` (resolved config, seed, versions) and append the command
    line to ``command.txt``."""
    run_dir = Path(run_dir)
    write_text_atomic(run_dir / "config.yml", _yaml_dump(config))
    cmd = " ".join(shlex.quote(a) for a in [sys.executable, *(sys.argv[:1]),
                                            *(sys.argv[1:] if argv is None else argv)])
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    with (run_dir / "command.txt").open("a") as f:
        f.write(f"# {stamp}{' ' + note if note else ''}\n{cmd}\n")
    write_text_atomic(run_dir / "seed.txt", f"{config['seed']}\n")


def read_run_config(run_dir: str | os.PathLike) -> dict:
    """The ``config.yml`` a run saved."""
    path = Path(run_dir) / "config.yml"
    if not path.exists():
        raise ConfigError(f"--resume {run_dir}: no config.yml there (not a run directory)")
    return yaml_load(path.read_text())


def save_final(model, run_dir: Path) -> None:
    """``model.zip`` and ``vecnormalize.pkl`` of the finished run."""
    vn = model.get_vec_normalize_env()
    if vn is not None:
        with atomic_path(Path(run_dir) / "vecnormalize.pkl") as tmp:
            vn.save(str(tmp))
    with atomic_path(Path(run_dir) / "model.zip") as tmp:  # last: a run is done once it exists
        model.save(str(tmp))


def setup_jax_cache(path: str | None) -> None:
    """Persistent JAX compilation cache (the env's first compile is ~30 s on CPU)."""
    if not path:
        return
    import jax

    jax.config.update("jax_compilation_cache_dir", str(Path(path).expanduser()))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


# ---- argument parsing from a dataclass with field docstrings -------------------------------------

def field_docs(cls) -> dict[str, str]:
    """Docstrings written under each field of a dataclass (read from its source)."""
    try:
        src = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    body = ast.parse(src).body[0].body
    docs = {}
    for a, b in zip(body, body[1:], strict=False):
        if isinstance(a, ast.AnnAssign) and isinstance(a.target, ast.Name) \
                and isinstance(b, ast.Expr) and isinstance(b.value, ast.Constant) \
                and isinstance(b.value.value, str):
            docs[a.target.id] = " ".join(b.value.value.split())
    return docs


def parse_args(cls, argv: Sequence[str] | None = None, description: str | None = None,
               epilog: str | None = None):
    """An instance of dataclass ``cls`` from the command line: one ``--flag`` per field,
    its docstring as the help text; ``bool`` fields get ``--x/--no-x``, lists take
    several values."""
    docs = field_docs(cls)
    hints = typing.get_type_hints(cls)
    parser = argparse.ArgumentParser(
        description=description or cls.__doc__, epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        args = typing.get_args(tp)
        optional = type(None) in args
        base = next((a for a in args if a is not type(None)), tp) if optional else tp
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        text = docs.get(f.name, "")
        if "default" not in text:
            text += f" (default: {default!r})"
        kw: dict[str, Any] = {"default": default, "help": text.replace("%", "%%")}
        flag = "--" + f.name.replace("_", "-")
        if base is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(base) is list:
            kw.update(nargs="*", type=typing.get_args(base)[0], metavar="VALUE")
        else:
            kw["type"] = base
        parser.add_argument(flag, **kw)
    ns = parser.parse_args(argv)
    return cls(**vars(ns))
