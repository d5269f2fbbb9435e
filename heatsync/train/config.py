"""A run's configuration: :class:`TrainConfig` (every setting, a docstring each) and its
hyperparameters (YAML keyed by env id, validated; schedules; SB3 constructor arguments).

Hyperparameter YAML (one file per algorithm, ``configs/hyperparams/<algo>.yml``,
rl-baselines3-zoo style)::

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

:func:`load_hyperparams` merges the env's entry over ``default`` and the overrides
over both, then checks every key and value (:mod:`heatsync.train.schema`) before
anything is built; :func:`algo_kwargs` turns the result into the algorithm's
constructor arguments (schedules, activation functions, action noise).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from heatsync.physics import deep_merge

from .schema import (
    ACTIVATIONS,
    OFF_POLICY,
    ON_POLICY,
    OPTIMIZERS,
    SCRIPT_KEYS,
    ConfigError,
    allowed_keys,
    check_algo,
    check_policy_kwargs,
    check_value,
    unknown_error,
)

__all__ = ["TrainConfig", "algo_kwargs", "check_task_algo", "default_hyperparams_path",
           "load_hyperparams", "parse_overrides", "yaml_dump", "yaml_load"]


@dataclass(frozen=True)
class TrainConfig:
    """Train PPO, SAC, TD3 or A2C on a heatsync task: every setting of a run.

    ``heatsync.train.run(TrainConfig(...))`` runs it from Python; ``scripts/train.py``
    builds it from the command line (one ``--flag`` per field). ``hyperparams`` and
    ``env_kwargs`` take a (nested) mapping or ``key=value`` strings.
    """

    algo: str = "ppo"
    """algorithm: ppo, sac, td3 or a2c (stable-baselines3; sac and td3 need continuous
    actions), or ppo-jax (the JAX-native trainer: the whole update loop in one jitted
    program, hyperparameters in configs/hyperparams/ppo-jax.yml)"""
    env: str = "heatsync/PowerSmoothing-v0"
    """task: an env id (heatsync/PowerSmoothing-v0, heatsync/CoolingDispatch-v0,
    heatsync/PowerAwareScheduling-v0, heatsync/Facility-v0) or its short name"""
    scenario: str | None = None
    """scenario name or YAML path (default: the task's own, e.g. sync-swings)"""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """scenario overrides key=value, merged over the YAML's env_kwargs
    (e.g. episode__steps=900 plant__ups__e_max_j=1e8)"""
    conf_file: str | None = None
    """hyperparameter YAML (default: the bundled configs/hyperparams/<algo>.yml)"""
    hyperparams: dict[str, Any] = field(default_factory=dict)
    """hyperparameter overrides key=value, values in YAML (e.g. n_timesteps=50000
    learning_rate=lin_1e-3 policy_kwargs.net_arch=[64,64] normalize=false)"""
    seed: int = 0
    """seed of the model (torch, action sampling)"""
    n_seeds: int = 1
    """ppo-jax: train seeds seed .. seed + n_seeds - 1 as one vmapped program (one
    run directory, a seed_<k>/ in it per seed)"""
    env_seed: int | None = None
    """first seed of the training envs: env i starts with env_seed + i (default
    1000 x (seed + 1); ppo-jax: 100000 x (seed + 1), and training seed k of a vmapped
    run starts at env_seed + k x n_envs)"""
    eval_seed: int = 1_000_000
    """first seed of the held-out evaluation episodes (eval env i gets eval_seed + i)"""
    eval_freq: int = 25_000
    """evaluate every this many env steps (0: never); the best model is kept"""
    eval_episodes: int = 4
    """episodes per evaluation (one eval env each)"""
    checkpoint_freq: int = 50_000
    """save a checkpoint every this many env steps (0: never)"""
    save_replay_buffer: bool = True
    """with the checkpoints of SAC/TD3, save the replay buffer (latest only) for --resume"""
    run_dir: str | None = None
    """run directory (default: <runs-root>/<algo>-<Task>-s<seed>, suffixed -2, -3... if taken)"""
    runs_root: str = "runs"
    """parent of the default run directories"""
    resume: str | None = None
    """continue this run directory from its last checkpoint, to the same total steps
    (its saved config is used; other arguments except --progress, --verbose,
    --device, --threads, --jax-cache and --log-interval are ignored)"""
    device: str = "auto"
    """torch device: auto, cpu, cuda"""
    threads: int = 1
    """torch CPU threads (0: torch's default). One is fastest for these small MLPs and
    does not fight the JAX env for cores (two threads on a busy 2-core machine made
    each gradient step 30x slower)"""
    jax_cache: str = "~/.cache/heatsync/jax"
    """persistent JAX compilation cache directory ('' to disable): the env's first
    compile takes ~30 s on CPU, a cached one a few seconds"""
    log_interval: int = 0
    """write SB3's rollout/ metrics every this many iterations (ppo, a2c) or episodes
    (sac, td3); 0: SB3's default (ppo 1, a2c 100, sac/td3 4)"""
    progress: bool = True
    """show a progress bar"""
    verbose: int = 0
    """SB3 verbosity: 0 quiet, 1 prints the logger's table at each dump"""

    #: settings a resumed run takes from the caller (the others from the run's config.yml)
    RESUME_KEEPS = ("resume", "progress", "verbose", "device", "threads", "jax_cache",
                    "log_interval")

    def __post_init__(self):
        for name, where in (("hyperparams", "--hyperparams"), ("env_kwargs", "--env-kwargs")):
            v = getattr(self, name)
            if v is None:
                v = {}
            elif isinstance(v, Mapping):
                v = dict(v)
            elif isinstance(v, Sequence) and not isinstance(v, str):
                v = parse_overrides(v, where=where)
            else:
                raise ConfigError(f"{where}: expected a mapping or key=value strings, "
                                  f"got {v!r}")
            object.__setattr__(self, name, v)


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


def yaml_dump(obj: Any) -> str:
    """YAML of plain data, keys in their order."""
    return yaml.safe_dump(obj, sort_keys=False, default_flow_style=None)


# ---- hyperparameters -----------------------------------------------------------------------------

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
            raise unknown_error("entry", top, tops, f"{path}: ")
        if entry is not None and not isinstance(entry, dict):
            raise ConfigError(f"{path}: {top}: expected a mapping of hyperparameters")
    merged = deep_merge(doc.get("default") or {}, doc.get(env_id) or {})
    sources = [(f"{path}: ", merged)]
    if overrides:
        sources.append(("--hyperparams ", overrides))
        merged = deep_merge(merged, overrides)
    allowed = allowed_keys(algo)
    for where, d in sources:  # name the source of an error
        for k in d:
            if k not in allowed:
                raise unknown_error(f"key for {algo}", k, allowed, where)
    where = f"{path} ({env_id}): " if not overrides else f"{env_id} hyperparameters: "
    out = {k: check_value(algo, k, v, where) for k, v in merged.items()}
    if "policy_kwargs" in out:
        out["policy_kwargs"] = check_policy_kwargs(algo, out["policy_kwargs"], where)
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


def _make_schedule(v):
    if isinstance(v, str):
        kind, _, x = v.partition("_")
        return _Linear(float(x)) if kind == "lin" else _Const(float(x))
    return v


def algo_kwargs(algo: str, hp: dict, action_space) -> dict:
    """Constructor keyword arguments of the SB3 algorithm ``ALGOS[algo]`` from resolved
    hyperparameters (:func:`load_hyperparams`) and the env's action space."""
    import torch

    kw = {k: v for k, v in hp.items() if k not in SCRIPT_KEYS}
    for k in ("learning_rate", "clip_range", "clip_range_vf"):
        if k in kw and kw[k] is not None:
            kw[k] = _make_schedule(kw[k])
    if "train_freq" in kw and isinstance(kw["train_freq"], list):
        kw["train_freq"] = tuple(kw["train_freq"])
    pk = dict(kw.get("policy_kwargs") or {})
    if "activation_fn" in pk:
        pk["activation_fn"] = getattr(torch.nn, ACTIVATIONS[pk["activation_fn"]])
    if "optimizer_class" in pk:
        pk["optimizer_class"] = getattr(torch.optim, OPTIMIZERS[pk["optimizer_class"]])
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

